//! The data-plane factory: turns the configured choice into a `DataPlane`. A new kind is one module
//! implementing `mep_rules::DataPlane` plus one arm here (and its name in `DataPlaneChoice`).

use std::sync::Arc;

use mep_ebpf::{XdpConfig, XdpDataPlane};
use mep_rules::none::NoneDataPlane;
use mep_rules::DataPlane;
use mep_upf_http::{UpfHttpConfig, UpfHttpDataPlane};
use secrecy::ExposeSecret;

use crate::config::DataPlaneChoice;

/// Builds the configured data plane.
pub fn build(choice: &DataPlaneChoice) -> Result<Arc<dyn DataPlane>, String> {
    match choice {
        DataPlaneChoice::None => Ok(Arc::new(NoneDataPlane)),
        DataPlaneChoice::UpfHttp {
            endpoint,
            ca_cert,
            token,
        } => {
            let endpoint = url::Url::parse(endpoint)
                .map_err(|e| format!("upf_endpoint {endpoint:?} is not a URL: {e}"))?;
            let mut config = UpfHttpConfig::new(endpoint);
            config.ca_cert_pem = ca_cert.clone();
            config.bearer_token = token.as_ref().map(|t| t.expose_secret().to_owned());
            Ok(Arc::new(
                UpfHttpDataPlane::new(config).map_err(|e| e.to_string())?,
            ))
        }
        DataPlaneChoice::Xdp { interfaces } => Ok(Arc::new(
            XdpDataPlane::new(XdpConfig {
                interfaces: interfaces.clone(),
                ..XdpConfig::default()
            })
            .map_err(|e| e.to_string())?,
        )),
    }
}
