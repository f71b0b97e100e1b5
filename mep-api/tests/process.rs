//! The `mep` binary as an operator runs it: durability across `kill -9`, clean exit on SIGTERM,
//! refusal of bad configuration.

use std::net::TcpListener;
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

struct Running {
    child: Child,
    mp1: String,
    mm5: String,
}

fn start(data_dir: &std::path::Path, mp1_port: u16) -> Running {
    let mm5_port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_mep"))
        .args(["serve", "--insecure-http", "--data-dir"])
        .arg(data_dir)
        .args(["--mp1-addr", &format!("127.0.0.1:{mp1_port}")])
        .args(["--mm5-addr", &format!("127.0.0.1:{mm5_port}")])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("mep starts");
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

    let mut mep = start(dir.path(), port);
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
    mep.child.kill().unwrap();
    mep.child.wait().unwrap();
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
    let mut again = start(dir.path(), free_port());
    again.child.kill().unwrap();
    again.child.wait().unwrap();
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
    let mut child = Command::new(env!("CARGO_BIN_EXE_mep"))
        .arg("serve")
        .env("MEP_DATA_DIR", dir.path())
        .env("MEP_MP1_ADDR", format!("127.0.0.1:{mp1}"))
        .env("MEP_MM5_ADDR", format!("127.0.0.1:{mm5}"))
        .env("MEP_INSECURE_HTTP", "true")
        .env("MEP_API_ROOT", "http://mep.example:8443")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
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
    assert!(dir.path().join("mep.redb").exists());
    child.kill().unwrap();
    child.wait().unwrap();
}
