//! Three `mep serve --store etcd` nodes on a real three-member etcd cluster (Debian's
//! etcd-server, started here on loopback ports) act as one platform: what is written on one node
//! is read, discovered and answered by DNS on the others; If-Match races between nodes have one
//! winner; a notification is sent once; a node and an etcd member may die; without quorum reads
//! and DNS go on while writes answer 503, and writes come back with etcd.

#![cfg(feature = "etcd")]

use std::io::{BufRead, BufReader, Read, Write as _};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const API_ROOT: &str = "http://mep.site.example:8080";

/// One cluster at a time: five three-member clusters with their nodes at once on two cores
/// starve etcd's elections (a member kill then took more than the write deadline to heal).
static ONE_CLUSTER_AT_A_TIME: Mutex<()> = Mutex::new(());

fn one_cluster_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_CLUSTER_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A child process killed on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Member {
    name: String,
    client: String,
    peer: String,
    dir: std::path::PathBuf,
    proc: Option<Proc>,
}

struct Etcd {
    members: Vec<Member>,
    cluster: String,
    _dir: tempfile::TempDir,
}

impl Etcd {
    fn start(n: usize) -> Etcd {
        let dir = tempfile::tempdir().unwrap();
        let mut members: Vec<Member> = (0..n)
            .map(|i| Member {
                name: format!("m{i}"),
                client: format!("http://127.0.0.1:{}", free_port()),
                peer: format!("http://127.0.0.1:{}", free_port()),
                dir: dir.path().join(format!("m{i}")),
                proc: None,
            })
            .collect();
        let cluster = members
            .iter()
            .map(|m| format!("{}={}", m.name, m.peer))
            .collect::<Vec<_>>()
            .join(",");
        let mut etcd = Etcd {
            members: Vec::new(),
            cluster,
            _dir: dir,
        };
        for m in &mut members {
            m.proc = Some(etcd.spawn(m));
        }
        etcd.members = members;
        etcd.wait_healthy(Duration::from_secs(30));
        etcd
    }

    fn spawn(&self, m: &Member) -> Proc {
        Proc(
            Command::new("etcd")
                .args(["--name", &m.name])
                .arg("--data-dir")
                .arg(&m.dir)
                .args(["--listen-client-urls", &m.client])
                .args(["--advertise-client-urls", &m.client])
                .args(["--listen-peer-urls", &m.peer])
                .args(["--initial-advertise-peer-urls", &m.peer])
                .args(["--initial-cluster", &self.cluster])
                .args(["--initial-cluster-state", "new"])
                .args([
                    "--initial-cluster-token",
                    &format!("mep-test-{}", std::process::id()),
                ])
                .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("etcd starts (Debian etcd-server; scripts/setup.sh installs it)"),
        )
    }

    fn endpoints(&self) -> String {
        self.members
            .iter()
            .map(|m| m.client.clone())
            .collect::<Vec<_>>()
            .join(",")
    }

    fn wait_healthy(&self, within: Duration) {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            let ok = Command::new("etcdctl")
                .env("ETCDCTL_API", "3")
                .args([
                    "--endpoints",
                    &self.endpoints(),
                    "put",
                    "/health-probe",
                    "1",
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("the etcd cluster did not become writable");
    }

    fn kill(&mut self, i: usize) {
        self.members[i].proc = None;
    }

    fn restart(&mut self, i: usize) {
        let p = self.spawn(&self.members[i]);
        self.members[i].proc = Some(p);
    }
}

struct Node {
    proc: Proc,
    mp1: String,
    mm5: String,
    dns_port: u16,
}

fn start_node(etcd: &Etcd, id: &str, master_key: &std::path::Path, dir: &std::path::Path) -> Node {
    start_node_with(etcd, id, master_key, dir, &["--no-auth"])
}

fn start_node_with(
    etcd: &Etcd,
    id: &str,
    master_key: &std::path::Path,
    dir: &std::path::Path,
    extra: &[&str],
) -> Node {
    let (mp1, mm5, dns) = (free_port(), free_port(), free_port());
    let child = Command::new(env!("CARGO_BIN_EXE_mep"))
        .args(["serve", "--insecure-http", "--store", "etcd"])
        .args(extra)
        .args(["--etcd-endpoints", &etcd.endpoints(), "--node-id", id])
        .arg("--master-key-file")
        .arg(master_key)
        .arg("--data-dir")
        .arg(dir.join(id))
        .args(["--api-root", API_ROOT])
        .args(["--mp1-addr", &format!("127.0.0.1:{mp1}")])
        .args(["--mm5-addr", &format!("127.0.0.1:{mm5}")])
        .args(["--dns-addr", &format!("127.0.0.1:{dns}")])
        .args(["--dns-upstream", "127.0.0.1:9"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("mep starts");
    let mut node = Node {
        proc: Proc(child),
        mp1: format!("http://127.0.0.1:{mp1}/mep/mec_service_mgmt/v1"),
        mm5: format!("http://127.0.0.1:{mm5}"),
        dns_port: dns,
    };
    // On a timeout, say what /ready said last (what is missing) and whether the node is alive.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = String::from("no answer yet");
    while Instant::now() < deadline {
        match reqwest::blocking::get(format!("{}/ready", node.mm5)) {
            Ok(r) if r.status() == 200 => return node,
            Ok(r) => last = format!("{}: {}", r.status(), r.text().unwrap_or_default()),
            Err(e) => last = format!("no answer: {e}"),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let exited = node.proc.0.try_wait().ok().flatten();
    panic!("node {id} was not ready within 30 s; /ready said {last}; exited: {exited:?}");
}

/// Nodes `ids` on `etcd`, each started with `extra` arguments.
fn start_nodes(
    etcd: &Etcd,
    ids: &[&str],
    master_key: &std::path::Path,
    dir: &std::path::Path,
    extra: &[&str],
) -> Vec<Node> {
    ids.iter()
        .map(|id| start_node_with(etcd, id, master_key, dir, extra))
        .collect()
}

fn wait_until(within: Duration, what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("timed out waiting until {what}");
}

fn service(name: &str, version: &str) -> Value {
    json!({"serName": name, "version": version, "state": "ACTIVE", "serializer": "JSON",
           "transportInfo": {"id": "t", "name": "REST", "type": "REST_HTTP", "protocol": "HTTP",
                             "version": "2.0", "endpoint": {"uris": ["http://10.0.0.1/x"]}, "security": {}}})
}

/// Registers `body` as a service of `app` on `node`: the status and, on 201, the service id.
fn register(node: &Node, app: &str, body: &Value) -> (u16, Option<String>) {
    let r = reqwest::blocking::Client::new()
        .post(format!("{}/applications/{app}/services", node.mp1))
        .json(body)
        .send()
        .unwrap();
    let status = r.status().as_u16();
    let id = r
        .json::<Value>()
        .ok()
        .and_then(|v| v["serInstanceId"].as_str().map(str::to_owned));
    (status, id)
}

/// Registers a new service of `app` on `node`, which must succeed; answers its id.
fn registered(node: &Node, app: &str, body: &Value) -> String {
    let (status, id) = register(node, app, body);
    assert_eq!(status, 201, "registration on {}", node.mp1);
    id.expect("a serInstanceId")
}

/// Subscribes `app` on `node` to availability changes of `ser_name`; answers the subscription id.
fn subscribe(node: &Node, app: &str, ser_name: &str, callback: &str) -> String {
    let r = reqwest::blocking::Client::new()
        .post(format!("{}/applications/{app}/subscriptions", node.mp1))
        .json(
            &json!({"subscriptionType": "SerAvailabilityNotificationSubscription",
                      "callbackReference": callback,
                      "filteringCriteria": {"serNames": [ser_name]}}),
        )
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    let location = r.headers()["location"].to_str().unwrap();
    location.rsplit('/').next().unwrap().to_owned()
}

/// A heartbeat for service `id` of `app` on `node`; answers the status.
fn heartbeat(node: &Node, app: &str, id: &str) -> u16 {
    reqwest::blocking::Client::new()
        .patch(format!(
            "{}/applications/{app}/services/{id}/liveness",
            node.mp1
        ))
        .json(&json!({"state": "ACTIVE"}))
        .send()
        .unwrap()
        .status()
        .as_u16()
}

fn discovered(node: &Node, name: &str) -> Vec<Value> {
    let r = reqwest::blocking::get(format!("{}/services?ser_name={name}", node.mp1)).unwrap();
    if r.status() != 200 {
        return Vec::new();
    }
    r.json::<Vec<Value>>().unwrap_or_default()
}

fn dig(node: &Node, name: &str) -> String {
    let out = Command::new("dig")
        .args([
            "+short",
            "+tries=1",
            "+time=1",
            "-p",
            &node.dns_port.to_string(),
        ])
        .args(["@127.0.0.1", name, "A"])
        .output()
        .expect("dig runs");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn dns_rule(app: &str, name: &str, ip: &str) -> Value {
    json!({
        "appName": app,
        "appDNSRule": [{
            "dnsRuleId": "dns-1", "domainName": name, "ipAddressType": "IP_V4",
            "ipAddress": ip, "ttl": 30, "state": "ACTIVE"
        }]
    })
}

fn configure(node: &Node, method: reqwest::Method, app: &str, body: &Value) -> u16 {
    reqwest::blocking::Client::new()
        .request(
            method,
            format!(
                "{}/mepcfg/app_lcm/v1/applications/{app}/appd_configuration",
                node.mm5
            ),
        )
        .json(body)
        .send()
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

/// What an HTTP sink was sent, in arrival order: each request line and JSON body.
#[derive(Clone, Default)]
struct Notified(Arc<Mutex<Vec<(String, Value)>>>);

impl Notified {
    fn count(&self) -> usize {
        self.0.lock().unwrap().len()
    }

    /// The request lines (`PUT /v1/state HTTP/1.1`).
    fn requests(&self) -> Vec<String> {
        self.entries().into_iter().map(|(r, _)| r).collect()
    }

    fn entries(&self) -> Vec<(String, Value)> {
        self.0.lock().unwrap().clone()
    }

    /// `(serInstanceId, state, changeType)` of each service availability notification.
    fn changes(&self) -> Vec<(String, String, String)> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .flat_map(|(_, n)| {
                n["serviceReferences"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
            })
            .map(|r| {
                let field = |k: &str| r[k].as_str().unwrap_or_default().to_owned();
                (field("serInstanceId"), field("state"), field("changeType"))
            })
            .collect()
    }
}

/// An HTTP server that records what it is sent (notifications, or a UPF controller's calls)
/// and answers 204.
fn notification_sink() -> (String, Notified) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/notify", listener.local_addr().unwrap());
    let notified = Notified::default();
    let seen = notified.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let seen = seen.clone();
            std::thread::spawn(move || serve_recording(stream, &seen));
        }
    });
    (url, notified)
}

/// Answers the requests of one connection, recording each.
fn serve_recording(stream: std::net::TcpStream, seen: &Notified) {
    let mut reader = BufReader::new(stream);
    loop {
        let mut request = String::new();
        if !reader.read_line(&mut request).is_ok_and(|n| n > 0) {
            return;
        }
        let mut length = 0usize;
        let mut line = String::new();
        while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
            if line == "\r\n" {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse().unwrap_or(0);
            }
            line.clear();
        }
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        seen.0.lock().unwrap().push((
            request.trim().to_owned(),
            serde_json::from_slice(&body).unwrap_or(Value::Null),
        ));
        let answer = b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n";
        if reader.get_mut().write_all(answer).is_err() {
            return;
        }
    }
}

fn master_key(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("master.key");
    std::fs::write(&path, [7u8; 32]).unwrap();
    path
}

#[test]
fn three_nodes_on_etcd_act_as_one_platform() {
    let _cluster = one_cluster_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let mut etcd = Etcd::start(3);
    let key = master_key(dir.path());
    let nodes: Vec<Node> =
        start_nodes(&etcd, &["n1", "n2", "n3"], &key, dir.path(), &["--no-auth"]);
    let client = reqwest::blocking::Client::new();

    // A service registered on node 1 is discovered on node 3, with the same ETag everywhere.
    let id = registered(&nodes[0], "app-a", &service("video", "1"));
    wait_until(
        Duration::from_secs(5),
        "node 3 discovers the service",
        || discovered(&nodes[2], "video").len() == 1,
    );
    let etag = |node: &Node| {
        client
            .get(format!("{}/applications/app-a/services/{id}", node.mp1))
            .send()
            .unwrap()
            .headers()
            .get("etag")
            .map(|v| v.to_str().unwrap().to_owned())
    };
    let ready: Value = client
        .get(format!("{}/ready", nodes[2].mm5))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(ready["store"], "etcd");
    assert_eq!(ready["node"], "n3");
    assert!(ready["appliedRevision"].as_i64().unwrap() > 0, "{ready}");
    let first = etag(&nodes[0]).expect("an ETag");
    wait_until(
        Duration::from_secs(5),
        "the ETag is the same on every node",
        || {
            nodes
                .iter()
                .all(|n| etag(n).as_deref() == Some(first.as_str()))
        },
    );

    // A DNS rule configured over Mm5 on node 2 is answered by the DNS server of node 1.
    let status = configure(
        &nodes[1],
        reqwest::Method::POST,
        "app-a",
        &dns_rule("video", "video.edge.example", "192.0.2.10"),
    );
    assert!((200..300).contains(&status), "Mm5 answered {status}");
    wait_until(Duration::from_secs(5), "node 1 answers the name", || {
        dig(&nodes[0], "video.edge.example") == "192.0.2.10"
    });

    // A subscription on node 3 gets exactly one notification for a change made on node 1.
    let (callback, notified) = notification_sink();
    let subscription = subscribe(&nodes[2], "app-c", "camera", &callback);
    wait_until(
        Duration::from_secs(5),
        "node 1 knows the subscription",
        || {
            client
                .get(format!(
                    "{}/applications/app-c/subscriptions/{subscription}",
                    nodes[0].mp1
                ))
                .send()
                .is_ok_and(|r| r.status() == 200)
        },
    );
    registered(&nodes[0], "app-b", &service("camera", "1"));
    wait_until(Duration::from_secs(5), "the notification arrives", || {
        notified.count() >= 1
    });
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(notified.count(), 1, "one notification, not one per node");

    // Two PUTs with the same ETag on two nodes: one 200, one 412.
    let current = etag(&nodes[0]).unwrap();
    let put = |node: &Node, version: &str| {
        reqwest::blocking::Client::new()
            .put(format!("{}/applications/app-a/services/{id}", node.mp1))
            .header("if-match", &current)
            .json(&service("video", version))
            .send()
            .unwrap()
            .status()
            .as_u16()
    };
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| put(&nodes[0], "2"));
        let b = s.spawn(|| put(&nodes[1], "3"));
        (a.join().unwrap(), b.join().unwrap())
    });
    let mut statuses = [a, b];
    statuses.sort();
    assert_eq!(statuses, [200, 412], "one If-Match winner across nodes");

    // kill -9 of node 1 and of one etcd member: the rest serves and takes writes, and nothing
    // acknowledged is lost.
    let mut nodes = nodes;
    let node1 = nodes.remove(0);
    drop(node1.proc);
    etcd.kill(0);
    let mut acknowledged = Vec::new();
    for i in 0..20 {
        let (status, _) = register(&nodes[i % 2], "app-d", &service(&format!("after-{i}"), "1"));
        assert_eq!(status, 201, "write {i} after the failures");
        acknowledged.push(format!("after-{i}"));
    }
    for name in ["video", "camera"]
        .iter()
        .copied()
        .chain(acknowledged.iter().map(String::as_str))
    {
        wait_until(
            Duration::from_secs(5),
            "both nodes left discover everything",
            || nodes.iter().all(|n| discovered(n, name).len() == 1),
        );
    }
    assert_eq!(dig(&nodes[1], "video.edge.example"), "192.0.2.10");

    // The member comes back and catches up; a node started now loads everything.
    etcd.restart(0);
    let late = start_node(&etcd, "n4", &key, dir.path());
    for name in ["video", "camera", "after-19"] {
        assert_eq!(discovered(&late, name).len(), 1, "{name} on the late node");
    }
    assert_eq!(dig(&late, "video.edge.example"), "192.0.2.10");
}

#[test]
fn without_quorum_reads_and_dns_answer_and_writes_are_503_until_etcd_is_back() {
    let _cluster = one_cluster_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let mut etcd = Etcd::start(3);
    let key = master_key(dir.path());
    let node = start_node(&etcd, "q1", &key, dir.path());
    let client = reqwest::blocking::Client::new();
    registered(&node, "app-a", &service("video", "1"));
    let status = configure(
        &node,
        reqwest::Method::POST,
        "app-a",
        &dns_rule("video", "video.edge.example", "192.0.2.20"),
    );
    assert!((200..300).contains(&status), "Mm5 answered {status}");
    assert_eq!(dig(&node, "video.edge.example"), "192.0.2.20");
    let mut beating = service("beating", "1");
    beating["livenessInterval"] = json!(30);
    let beating_id = registered(&node, "app-a", &beating);

    etcd.kill(1);
    etcd.kill(2);
    let started = Instant::now();
    assert_eq!(
        heartbeat(&node, "app-a", &beating_id),
        200,
        "a heartbeat counts without quorum"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "and is not held for the write deadline: {:?}",
        started.elapsed()
    );
    assert_eq!(
        discovered(&node, "video").len(),
        1,
        "discovery answers from memory"
    );
    assert_eq!(
        dig(&node, "video.edge.example"),
        "192.0.2.20",
        "DNS answers from memory"
    );
    let started = Instant::now();
    let r = client
        .post(format!("{}/applications/app-a/services", node.mp1))
        .json(&service("lost", "1"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 503, "a write without quorum");
    assert_eq!(
        r.headers()["content-type"].to_str().unwrap(),
        "application/problem+json"
    );
    let problem: Value = r.json().unwrap();
    assert!(
        problem["detail"].as_str().unwrap().contains("unavailable"),
        "{problem}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "the 503 comes in bounded time"
    );
    assert!(discovered(&node, "lost").is_empty());

    etcd.restart(1);
    etcd.restart(2);
    wait_until(Duration::from_secs(30), "writes succeed again", || {
        register(&node, "app-a", &service("back", "1")).0 == 201
    });
    assert_eq!(discovered(&node, "back").len(), 1);
    // A write refused at the deadline has an unknown outcome: its first attempt may sit in the
    // log of the member that still led when it came, and commit once quorum is back. What holds
    // is that it lands at most once and the node shows what etcd committed.
    let services = etcd_values(&etcd, "/mep/v1/services/");
    let named = |name: &str| {
        let field = format!(r#""serName":"{name}""#);
        services.iter().filter(|v| v.contains(&field)).count()
    };
    assert_eq!(named("back"), 1, "etcd holds the write that succeeded");
    let landed = named("lost");
    assert!(landed <= 1, "the refused write landed {landed} times");
    eprintln!("the write refused without quorum landed {landed} time(s)");
    wait_until(
        Duration::from_secs(10),
        "the node shows what etcd committed",
        || discovered(&node, "lost").len() == landed,
    );
}

#[test]
fn heartbeats_on_one_node_keep_a_service_active_everywhere_and_their_end_suspends_it_everywhere() {
    let _cluster = one_cluster_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let etcd = Etcd::start(3);
    let key = master_key(dir.path());
    let nodes: Vec<Node> =
        start_nodes(&etcd, &["h1", "h2", "h3"], &key, dir.path(), &["--no-auth"]);
    let client = reqwest::blocking::Client::new();
    let (callback, notified) = notification_sink();
    subscribe(&nodes[2], "app-s", "beating", &callback);
    std::thread::sleep(Duration::from_millis(300));
    let mut body = service("beating", "1");
    body["livenessInterval"] = json!(1);
    let id = registered(&nodes[0], "app-h", &body);
    let state = |node: &Node| {
        client
            .get(format!("{}/services/{id}", node.mp1))
            .send()
            .ok()
            .and_then(|r| r.json::<Value>().ok())
            .map(|v| v["state"].as_str().unwrap_or("").to_owned())
            .unwrap_or_default()
    };
    wait_until(Duration::from_secs(5), "Added is sent and settled", || {
        notified.count() == 1 && etcd_keys(&etcd, "/mep/v1/outbox/") == 0
    });
    let before = etcd_revision(&etcd);
    // Heartbeats every 300 ms on node 2 only, for 4 s: twice the suspension deadline (2 s).
    let until = Instant::now() + Duration::from_secs(4);
    while Instant::now() < until {
        assert_eq!(heartbeat(&nodes[1], "app-h", &id), 200);
        std::thread::sleep(Duration::from_millis(300));
        for node in &nodes {
            assert_eq!(state(node), "ACTIVE", "while node 2 gets heartbeats");
        }
    }
    // Heartbeats renew the service's etcd lease; they write nothing.
    assert_eq!(etcd_revision(&etcd), before, "heartbeats are not writes");
    assert_eq!(etcd_keys(&etcd, &format!("/mep/v1/liveness/{id}")), 1);
    wait_until(
        Duration::from_secs(6),
        "every node suspends the service",
        || nodes.iter().all(|n| state(n) == "SUSPENDED"),
    );
    // The suspension is the lease's expiry: etcd deleted the record, at one revision for all.
    assert_eq!(etcd_keys(&etcd, &format!("/mep/v1/liveness/{id}")), 0);
    wait_until(Duration::from_secs(3), "the suspension is notified", || {
        notified.count() >= 2
    });
    std::thread::sleep(Duration::from_millis(800));
    // Added and StateChanged, sent by the leader: one each, not one per node.
    let suspended = (
        id.clone(),
        "SUSPENDED".to_owned(),
        "STATE_CHANGED".to_owned(),
    );
    assert_eq!(
        notified.changes(),
        [
            (id.clone(), "ACTIVE".to_owned(), "ADDED".to_owned()),
            suspended.clone()
        ]
    );
    // A heartbeat on node 3 revives it everywhere, and the revival is notified once.
    assert_eq!(heartbeat(&nodes[2], "app-h", &id), 200);
    wait_until(
        Duration::from_secs(3),
        "every node revives the service",
        || nodes.iter().all(|n| state(n) == "ACTIVE"),
    );
    wait_until(Duration::from_secs(3), "the revival is notified", || {
        notified.count() >= 3
    });
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(
        notified.changes()[2..],
        [(id.clone(), "ACTIVE".to_owned(), "STATE_CHANGED".to_owned())]
    );
}

/// The node that sends the site's notifications now, from `/ready`.
fn notifier(nodes: &[Node]) -> Vec<usize> {
    nodes
        .iter()
        .enumerate()
        .filter(|(_, n)| {
            reqwest::blocking::Client::new()
                .get(format!("{}/ready", n.mm5))
                .timeout(Duration::from_millis(500))
                .send()
                .ok()
                .and_then(|r| r.json::<Value>().ok())
                .is_some_and(|v| v["notifier"] == true)
        })
        .map(|(i, _)| i)
        .collect()
}

/// The Authorization header of a signed `POST /mep/token` (SDK-HMAC-SHA256 over
/// `content-type;host;x-sdk-date` and an empty body), computed here with ring.
fn sdk_signed(ak: &str, sk: &str, host: &str, date: &str) -> String {
    let sha = |b: &[u8]| hex::encode(ring::digest::digest(&ring::digest::SHA256, b));
    let canonical = format!(
        "POST\n/mep/token/\n\ncontent-type:application/json\nhost:{host}\nx-sdk-date:{date}\n\ncontent-type;host;x-sdk-date\n{}",
        sha(b"")
    );
    let to_sign = format!("SDK-HMAC-SHA256\n{date}\n{}", sha(canonical.as_bytes()));
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, sk.as_bytes());
    let signature = hex::encode(ring::hmac::sign(&key, to_sign.as_bytes()));
    format!("SDK-HMAC-SHA256 Access={ak}, SignedHeaders=content-type;host;x-sdk-date, Signature={signature}")
}

/// etcd's newest revision.
fn etcd_revision(etcd: &Etcd) -> i64 {
    let out = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .args(["--endpoints", &etcd.members[0].client])
        .args(["endpoint", "status", "-w", "json"])
        .output()
        .unwrap();
    let status: Value = serde_json::from_slice(&out.stdout).expect("etcdctl endpoint status");
    status[0]["Status"]["header"]["revision"]
        .as_i64()
        .expect("a revision")
}

/// etcdctl's output for `get --prefix prefix` with `extra` options.
fn etcdctl_get(etcd: &Etcd, prefix: &str, extra: &[&str]) -> String {
    let out = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .args(["--endpoints", &etcd.endpoints()])
        .args(["get", "--prefix", prefix])
        .args(extra)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "etcdctl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// How many keys etcd holds under `prefix` (etcdctl 3.4 has no `--count-only`).
fn etcd_keys(etcd: &Etcd, prefix: &str) -> usize {
    etcdctl_get(etcd, prefix, &["--keys-only"])
        .lines()
        .filter(|l| l.starts_with(prefix))
        .count()
}

/// The values etcd holds under `prefix`.
fn etcd_values(etcd: &Etcd, prefix: &str) -> Vec<String> {
    etcdctl_get(etcd, prefix, &["--print-value-only"])
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

#[test]
fn notifications_outlive_the_node_that_was_sending_them() {
    let _cluster = one_cluster_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let etcd = Etcd::start(3);
    let key = master_key(dir.path());
    let mut nodes: Vec<Node> =
        start_nodes(&etcd, &["l1", "l2", "l3"], &key, dir.path(), &["--no-auth"]);
    wait_until(Duration::from_secs(10), "one node leads", || {
        notifier(&nodes).len() == 1
    });
    let leader = notifier(&nodes)[0];
    let others: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    let (a, b) = (&nodes[others[0]], &nodes[others[1]]);
    let (callback, notified) = notification_sink();
    subscribe(a, "app-w", "watched", &callback);
    std::thread::sleep(Duration::from_millis(300));
    let mut body = service("watched", "1");
    body["livenessInterval"] = json!(1);
    let beating = registered(a, "app-p", &body);
    wait_until(Duration::from_secs(5), "the leader sends Added", || {
        notified.count() == 1
    });
    for _ in 0..4 {
        assert_eq!(heartbeat(b, "app-p", &beating), 200);
        std::thread::sleep(Duration::from_millis(250));
    }
    // The leader freezes with its lease. A registration on another node is committed with its
    // notification, which nobody sends yet; the heartbeats end, so the service is suspended
    // (at 2 s) while nobody leads.
    signal(&nodes[leader].proc, "-STOP");
    let stopped = Instant::now();
    let plain = registered(a, "app-p", &service("watched", "2"));
    assert_eq!(
        notified.count(),
        1,
        "nothing is sent while the leader is frozen"
    );
    wait_until(Duration::from_secs(10), "another node leads", || {
        notifier(&nodes[..]).len() == 1
    });
    let took_over = stopped.elapsed();
    wait_until(
        Duration::from_secs(10),
        "the new leader sends what the outbox holds and the suspension",
        || notified.count() >= 3,
    );
    std::thread::sleep(Duration::from_millis(1000));
    let mut changes = notified.changes()[1..].to_vec();
    changes.sort();
    let mut expected = vec![
        (plain.clone(), "ACTIVE".to_owned(), "ADDED".to_owned()),
        (
            beating.clone(),
            "SUSPENDED".to_owned(),
            "STATE_CHANGED".to_owned(),
        ),
    ];
    expected.sort();
    assert_eq!(
        changes, expected,
        "each once, after {took_over:?} without a leader"
    );
    wait_until(Duration::from_secs(5), "the outbox is empty", || {
        etcd_keys(&etcd, "/mep/v1/outbox/") == 0
    });
    // The old leader wakes up after its lease expired: it does not send anything again.
    signal(&nodes[leader].proc, "-CONT");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(notified.count(), 3, "the woken leader sent nothing");
    let leaders = notifier(&nodes);
    assert_eq!(leaders.len(), 1, "one leader");
    assert_ne!(leaders[0], leader);
    // A leader that stops hands the lead on (revokes its lease) instead of leaving it held
    // for the lease's life.
    let mut current = nodes.remove(leaders[0]);
    signal(&current.proc, "-TERM");
    current.proc.0.wait().unwrap();
    let holder = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .args(["--endpoints", &etcd.endpoints()])
        .args(["get", "/mep/v1/leader", "--print-value-only"])
        .output()
        .unwrap();
    let holder = String::from_utf8_lossy(&holder.stdout).trim().to_owned();
    assert!(
        !holder.starts_with(["l1", "l2", "l3"][leaders[0]]),
        "the stopped node still holds the lead: {holder}"
    );
}

#[test]
fn a_token_issued_by_one_node_is_valid_on_every_node_and_a_revocation_reaches_them_all() {
    let _cluster = one_cluster_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let etcd = Etcd::start(3);
    let key = master_key(dir.path());
    let nodes: Vec<Node> = start_nodes(&etcd, &["t1", "t2"], &key, dir.path(), &[]);
    let client = reqwest::blocking::Client::new();
    let root = |n: &Node| {
        n.mp1
            .trim_end_matches("/mep/mec_service_mgmt/v1")
            .to_owned()
    };
    let jwks = |n: &Node| {
        client
            .get(format!("{}/mep/token/jwks", root(n)))
            .send()
            .unwrap()
            .text()
            .unwrap()
    };
    assert_eq!(
        jwks(&nodes[0]),
        jwks(&nodes[1]),
        "one signing key ring for the site"
    );
    let (app, ak) = (
        "5abe4782-2c70-4e47-9a4e-0ee3a1a0fd1f",
        "QVUJMSUMgS0VZLS0tLS0",
    );
    let sk = "DXPb4sqElKhcHe07Kw5uorayETwId1JOjjOIRomRs5wyszoCR5R7AtVa28KT3lSc";
    let r = client
        .put(format!(
            "{}/mep/appMng/v1/applications/{app}/confs",
            nodes[0].mm5
        ))
        .json(
            &json!({"authInfo": {"credentials": {"accessKeyId": ak, "secretKey": sk}},
                      "appInfo": {"appName": "demo", "requiredServices": []}}),
        )
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    let token: Value = client
        .post(format!("{}/mep/token", root(&nodes[0])))
        .basic_auth(ak, Some(sk))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .unwrap()
        .json()
        .unwrap();
    let token = token["access_token"].as_str().expect("a token").to_owned();
    let list = |n: &Node| {
        client
            .get(format!("{}/applications/{app}/services", n.mp1))
            .bearer_auth(&token)
            .send()
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(list(&nodes[0]), 200);
    wait_until(
        Duration::from_secs(5),
        "node 2 takes node 1's token",
        || list(&nodes[1]) == 200,
    );
    // A signed token request (EdgeGallery's AK/SK signature) is good once for the whole site:
    // replayed on the other node within its window, it is refused.
    let host = "mep.site.example:8080";
    let date = String::from_utf8(
        Command::new("date")
            .args(["-u", "+%Y%m%dT%H%M%SZ"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
    .trim()
    .to_owned();
    let authorization = sdk_signed(ak, sk, host, &date);
    let signed = |n: &Node| {
        client
            .post(format!("{}/mep/token", root(n)))
            .header("host", host)
            .header("content-type", "application/json")
            .header("x-sdk-date", &date)
            .header("authorization", &authorization)
            .send()
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(signed(&nodes[0]), 200, "the signed request, first used");
    assert_eq!(
        signed(&nodes[1]),
        401,
        "the same request replayed on node 2"
    );
    assert_eq!(etcd_keys(&etcd, "/mep/v1/signed_requests/"), 1);
    // Three wrong secrets on node 1 lock the key for this source; node 2 then refuses it the
    // right secret as well.
    let basic = |n: &Node, secret: &str| {
        client
            .post(format!("{}/mep/token", root(n)))
            .basic_auth(ak, Some(secret))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(basic(&nodes[0], "wrong"), 401);
    assert_eq!(basic(&nodes[0], "wrong"), 401);
    assert_eq!(basic(&nodes[0], "wrong"), 429, "the third failure locks");
    wait_until(
        Duration::from_secs(5),
        "node 2 applies node 1's lock",
        || basic(&nodes[1], sk) == 429,
    );
    let r = client
        .delete(format!(
            "{}/mep/appMng/v1/applications/{app}/confs",
            nodes[1].mm5
        ))
        .send()
        .unwrap();
    assert_eq!(r.status(), 204);
    wait_until(
        Duration::from_secs(5),
        "the revocation reaches node 1",
        || list(&nodes[0]) == 401,
    );
    assert_eq!(list(&nodes[1]), 401);
}

/// Sends a signal to a process (`kill -STOP`, `-CONT`).
fn signal(proc: &Proc, sig: &str) {
    let status = Command::new("kill")
        .args([sig, &proc.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn a_node_whose_watch_fell_behind_a_compaction_lists_again_and_catches_up() {
    let _cluster = one_cluster_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let mut etcd = Etcd::start(3);
    let key = master_key(dir.path());
    let nodes: Vec<Node> = start_nodes(&etcd, &["c1", "c2"], &key, dir.path(), &["--no-auth"]);
    let gone = registered(&nodes[0], "app-a", &service("gone", "1"));
    let kept = registered(&nodes[0], "app-a", &service("kept", "1"));
    wait_until(Duration::from_secs(5), "node 2 sees both", || {
        discovered(&nodes[1], "gone").len() == 1 && discovered(&nodes[1], "kept").len() == 1
    });
    // Node 2 stops; the member its watch streams from dies; meanwhile services change and etcd
    // compacts its history past node 2's position.
    signal(&nodes[1].proc, "-STOP");
    etcd.kill(0);
    let client = reqwest::blocking::Client::new();
    let r = client
        .delete(format!(
            "{}/applications/app-a/services/{gone}",
            nodes[0].mp1
        ))
        .send()
        .unwrap();
    let status = r.status();
    assert_eq!(status, 204, "{}", r.text().unwrap_or_default());
    let mut updated = service("kept", "2");
    updated["serInstanceId"] = json!(kept);
    let r = client
        .put(format!(
            "{}/applications/app-a/services/{kept}",
            nodes[0].mp1
        ))
        .json(&updated)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    registered(&nodes[0], "app-b", &service("new", "1"));
    let others = format!("{},{}", etcd.members[1].client, etcd.members[2].client);
    let status = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .args([
            "--endpoints",
            &others,
            "put",
            "/compaction-probe",
            "1",
            "-w",
            "json",
        ])
        .output()
        .unwrap();
    let header: Value = serde_json::from_slice(&status.stdout).unwrap();
    let revision = header["header"]["revision"].as_i64().unwrap();
    let compacted = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .args(["--endpoints", &others, "compact", &revision.to_string()])
        .status()
        .unwrap();
    assert!(compacted.success());
    signal(&nodes[1].proc, "-CONT");
    wait_until(
        Duration::from_secs(15),
        "node 2 lists again and catches up",
        || {
            discovered(&nodes[1], "gone").is_empty()
                && discovered(&nodes[1], "new").len() == 1
                && discovered(&nodes[1], "kept")
                    .first()
                    .is_some_and(|s| s["version"] == "2")
        },
    );
}

#[test]
fn a_upf_controller_shared_by_the_site_gets_each_rule_change_once() {
    let _cluster = one_cluster_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let etcd = Etcd::start(3);
    let key = master_key(dir.path());
    let (sink, upf) = notification_sink();
    let endpoint = sink.replace("/notify", "/upf");
    let args = [
        "--no-auth",
        "--dataplane",
        "upf-http",
        "--upf-endpoint",
        &endpoint,
    ];
    let mut nodes: Vec<Node> = start_nodes(&etcd, &["u1", "u2", "u3"], &key, dir.path(), &args);
    wait_until(Duration::from_secs(10), "one node leads", || {
        notifier(&nodes).len() == 1
    });
    let states = || {
        upf.requests()
            .iter()
            .filter(|r| r.starts_with("PUT /upf/v1/state "))
            .count()
    };
    wait_until(
        Duration::from_secs(5),
        "the leader brings the controller in line",
        || states() == 1,
    );
    let leader = notifier(&nodes)[0];
    let writer = (leader + 1) % nodes.len();
    let status = configure(
        &nodes[writer],
        reqwest::Method::POST,
        "app-u",
        &dns_rule("app-u", "upf.edge.example", "192.0.2.40"),
    );
    assert!((200..300).contains(&status), "Mm5 answered {status}");
    wait_until(
        Duration::from_secs(5),
        "every node answers the name",
        || {
            nodes
                .iter()
                .all(|n| dig(n, "upf.edge.example") == "192.0.2.40")
        },
    );
    std::thread::sleep(Duration::from_millis(1000));
    let rule_calls: Vec<String> = upf
        .requests()
        .into_iter()
        .filter(|r| r.contains("/dns-rules/"))
        .collect();
    assert_eq!(rule_calls.len(), 1, "once, by the writer: {rule_calls:?}");
    assert!(rule_calls[0].starts_with("PUT /upf/v1/apps/app-u/dns-rules/dns-1 "));
    assert_eq!(
        states(),
        1,
        "the other nodes leave the controller's state alone"
    );
    // The leader dies; the next one brings the controller in line, with the rule.
    drop(nodes.remove(leader));
    wait_until(
        Duration::from_secs(10),
        "the next leader brings the controller in line",
        || states() == 2,
    );
    let state = upf
        .entries()
        .into_iter()
        .rfind(|(r, _)| r.starts_with("PUT /upf/v1/state "))
        .map(|(_, body)| body.to_string())
        .unwrap_or_default();
    assert!(state.contains("upf.edge.example"), "{state}");
}

#[test]
fn a_termination_run_by_one_node_ends_when_the_app_confirms_on_another() {
    let _cluster = one_cluster_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let etcd = Etcd::start(3);
    let key = master_key(dir.path());
    let args = ["--no-auth", "--max-graceful-timeout", "30"];
    let nodes: Vec<Node> = start_nodes(&etcd, &["x1", "x2"], &key, dir.path(), &args);
    let app_support = |n: &Node| n.mp1.replace("mec_service_mgmt", "mec_app_support");
    let client = reqwest::blocking::Client::new();
    let (callback, notified) = notification_sink();
    let r = client
        .post(format!(
            "{}/applications/app-t/subscriptions",
            app_support(&nodes[1])
        ))
        .json(
            &json!({"subscriptionType": "AppTerminationNotificationSubscription",
                      "callbackReference": callback, "appInstanceId": "app-t"}),
        )
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    std::thread::sleep(Duration::from_millis(500));
    let mm5 = nodes[0].mm5.clone();
    let termination = std::thread::spawn(move || {
        reqwest::blocking::Client::new()
            .delete(format!(
                "{mm5}/mep/mec_app_support/v1/applications/app-t/AppInstanceTermination"
            ))
            .timeout(Duration::from_secs(60))
            .send()
            .unwrap()
            .json::<Value>()
            .unwrap()
    });
    wait_until(
        Duration::from_secs(10),
        "the app is told of its termination",
        || notified.count() == 1,
    );
    assert_eq!(
        notified.entries()[0].1["notificationType"],
        "AppTerminationNotification"
    );
    let r = client
        .post(format!(
            "{}/applications/app-t/confirm_termination",
            app_support(&nodes[1])
        ))
        .json(&json!({"operationAction": "TERMINATING"}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 204);
    let report = termination.join().unwrap();
    assert_eq!(report["confirmed"], true, "{report}");
    assert_eq!(
        etcd_keys(&etcd, "/mep/v1/terminations/"),
        0,
        "the termination's record is gone"
    );
}

#[test]
fn rule_changes_of_one_app_racing_on_two_nodes_leave_one_configuration_everywhere() {
    let _cluster = one_cluster_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let etcd = Etcd::start(3);
    let key = master_key(dir.path());
    let nodes: Vec<Node> = start_nodes(&etcd, &["r1", "r2"], &key, dir.path(), &["--no-auth"]);
    let name = "race.edge.example";
    let status = configure(
        &nodes[0],
        reqwest::Method::POST,
        "app-r",
        &dns_rule("race", name, "192.0.2.1"),
    );
    assert!((200..300).contains(&status), "Mm5 answered {status}");
    wait_until(Duration::from_secs(5), "both nodes answer", || {
        nodes.iter().all(|n| dig(n, name) == "192.0.2.1")
    });
    let mut conflicts = 0;
    for round in 0..10u8 {
        let ips = [
            format!("192.0.2.{}", 10 + 2 * round),
            format!("192.0.2.{}", 11 + 2 * round),
        ];
        let barrier = Arc::new(std::sync::Barrier::new(2));
        let racers: Vec<_> = nodes
            .iter()
            .zip(&ips)
            .map(|(node, ip)| {
                let (mm5, body, barrier) = (
                    node.mm5.clone(),
                    dns_rule("race", name, ip),
                    barrier.clone(),
                );
                std::thread::spawn(move || {
                    let client = reqwest::blocking::Client::new();
                    barrier.wait();
                    client
                        .put(format!(
                            "{mm5}/mepcfg/app_lcm/v1/applications/app-r/appd_configuration"
                        ))
                        .json(&body)
                        .send()
                        .map(|r| r.status().as_u16())
                        .unwrap_or(0)
                })
            })
            .collect();
        let statuses: Vec<u16> = racers.into_iter().map(|t| t.join().unwrap()).collect();
        for s in &statuses {
            assert!(*s == 200 || *s == 409, "round {round}: {statuses:?}");
        }
        assert!(statuses.contains(&200), "round {round}: one change wins");
        conflicts += statuses.iter().filter(|s| **s == 409).count();
        let won: Vec<&String> = ips
            .iter()
            .zip(&statuses)
            .filter(|(_, s)| **s == 200)
            .map(|(ip, _)| ip)
            .collect();
        // Both nodes settle on one configuration, one that was accepted.
        wait_until(
            Duration::from_secs(5),
            "both nodes answer the same accepted address",
            || {
                let answers: Vec<String> = nodes.iter().map(|n| dig(n, name)).collect();
                answers[0] == answers[1] && won.iter().any(|ip| **ip == answers[0])
            },
        );
    }
    eprintln!("{conflicts} of 10 races ended with a 409 for the later change");
}
