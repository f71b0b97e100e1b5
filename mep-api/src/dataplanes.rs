//! The data-plane factory: turns the configured choice into a `DataPlane`. A new kind is one module
//! implementing `mep_rules::DataPlane` plus one arm here (and its name in `DataPlaneChoice`).
//! `upf-http` and `xdp` are cargo features of the binary; a kind that was not built in is refused
//! at start with the feature it needs.

use std::sync::Arc;

use mep_dns::DnsConfig;
use mep_rules::none::NoneDataPlane;
use mep_rules::DataPlane;

use crate::config::DataPlaneChoice;

/// Builds the configured data plane; `dns` is the DNS server's configuration, which a data plane
/// answering DNS itself must answer like.
pub fn build(choice: &DataPlaneChoice, dns: &DnsConfig) -> Result<Arc<dyn DataPlane>, String> {
    match choice {
        DataPlaneChoice::None => Ok(Arc::new(NoneDataPlane)),
        DataPlaneChoice::UpfHttp {
            endpoint,
            ca_cert,
            token,
        } => upf_http(endpoint, ca_cert.clone(), token.as_ref()),
        DataPlaneChoice::Xdp {
            interfaces,
            native_targets,
            dns: dns_xdp,
        } => xdp(interfaces, native_targets, dns_xdp.then_some(dns)),
    }
}

#[cfg(feature = "upf-http")]
fn upf_http(
    endpoint: &str,
    ca_cert: Option<std::path::PathBuf>,
    token: Option<&crate::config::Secret>,
) -> Result<Arc<dyn DataPlane>, String> {
    use mep_upf_http::{UpfHttpConfig, UpfHttpDataPlane};
    use secrecy::ExposeSecret;

    let endpoint = url::Url::parse(endpoint)
        .map_err(|e| format!("upf_endpoint {endpoint:?} is not a URL: {e}"))?;
    let mut config = UpfHttpConfig::new(endpoint);
    config.ca_cert_pem = ca_cert;
    config.bearer_token = token.map(|t| t.expose_secret().to_owned());
    Ok(Arc::new(
        UpfHttpDataPlane::new(config).map_err(|e| e.to_string())?,
    ))
}

#[cfg(not(feature = "upf-http"))]
fn upf_http(
    _: &str,
    _: Option<std::path::PathBuf>,
    _: Option<&crate::config::Secret>,
) -> Result<Arc<dyn DataPlane>, String> {
    Err(not_built("upf-http"))
}

#[cfg(feature = "xdp")]
fn xdp(
    interfaces: &[String],
    native_targets: &[String],
    dns: Option<&DnsConfig>,
) -> Result<Arc<dyn DataPlane>, String> {
    use mep_ebpf::{XdpConfig, XdpDataPlane, XdpDnsConfig};

    let dns = dns.map(|d| XdpDnsConfig {
        port: d.listen.port(),
        // The unspecified address: every address of the attached interfaces.
        addresses: if d.listen.ip().is_unspecified() {
            Vec::new()
        } else {
            vec![d.listen.ip()]
        },
        udp_payload: d.udp_payload,
        default_ttl: d.default_ttl,
    });
    Ok(Arc::new(
        XdpDataPlane::new(XdpConfig {
            interfaces: interfaces.to_vec(),
            native_targets: native_targets.to_vec(),
            dns,
            ..XdpConfig::default()
        })
        .map_err(|e| e.to_string())?,
    ))
}

#[cfg(not(feature = "xdp"))]
fn xdp(_: &[String], _: &[String], _: Option<&DnsConfig>) -> Result<Arc<dyn DataPlane>, String> {
    Err(not_built("xdp"))
}

#[cfg(any(not(feature = "xdp"), not(feature = "upf-http")))]
fn not_built(kind: &str) -> String {
    format!(
        "this mep was built without the {kind} data plane: build it with `--features {kind}` \
         (scripts/setup.sh builds every data plane)"
    )
}
