//! `mep serve --dataplane xdp --dns-xdp` as an operator runs it, on a veth between two network
//! namespaces: dig in the client namespace gets the kernel's answers for a name configured over
//! Mm5 while the DNS server's own UDP counter does not move, the next answer follows an Mm5
//! change, and a name without a rule reaches the server, which forwards it. Needs root (CI runs
//! as root).

#![cfg(feature = "xdp")]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const MM5: &str = "127.0.0.1:18081";

/// A network namespace, deleted on drop.
struct Netns(String);

impl Netns {
    fn new(prefix: &str) -> Netns {
        let name = format!("{prefix}{}", std::process::id());
        run("ip", &["netns", "add", &name]);
        run("ip", &["-n", &name, "link", "set", "lo", "up"]);
        Netns(name)
    }

    fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.0, program]);
        c
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn run(program: &str, args: &[&str]) {
    let status = Command::new(program).args(args).status().expect(program);
    assert!(status.success(), "{program} {args:?}");
}

/// A `mep serve` in `ns` with the xdp data plane on `iface`; killed on drop.
struct Mep(Child);

impl Mep {
    fn start(ns: &Netns, iface: &str, data_dir: &std::path::Path, extra: &[&str]) -> Mep {
        let child = ns
            .command(env!("CARGO_BIN_EXE_mep"))
            .args(["serve", "--insecure-http", "--no-auth", "--data-dir"])
            .arg(data_dir)
            .args(["--mp1-addr", "127.0.0.1:18080", "--mm5-addr", MM5])
            .args(["--dataplane", "xdp", "--xdp-iface", iface])
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mep starts");
        let mep = Mep(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if curl(
                ns,
                &[
                    "-o",
                    "/dev/null",
                    "-w",
                    "%{http_code}",
                    &format!("http://{MM5}/health"),
                ],
            ) == "200"
            {
                return mep;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("mep did not become healthy");
    }
}

impl Drop for Mep {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// curl inside `ns` (mep's listeners are on that namespace's loopback); its stdout.
fn curl(ns: &Netns, args: &[&str]) -> String {
    let out = ns
        .command("curl")
        .args(["-sS", "--max-time", "5"])
        .args(args)
        .output()
        .expect("run curl");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn appd(ns: &Netns, method: &str, body: &Value) -> Value {
    let url = format!("http://{MM5}/mepcfg/app_lcm/v1/applications/app-1/appd_configuration");
    let out = curl(
        ns,
        &[
            "-X",
            method,
            "-H",
            "content-type: application/json",
            "-d",
            &body.to_string(),
            &url,
        ],
    );
    serde_json::from_str(&out).unwrap_or(Value::Null)
}

fn dns_config(ip: &str) -> Value {
    json!({
        "appName": "video",
        "appDNSRule": [{
            "dnsRuleId": "dns-1", "domainName": "video.edge.example", "ipAddressType": "IP_V4",
            "ipAddress": ip, "ttl": 30, "state": "ACTIVE"
        }]
    })
}

/// dig from `ns`: the answer's addresses, or the RCODE when there are none.
fn dig(ns: &Netns, name: &str) -> String {
    let out = ns
        .command("dig")
        .args([
            "+tries=1",
            "+time=2",
            "-p",
            "5300",
            "@10.203.0.2",
            name,
            "A",
        ])
        .output()
        .expect("run dig");
    let text = String::from_utf8_lossy(&out.stdout);
    let answers: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.starts_with(";; ANSWER SECTION"))
        .skip(1)
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.split_whitespace().last())
        .collect();
    if !answers.is_empty() {
        return answers.join(" ");
    }
    text.lines()
        .find_map(|l| l.split("status: ").nth(1))
        .map(|s| s.split(',').next().unwrap_or(s).to_owned())
        .unwrap_or_else(|| "no answer".into())
}

fn metric(metrics: &str, name: &str) -> u64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn mep_serve_answers_dns_in_the_kernel_and_forwards_the_rest() {
    let host = Netns::new("mepxh");
    let client = Netns::new("mepxc");
    run(
        "ip",
        &[
            "link", "add", "x0", "netns", &host.0, "type", "veth", "peer", "name", "y0", "netns",
            &client.0,
        ],
    );
    run(
        "ip",
        &["-n", &host.0, "addr", "add", "10.203.0.2/24", "dev", "x0"],
    );
    run(
        "ip",
        &["-n", &client.0, "addr", "add", "10.203.0.1/24", "dev", "y0"],
    );
    run("ip", &["-n", &host.0, "link", "set", "x0", "up"]);
    run("ip", &["-n", &client.0, "link", "set", "y0", "up"]);

    let host_dir = tempfile::tempdir().unwrap();
    let client_dir = tempfile::tempdir().unwrap();
    let _mep = Mep::start(
        &host,
        "x0",
        host_dir.path(),
        &[
            "--dns-xdp",
            "--dns-addr",
            "0.0.0.0:5300",
            "--dns-upstream",
            "127.0.0.1:9",
        ],
    );
    // Native XDP_TX into a veth needs an XDP program on its peer, as a NIC's peer has a driver:
    // a second mep with no rules there passes everything.
    let _peer = Mep::start(
        &client,
        "y0",
        client_dir.path(),
        &["--dns-addr", "127.0.0.1:0"],
    );

    let progress = appd(&host, "POST", &dns_config("192.0.2.10"));
    assert_eq!(progress["configResult"], "SUCCESS", "{progress}");
    let metrics = || curl(&host, &[&format!("http://{MM5}/metrics")]);
    let udp = "mep_dns_queries_total{transport=\"udp\"} ";
    let served = metric(&metrics(), udp);
    assert_eq!(dig(&client, "video.edge.example"), "192.0.2.10");
    assert_eq!(dig(&client, "VIDEO.edge.example"), "192.0.2.10");
    assert_eq!(
        metric(&metrics(), udp),
        served,
        "the server saw none of them"
    );

    appd(&host, "PUT", &dns_config("192.0.2.20"));
    assert_eq!(dig(&client, "video.edge.example"), "192.0.2.20");

    assert_eq!(
        dig(&client, "other.example"),
        "SERVFAIL",
        "forwarded to a dead upstream"
    );
    let after = metrics();
    assert_eq!(metric(&after, udp), served + 1, "{after}");
    assert_eq!(
        metric(&after, "mep_dataplane_dns_queries{outcome=\"answered\"} "),
        3,
        "{after}"
    );
}
