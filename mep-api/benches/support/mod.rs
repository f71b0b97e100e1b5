//! What the Mm5 benchmarks share: a `mep` on loopback ports with a store in a temporary
//! directory, and loading app configurations over Mm5.
// Each bench uses a part of it.
#![allow(dead_code)]

use mep_api::config::DataPlaneChoice;
use mep_api::{Config, Mep};

/// A `mep` with its defaults on loopback ports, plain HTTP; keep the directory while it runs.
pub async fn start() -> (Mep, tempfile::TempDir) {
    start_with(DataPlaneChoice::None).await
}

/// `start` with the data plane `dataplane`.
pub async fn start_with(dataplane: DataPlaneChoice) -> (Mep, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = Config::with_data_dir(dir.path());
    config.mp1_addr = "127.0.0.1:0".parse().unwrap();
    config.mm5_addr = "127.0.0.1:0".parse().unwrap();
    config.insecure_http = true;
    config.dataplane = dataplane;
    (Mep::start(config).await.expect("mep starts"), dir)
}

/// A veth pair for the xdp data plane to attach to (removed on drop).
pub struct Veth(pub String);

impl Veth {
    pub fn new(name: &str) -> Self {
        let peer = format!("{name}p");
        let _ = std::process::Command::new("ip")
            .args(["link", "del", name])
            .output();
        let ok = |args: &[&str]| {
            let out = std::process::Command::new("ip")
                .args(args)
                .output()
                .expect("ip");
            assert!(out.status.success(), "ip {args:?}: {out:?}");
        };
        ok(&["link", "add", name, "type", "veth", "peer", "name", &peer]);
        ok(&["link", "set", name, "up"]);
        ok(&["link", "set", &peer, "up"]);
        Self(name.to_owned())
    }
}

impl Drop for Veth {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["link", "del", &self.0])
            .output();
    }
}

/// The Mm5 URL of `app-{app}`'s `appd_configuration`.
pub fn appd_url(mep: &Mep, app: usize) -> String {
    format!(
        "http://{}/mepcfg/app_lcm/v1/applications/app-{app}/appd_configuration",
        mep.mm5_addr
    )
}

/// POSTs `body(app)` for apps `0..apps` and asserts each succeeded.
pub async fn load(
    mep: &Mep,
    http: &reqwest::Client,
    apps: usize,
    body: impl Fn(usize) -> serde_json::Value,
) {
    for app in 0..apps {
        let r = http
            .post(appd_url(mep, app))
            .json(&body(app))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    }
}
