//! What the Mm5 benchmarks share: a `mep` on loopback ports with a store in a temporary
//! directory, and loading app configurations over Mm5.

use mep_api::{Config, Mep};

/// A `mep` with its defaults on loopback ports, plain HTTP; keep the directory while it runs.
pub async fn start() -> (Mep, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = Config::with_data_dir(dir.path());
    config.mp1_addr = "127.0.0.1:0".parse().unwrap();
    config.mm5_addr = "127.0.0.1:0".parse().unwrap();
    config.insecure_http = true;
    (Mep::start(config).await.expect("mep starts"), dir)
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
