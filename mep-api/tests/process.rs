//! The `mep` binary as an operator runs it: durability across `kill -9`, clean exit on SIGTERM,
//! refusal of bad configuration.

use std::net::TcpListener;
use std::ops::{Deref, DerefMut};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A child process killed when dropped: a test that fails half-way leaves no mep running
/// behind it (one left running skews every later measurement on the machine).
struct KillOnDrop(Child);

impl Deref for KillOnDrop {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl DerefMut for KillOnDrop {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Running {
    child: KillOnDrop,
    mp1: String,
    mm5: String,
}

fn start(data_dir: &std::path::Path, mp1_port: u16) -> Running {
    start_with_args(data_dir, mp1_port, &[])
}

/// `mep serve` on loopback ports, without TLS, authentication or a fixed DNS port.
fn serve_command(data_dir: &std::path::Path, mp1_port: u16, mm5_port: u16) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_mep"));
    command
        .args([
            "serve",
            "--insecure-http",
            "--no-auth",
            "--dns-addr",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(data_dir)
        .args(["--mp1-addr", &format!("127.0.0.1:{mp1_port}")])
        .args(["--mm5-addr", &format!("127.0.0.1:{mm5_port}")]);
    command
}

fn start_with_args(data_dir: &std::path::Path, mp1_port: u16, extra: &[&str]) -> Running {
    let mm5_port = free_port();
    let child = KillOnDrop(
        serve_command(data_dir, mp1_port, mm5_port)
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mep starts"),
    );
    let running = Running {
        child,
        mp1: format!("http://127.0.0.1:{mp1_port}/mep/mec_service_mgmt/v1"),
        mm5: format!("http://127.0.0.1:{mm5_port}"),
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if reqwest::blocking::get(format!("{}/health", running.mm5))
            .is_ok_and(|r| r.status() == 200)
        {
            return running;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("mep did not become healthy");
}

fn service(name: &str) -> Value {
    json!({"serName": name, "version": "1", "state": "ACTIVE", "serializer": "JSON",
           "transportInfo": {"id": "t", "name": "REST", "type": "REST_HTTP", "protocol": "HTTP",
                             "version": "2.0", "endpoint": {"uris": ["http://10.0.0.1/x"]}, "security": {}}})
}

#[test]
fn acknowledged_writes_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut mep = start(dir.path(), port);
    let client = reqwest::blocking::Client::new();
    // Concurrent writers, so that acknowledgements come out of group commits.
    let ids: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|t| {
                let client = &client;
                let base = &mep.mp1;
                s.spawn(move || {
                    (0..25)
                        .map(|i| {
                            let r = client
                                .post(format!("{base}/applications/app-{t}/services"))
                                .json(&service(&format!("svc-{t}-{i}")))
                                .send()
                                .unwrap();
                            assert_eq!(r.status(), 201);
                            r.json::<Value>().unwrap()["serInstanceId"]
                                .as_str()
                                .unwrap()
                                .to_owned()
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let deleted = &ids[0];
    let r = client
        .delete(format!("{}/applications/app-0/services/{deleted}", mep.mp1))
        .send()
        .unwrap();
    assert_eq!(r.status(), 204);
    mep.child.kill().unwrap(); // SIGKILL right after the last acknowledgement
    mep.child.wait().unwrap();

    let mep = start(dir.path(), port);
    let all: Value = client
        .get(format!("{}/services", mep.mp1))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let mut after: Vec<&str> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["serInstanceId"].as_str().unwrap())
        .collect();
    after.sort();
    let mut expected: Vec<&str> = ids[1..].iter().map(String::as_str).collect();
    expected.sort();
    assert_eq!(after, expected);
}

#[test]
fn sigterm_shuts_down_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let mut mep = start(dir.path(), free_port());
    let pid = mep.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(status) = mep.child.try_wait().unwrap() {
            assert!(status.success(), "exit status {status}");
            break;
        }
        assert!(Instant::now() < deadline, "mep did not exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
    // The store was closed properly: a new process opens it at once.
    let _again = start(dir.path(), free_port());
}

#[test]
fn bad_configuration_is_refused_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("mep.toml");
    std::fs::write(&config, "mp1_adr = \"127.0.0.1:1\"\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_mep"))
        .args(["serve", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr) + String::from_utf8_lossy(&out.stdout);
    assert!(stderr.contains("mp1_adr"), "{stderr}");
}

#[test]
fn environment_variables_configure_like_flags() {
    let dir = tempfile::tempdir().unwrap();
    let (mp1, mm5) = (free_port(), free_port());
    let _child = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_mep"))
            .arg("serve")
            .env("MEP_DATA_DIR", dir.path())
            .env("MEP_MP1_ADDR", format!("127.0.0.1:{mp1}"))
            .env("MEP_MM5_ADDR", format!("127.0.0.1:{mm5}"))
            .env("MEP_INSECURE_HTTP", "true")
            .env("MEP_NO_AUTH", "true")
            .env("MEP_DNS_ADDR", "127.0.0.1:0")
            .env("MEP_API_ROOT", "http://mep.example:8443")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let transports: Value = loop {
        if let Ok(r) = reqwest::blocking::get(format!(
            "http://127.0.0.1:{mp1}/mep/mec_service_mgmt/v1/transports"
        )) {
            break r.json().unwrap();
        }
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(
        transports[0]["endpoint"]["uris"][0],
        "http://mep.example:8443/mep"
    );
    assert_eq!(
        transports[0]["security"]["oAuth2Info"]["tokenEndpoint"],
        "http://mep.example:8443/mep/token"
    );
    assert!(dir.path().join("mep.redb").exists());
}

/// A UPF controller for the upf-http data plane that records requests and can hang traffic-rule
/// calls, so that a task can be caught in the middle.
mod upf {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};

    use axum::body::Bytes;
    use axum::extract::State;
    use axum::http::{Method, StatusCode, Uri};
    use axum::Router;

    #[derive(Clone, Default)]
    pub struct Upf {
        pub requests: Arc<Mutex<Vec<(String, String, String)>>>,
        pub hang_traffic: Arc<AtomicBool>,
    }

    impl Upf {
        pub fn seen(&self, method: &str, path_part: &str) -> Option<String> {
            self.requests
                .lock()
                .unwrap()
                .iter()
                .find(|(m, p, _)| m == method && p.contains(path_part))
                .map(|(_, _, body)| body.clone())
        }
    }

    async fn handle(State(upf): State<Upf>, method: Method, uri: Uri, body: Bytes) -> StatusCode {
        let path = uri.path().to_owned();
        upf.requests.lock().unwrap().push((
            method.to_string(),
            path.clone(),
            String::from_utf8_lossy(&body).into_owned(),
        ));
        if path.contains("/traffic-rules/") && upf.hang_traffic.load(Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
        StatusCode::NO_CONTENT
    }

    /// Serves on a loopback port on its own runtime thread; answers the base URL.
    pub fn start(upf: Upf) -> String {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Runtime::new().unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let app = Router::new().fallback(handle).with_state(upf);
                axum::serve(listener, app).await.unwrap();
            });
        });
        format!("http://{addr}")
    }
}

fn start_with_upf(data_dir: &std::path::Path, upf_url: &str) -> Running {
    start_with_args(
        data_dir,
        free_port(),
        &["--dataplane", "upf-http", "--upf-endpoint", upf_url],
    )
}

fn wait_until(mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "condition not reached in time");
        std::thread::sleep(Duration::from_millis(25));
    }
}

#[test]
fn a_task_interrupted_by_kill_9_is_rolled_back_at_the_next_start() {
    use std::sync::atomic::Ordering;
    let dir = tempfile::tempdir().unwrap();
    let upf = upf::Upf::default();
    let upf_url = upf::start(upf.clone());
    let mut mep = start_with_upf(dir.path(), &upf_url);
    wait_until(|| upf.seen("PUT", "/v1/state").is_some());

    upf.hang_traffic.store(true, Ordering::SeqCst);
    let appd = format!(
        "{}/mepcfg/app_lcm/v1/applications/app-1/appd_configuration",
        mep.mm5
    );
    let body = json!({
        "appName": "video",
        "appDNSRule": [{"dnsRuleId": "dns-1", "domainName": "video.edge.example", "ipAddressType": "IP_V4",
                        "ipAddress": "192.0.2.10", "state": "ACTIVE"}],
        "appTrafficRule": [{"trafficRuleId": "tr-1", "filterType": "FLOW", "priority": 1, "action": "DROP",
                            "state": "ACTIVE", "trafficFilter": [{"dstPort": ["9999"]}]}]
    });
    {
        let (appd, body) = (appd.clone(), body.clone());
        // Blocks until mep dies: the traffic rule call never returns.
        std::thread::spawn(move || {
            let _ = reqwest::blocking::Client::new()
                .post(appd)
                .json(&body)
                .send();
        });
    }
    wait_until(|| upf.seen("PUT", "/traffic-rules/tr-1").is_some());
    assert!(
        upf.seen("PUT", "/dns-rules/dns-1").is_some(),
        "the DNS rule was applied first"
    );
    mep.child.kill().unwrap(); // SIGKILL in the middle of the task
    mep.child.wait().unwrap();

    upf.hang_traffic.store(false, Ordering::SeqCst);
    upf.requests.lock().unwrap().clear();
    let mep = start_with_upf(dir.path(), &upf_url);
    // The data plane is brought back to the last committed state: no rules at all.
    wait_until(|| upf.seen("PUT", "/v1/state").is_some());
    let state: Value = serde_json::from_str(&upf.seen("PUT", "/v1/state").unwrap()).unwrap();
    assert_eq!(state["dnsRules"], json!([]), "{state}");
    assert_eq!(state["trafficRules"], json!([]), "{state}");
    let client = reqwest::blocking::Client::new();
    let appd = format!(
        "{}/mepcfg/app_lcm/v1/applications/app-1/appd_configuration",
        mep.mm5
    );
    assert_eq!(
        client.get(&appd).send().unwrap().status(),
        404,
        "nothing was committed"
    );
    // The application instance is not locked: the same configuration now goes through.
    let progress: Value = client
        .post(&appd)
        .json(&body)
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(progress["configResult"], "SUCCESS", "{progress}");
    assert_eq!(client.get(&appd).send().unwrap().status(), 200);
}

#[cfg(feature = "xdp")]
#[test]
fn xdp_status_without_a_running_data_plane_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_mep"))
        .args(["xdp", "status", "--pin-path"])
        .arg(dir.path().join("mep"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stderr) + String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("no xdp data plane is running"), "{text}");
}

/// Under the common soft and hard limit of 1,024 descriptors, 1,100 connections to Mp1 that send
/// nothing neither take Mm5 (`/health`) away nor keep a well-behaved Mp1 client out, and the
/// accept loop neither spins nor floods the log.
#[test]
fn a_descriptor_flood_leaves_mm5_and_mp1_answering() {
    use std::os::unix::process::CommandExt;

    mep_net::fd::raise_to_hard().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (mp1_port, mm5_port) = (free_port(), free_port());
    let log = dir.path().join("mep.log");
    let mut command = serve_command(dir.path(), mp1_port, mm5_port);
    command
        .env("RUST_LOG", "info")
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(Stdio::null());
    // SAFETY: setrlimit is async-signal-safe and touches only the child between fork and exec.
    unsafe {
        command.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: 1024,
                rlim_max: 1024,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
    let mut child = KillOnDrop(command.spawn().expect("mep starts"));
    let mm5 = format!("http://127.0.0.1:{mm5_port}");
    wait_until(|| reqwest::blocking::get(format!("{mm5}/health")).is_ok_and(|r| r.status() == 200));

    let mut flood = Vec::new();
    for i in 0..1100u32 {
        let socket =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        let source = std::net::Ipv4Addr::new(127, 2, (i / 200) as u8, 1 + (i % 200) as u8);
        socket
            .bind(&std::net::SocketAddr::from((source, 0)).into())
            .unwrap();
        if socket
            .connect(&std::net::SocketAddr::from(([127, 0, 0, 1], mp1_port)).into())
            .is_ok()
        {
            flood.push(socket);
        }
    }
    assert!(flood.len() >= 1000, "{} connections", flood.len());
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(3))
        .build()
        .unwrap();
    let health = client.get(format!("{mm5}/health")).send().unwrap();
    assert_eq!(health.status(), 200, "Mm5 keeps its own descriptors");
    let transports = format!("http://127.0.0.1:{mp1_port}/mep/mec_service_mgmt/v1/transports");
    for _ in 0..10 {
        assert_eq!(client.get(&transports).send().unwrap().status(), 200);
    }
    let metrics = client
        .get(format!("{mm5}/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(
        metrics.contains("reason=\"evicted\""),
        "the flood made room by eviction:\n{metrics}"
    );
    drop(flood);
    child.kill().unwrap();
    child.wait().unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("descriptor budget"), "{text}");
    let accept_warnings = text.matches("accept failed").count();
    assert!(
        accept_warnings <= 5,
        "{accept_warnings} accept warnings:\n{text}"
    );
}

/// The resident memory of a process, from `/proc/<pid>/status`.
fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// A callback that accepts connections and never answers; holds what it accepted.
fn black_hole() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            held.push(stream);
        }
    });
    port
}

/// A callback that answers every request 204 and counts them.
fn counting_receiver() -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = count.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let seen = seen.clone();
            std::thread::spawn(move || {
                let mut writer = stream.try_clone().unwrap();
                let mut reader = BufReader::new(stream);
                loop {
                    let mut length = 0usize;
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                            length = v.trim().parse().unwrap_or(0);
                        }
                        if line == "\r\n" {
                            break;
                        }
                    }
                    let mut body = vec![0u8; length];
                    if reader.read_exact(&mut body).is_err() {
                        return;
                    }
                    seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    if writer
                        .write_all(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")
                        .is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    (port, count)
}

/// 300 subscriptions whose callback accepts and never answers, under service churn: the
/// process stays under 96 MiB, a working subscriber keeps getting its notifications, and the
/// memory comes back down when the 300 are deleted.
#[test]
fn black_hole_subscriptions_neither_grow_memory_nor_starve_others() {
    let dir = tempfile::tempdir().unwrap();
    // Short attempts, so that the holes are found failing within the test.
    let mep = start_with_args(
        dir.path(),
        free_port(),
        &["--notify-timeout-ms", "1000", "--notify-failing-after", "2"],
    );
    let client = reqwest::blocking::Client::new();
    let hole = format!("http://127.0.0.1:{}/notify", black_hole());
    let mut holes = Vec::new();
    for i in 0..300 {
        let r = client
            .post(format!("{}/applications/bh-{i}/subscriptions", mep.mp1))
            .json(
                &json!({"subscriptionType": "SerAvailabilityNotificationSubscription",
                          "callbackReference": hole}),
            )
            .send()
            .unwrap();
        assert_eq!(r.status(), 201);
        holes.push(r.headers()["location"].to_str().unwrap().to_owned());
    }
    let (port, delivered) = counting_receiver();
    let r = client
        .post(format!("{}/applications/watcher/subscriptions", mep.mp1))
        .json(
            &json!({"subscriptionType": "SerAvailabilityNotificationSubscription",
                      "callbackReference": format!("http://127.0.0.1:{port}/notify")}),
        )
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    let baseline = rss_bytes(mep.child.id());

    let pid = mep.child.id();
    let mut peak = 0;
    let mut changes = 0;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(25) {
        let r = client
            .post(format!("{}/applications/churn/services", mep.mp1))
            .json(&service(&format!("churn-{changes}")))
            .send()
            .unwrap();
        assert_eq!(r.status(), 201);
        let id = r.json::<Value>().unwrap()["serInstanceId"]
            .as_str()
            .unwrap()
            .to_owned();
        let r = client
            .delete(format!("{}/applications/churn/services/{id}", mep.mp1))
            .send()
            .unwrap();
        assert_eq!(r.status(), 204);
        changes += 2;
        if changes % 50 == 0 {
            peak = peak.max(rss_bytes(pid));
        }
    }
    peak = peak.max(rss_bytes(pid));
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    assert!(
        peak < 96 << 20,
        "RSS {:.1} MiB at peak (baseline {:.1} MiB) after {changes} changes",
        mib(peak),
        mib(baseline)
    );
    let during = delivered.load(std::sync::atomic::Ordering::SeqCst);
    eprintln!(
        "RSS {:.1} MiB at first, {:.1} MiB at peak; {changes} changes, the working subscriber \
         had {during} notifications when they ended",
        mib(baseline),
        mib(peak)
    );
    wait_until(|| delivered.load(std::sync::atomic::Ordering::SeqCst) >= changes * 9 / 10);
    let failing = || {
        client
            .get(format!("{}/metrics", mep.mm5))
            .send()
            .unwrap()
            .text()
            .unwrap()
            .contains("mep_notification_subscriptions_failing 300")
    };
    wait_until(failing);
    for location in &holes {
        assert_eq!(client.delete(location).send().unwrap().status(), 204);
    }
    // The queues are looked at every 2 s; give the memory five looks to come back.
    let returned = peak - (peak - baseline) / 3;
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut after = rss_bytes(pid);
    while after >= returned && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(250));
        after = rss_bytes(pid);
    }
    let metrics = client
        .get(format!("{}/metrics", mep.mm5))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(
        metrics.contains("mep_notification_queue_bytes 0"),
        "{metrics}"
    );
    eprintln!("RSS {:.1} MiB after deleting the 300", mib(after));
    assert!(
        after < returned,
        "RSS {:.1} MiB 10 s after deleting them, {:.1} MiB at peak, {:.1} MiB at first",
        mib(after),
        mib(peak),
        mib(baseline)
    );
}

#[test]
fn log_format_json_writes_one_json_object_per_line() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("mep.toml");
    std::fs::write(&config, "mp1_adr = \"127.0.0.1:1\"\n").unwrap();
    for (flag, env) in [(true, None), (false, Some("json"))] {
        let mut command = Command::new(env!("CARGO_BIN_EXE_mep"));
        if flag {
            command.args(["--log-format", "json"]);
        }
        if let Some(value) = env {
            command.env("MEP_LOG_FORMAT", value);
        }
        let out = command
            .args(["serve", "--config"])
            .arg(&config)
            .output()
            .unwrap();
        assert!(!out.status.success());
        let stdout = String::from_utf8_lossy(&out.stdout);
        let lines: Vec<Value> = stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect();
        let error = lines
            .iter()
            .find(|l| l["level"] == "ERROR")
            .unwrap_or_else(|| panic!("an ERROR line: {stdout}"));
        assert!(
            error["message"].as_str().unwrap().contains("mp1_adr"),
            "{error}"
        );
        assert!(error["timestamp"].is_string(), "{error}");
    }
}

/// `mep <args>`, to its end.
fn run_mep<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_mep"))
        .args(args)
        .output()
        .unwrap()
}

/// `mep <args>` against the Mm5 at `mm5`; answers stdout, failing on a non-zero exit.
fn cli(mm5: &str, args: &[&str]) -> String {
    let out = run_mep(&[args, &["--mm5-url", mm5]].concat());
    assert!(
        out.status.success(),
        "mep {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn the_operator_cli_shows_apps_rules_services_tasks_and_dns_answers() {
    let dir = tempfile::tempdir().unwrap();
    let mep = start(dir.path(), free_port());
    let client = reqwest::blocking::Client::new();
    let config = json!({
        "appName": "video",
        "appTrafficRule": [{"trafficRuleId": "t1", "filterType": "FLOW", "priority": 1,
            "action": "DROP", "state": "ACTIVE", "trafficFilter": [{"dstAddress": ["10.1.0.0/16"]}]}],
        "appDNSRule": [{"dnsRuleId": "d1", "domainName": "video.edge.example",
            "ipAddressType": "IP_V4", "ipAddress": "192.0.2.10", "ttl": 30, "state": "ACTIVE"}]
    });
    let progress: Value = client
        .post(format!(
            "{}/mepcfg/app_lcm/v1/applications/app-1/appd_configuration",
            mep.mm5
        ))
        .json(&config)
        .send()
        .unwrap()
        .json()
        .unwrap();
    let task = progress["taskId"].as_str().unwrap().to_owned();
    let r = client
        .post(format!("{}/applications/app-1/services", mep.mp1))
        .json(&service("video-analytics"))
        .send()
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().unwrap());

    let apps = cli(&mep.mm5, &["apps"]);
    let row = apps.lines().find(|l| l.starts_with("app-1")).expect(&apps);
    assert_eq!(
        row.split_whitespace().collect::<Vec<_>>(),
        ["app-1", "video", "1", "1", "false"]
    );
    let json: Value = serde_json::from_str(&cli(&mep.mm5, &["apps", "--json"])).unwrap();
    assert_eq!(json[0]["trafficRules"], 1);

    let show = cli(&mep.mm5, &["apps", "show", "app-1"]);
    assert!(show.contains("t1") && show.contains("DROP"), "{show}");
    assert!(show.contains("video.edge.example 192.0.2.10"), "{show}");
    let rules = cli(&mep.mm5, &["rules"]);
    assert_eq!(
        rules.lines().filter(|l| l.starts_with("app-1")).count(),
        2,
        "{rules}"
    );
    let one: Value =
        serde_json::from_str(&cli(&mep.mm5, &["rules", "--app", "app-1", "--json"])).unwrap();
    assert_eq!(one["app-1"]["appDNSRule"][0]["dnsRuleId"], "d1");

    let services = cli(&mep.mm5, &["services"]);
    assert!(services.contains("video-analytics"), "{services}");
    let tasks = cli(&mep.mm5, &["tasks", &task]);
    assert!(tasks.contains("SUCCESS"), "{tasks}");

    let local = cli(&mep.mm5, &["dns", "test", "Video.Edge.Example."]);
    assert!(local.contains("answered by mep"), "{local}");
    assert!(
        local.contains("192.0.2.10") && local.contains("d1"),
        "{local}"
    );
    let forwarded = cli(&mep.mm5, &["dns", "test", "www.example.org"]);
    assert!(forwarded.contains("forwarded"), "{forwarded}");

    // A refusal from Mm5 is an error with its reason.
    let out = run_mep(&["apps", "show", "nope", "--mm5-url", &mep.mm5]);
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("404") && said.contains("no configuration"),
        "{said}"
    );
}

#[test]
fn the_cli_finds_mm5_and_its_token_in_the_configuration_file() {
    let dir = tempfile::tempdir().unwrap();
    let (mp1, mm5) = (free_port(), free_port());
    let config = dir.path().join("mep.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = {:?}\nmp1_addr = \"127.0.0.1:{mp1}\"\nmm5_addr = \"127.0.0.1:{mm5}\"\n\
             insecure_http = true\nno_auth = true\ndns_addr = \"127.0.0.1:0\"\n\
             mm5_token = \"operator-token-0123456789\"\n",
            dir.path().join("data")
        ),
    )
    .unwrap();
    let _child = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_mep"))
            .args(["serve", "--config"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let url = format!("http://127.0.0.1:{mm5}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !reqwest::blocking::get(format!("{url}/health")).is_ok_and(|r| r.status() == 200) {
        assert!(Instant::now() < deadline, "mep did not become healthy");
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = run_mep(&[
        std::ffi::OsStr::new("apps"),
        "--config".as_ref(),
        config.as_os_str(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("APP INSTANCE"));
    // Without the token Mm5 refuses, and the CLI says so.
    let out = run_mep(&["apps", "--mm5-url", &url]);
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("401"), "{said}");
}
