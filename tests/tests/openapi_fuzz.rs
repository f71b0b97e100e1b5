//! Schemathesis (PyPI, installed by scripts/setup.sh) against a running mep's own OpenAPI
//! documents: requests generated from each operation's parameters and body schema, then chained
//! through the resources they create. Every answer must be no 5xx, a documented status with its
//! documented content type and schema, and a schema-valid request must not be refused.
//! `tests/schemathesis/mep.toml` says which checks are off where, and why.

use std::path::Path;
use std::process::Command;

use mep_tests::TestMep;

/// Generated cases per operation and phase; the seed keeps a failure reproducible with the same
/// command (the test prints it).
const MAX_EXAMPLES: &str = "30";
const SEED: &str = "1";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_requests_get_the_answers_the_documents_promise() {
    let dir = tempfile::tempdir().unwrap();
    let mep = TestMep::start(dir.path()).await;
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("schemathesis/mep.toml");
    for (listener, base) in [("mp1", mep.mp1.clone()), ("mm5", mep.mm5.clone())] {
        let config = config.clone();
        // Hypothesis keeps a directory where it runs: not in the source tree.
        let scratch = dir.path().to_owned();
        let output = tokio::task::spawn_blocking(move || {
            Command::new("schemathesis")
                .current_dir(scratch)
                .arg("--config-file")
                .arg(&config)
                .args(["run", &format!("{base}/openapi.json"), "--url", &base])
                .args(["--max-examples", MAX_EXAMPLES, "--seed", SEED])
                // One worker: hypothesis describes its strategies with Python's `ast`, which
                // is not safe across threads on Python 3.11 ("AST constructor recursion depth
                // mismatch").
                .args(["--workers", "1"])
                .env("NO_COLOR", "1")
                .output()
                .expect("schemathesis runs (scripts/setup.sh installs it)")
        })
        .await
        .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "{listener}: {stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        // A run that tested nothing would pass too.
        let tested = stdout
            .lines()
            .find_map(|line| line.trim().strip_prefix("Tested: "))
            .and_then(|n| n.trim().parse::<u32>().ok())
            .unwrap_or(0);
        assert!(
            tested >= 15,
            "{listener}: only {tested} operations tested\n{stdout}"
        );
    }
    mep.stop().await;
}
