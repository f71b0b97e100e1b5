//! The maps of the code (`ARCHITECTURE.md`, `CONTRIBUTING.md`, `README.md`) name files that exist,
//! so that moving a file without updating its map fails here.

use std::path::Path;

#[test]
fn every_file_the_docs_name_exists() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut missing = Vec::new();
    for doc in ["ARCHITECTURE.md", "CONTRIBUTING.md", "README.md"] {
        let text = std::fs::read_to_string(root.join(doc)).expect("the document");
        for quoted in text.split('`').skip(1).step_by(2) {
            let looks_like_path = quoted.contains('/')
                && !quoted.contains(' ')
                && !quoted.contains('*')
                && !quoted.contains("://")
                && !quoted.starts_with('/')
                && [".rs", ".md", ".sh", ".toml", ".py"]
                    .iter()
                    .any(|ext| quoted.ends_with(ext));
            if looks_like_path && !root.join(quoted).exists() {
                missing.push(format!("{doc}: {quoted}"));
            }
        }
    }
    assert!(missing.is_empty(), "named but missing: {missing:#?}");
}
