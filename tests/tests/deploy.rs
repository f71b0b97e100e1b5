//! What operators install around the binary (`deploy/`): the Kubernetes manifests validate against
//! Kubernetes' schemas (kubernetes-validate, from PyPI, installed by scripts/setup.sh) and agree
//! with each other, with the container recipe and with mep's configuration schema.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

/// Every YAML document of every manifest, by kind.
fn manifests() -> Vec<Value> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(deploy().join("kubernetes")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let text = std::fs::read_to_string(&path).unwrap();
            for doc in serde_yaml_ng::Deserializer::from_str(&text) {
                out.push(Value::deserialize(doc).unwrap());
            }
        }
    }
    out
}

fn one<'a>(all: &'a [Value], kind: &str) -> &'a Value {
    let mut found = all.iter().filter(|d| d["kind"] == kind);
    let first = found.next().unwrap_or_else(|| panic!("a {kind}"));
    assert!(found.next().is_none(), "one {kind}");
    first
}

#[test]
fn the_kubernetes_manifests_are_valid_kubernetes() {
    let dir = deploy().join("kubernetes");
    let files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    let out = std::process::Command::new("kubernetes-validate")
        .arg("--strict")
        .args(&files)
        .output()
        .expect("kubernetes-validate (PyPI, installed by scripts/setup.sh) runs");
    let report =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{report}");
    assert!(!report.contains("ERROR"), "{report}");
    for resource in [
        "namespace/mep",
        "configmap/mep-config",
        "secret/mep-secrets",
        "persistentvolume/mep-data",
        "persistentvolumeclaim/mep-data",
        "daemonset/mep",
        "service/mep-mm5",
    ] {
        assert!(
            report.contains(&format!("passed for resource {resource}")),
            "{resource}: {report}"
        );
    }
}

#[test]
fn the_manifests_agree_with_each_other_and_with_the_image() {
    let all = manifests();
    let daemonset = one(&all, "DaemonSet");
    let pod = &daemonset["spec"]["template"]["spec"];
    assert_eq!(
        pod["hostNetwork"], true,
        "DNS and XDP need the node's network"
    );
    let mep = &pod["containers"][0];
    let security = &mep["securityContext"];
    assert_eq!(security["runAsNonRoot"], true);
    assert_eq!(security["capabilities"]["drop"], serde_json::json!(["ALL"]));
    let added: Vec<&str> = security["capabilities"]["add"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert_eq!(added, ["BPF", "PERFMON", "NET_ADMIN", "NET_BIND_SERVICE"]);

    // The image grants the same capabilities to the binary, runs as the DaemonSet's user, and
    // reads the configuration where the ConfigMap is mounted.
    let recipe = std::fs::read_to_string(deploy().join("Containerfile")).unwrap();
    assert!(
        recipe.contains(
            "setcap cap_bpf,cap_perfmon,cap_net_admin,cap_net_bind_service+ep /usr/bin/mep"
        ),
        "file capabilities"
    );
    assert!(recipe.contains("USER 10001:10001"));
    assert_eq!(security["runAsUser"], 10001);
    assert!(recipe.contains(r#"CMD ["serve", "--config", "/etc/mep/mep.toml"]"#));
    assert_eq!(
        mep["args"],
        serde_json::json!(["serve", "--config", "/etc/mep/mep.toml"])
    );
    let mounts = mep["volumeMounts"].as_array().unwrap();
    let mount = |name: &str| {
        mounts
            .iter()
            .find(|m| m["name"] == name)
            .unwrap_or_else(|| panic!("mount {name}"))["mountPath"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(mount("config"), "/etc/mep");
    assert_eq!(mount("data"), "/var/lib/mep");
    assert_eq!(mount("bpffs"), "/sys/fs/bpf");
    let volumes = pod["volumes"].as_array().unwrap();
    let volume = |name: &str| volumes.iter().find(|v| v["name"] == name).unwrap().clone();

    let configmap = one(&all, "ConfigMap");
    assert_eq!(
        volume("config")["configMap"]["name"],
        configmap["metadata"]["name"]
    );
    let claim = one(&all, "PersistentVolumeClaim");
    assert_eq!(
        volume("data")["persistentVolumeClaim"]["claimName"],
        claim["metadata"]["name"]
    );
    assert_eq!(
        claim["spec"]["volumeName"],
        one(&all, "PersistentVolume")["metadata"]["name"]
    );

    let secret = one(&all, "Secret");
    let token_ref = &mep["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "MEP_MM5_TOKEN")
        .expect("the Mm5 token from the Secret")["valueFrom"]["secretKeyRef"];
    assert_eq!(token_ref["name"], secret["metadata"]["name"]);
    let key = token_ref["key"].as_str().unwrap();
    assert!(secret["stringData"][key].as_str().unwrap().len() >= 16);

    // The ServiceMonitor (no schema in kubernetes-validate) scrapes a port the Service names,
    // with the token from the Secret, on a Service that selects the DaemonSet's pods.
    let service = one(&all, "Service");
    let monitor = one(&all, "ServiceMonitor");
    assert_eq!(monitor["apiVersion"], "monitoring.coreos.com/v1");
    let endpoint = &monitor["spec"]["endpoints"][0];
    assert_eq!(endpoint["path"], "/metrics");
    assert!(service["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["name"] == endpoint["port"]));
    assert_eq!(
        endpoint["bearerTokenSecret"]["name"],
        secret["metadata"]["name"]
    );
    assert_eq!(endpoint["bearerTokenSecret"]["key"], key);
    let pod_labels = &daemonset["spec"]["template"]["metadata"]["labels"];
    for (k, v) in service["spec"]["selector"].as_object().unwrap() {
        assert_eq!(&pod_labels[k], v, "the Service selects the pods");
    }
    for (k, v) in monitor["spec"]["selector"]["matchLabels"]
        .as_object()
        .unwrap()
    {
        assert_eq!(
            &service["metadata"]["labels"][k], v,
            "the ServiceMonitor selects the Service"
        );
    }
}

#[test]
fn the_shipped_configuration_is_valid_and_the_configmap_carries_it() {
    let file = deploy().join("mep.toml");
    let shipped = std::fs::read_to_string(&file).unwrap();
    let all = manifests();
    assert_eq!(
        one(&all, "ConfigMap")["data"]["mep.toml"].as_str().unwrap(),
        shipped,
        "the ConfigMap holds deploy/mep.toml"
    );
    let config = mep_api::Config::resolve(mep_api::config::ServeArgs {
        config: Some(file),
        ..Default::default()
    })
    .expect("deploy/mep.toml is a valid configuration");
    assert_eq!(config.dns.listen.port(), 53);
    assert_eq!(config.dns_tls_addr.map(|a| a.port()), Some(853));
    assert_eq!(config.mm5_addr.port(), 8088);
}
