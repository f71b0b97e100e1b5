//! mep's control plane: the Mp1 API for MEC applications (ETSI GS MEC 011), the Mm5 listener for the
//! platform manager and operators, the embedded store, and notification delivery.
//!
//! [`app::Mep`] starts a complete process; the modules below are its parts.

// Input and I/O paths never unwrap; tests may.
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

pub mod app;
pub mod apps;
pub mod auth;
pub mod cli;
pub mod clock;
pub mod config;
pub mod dataplanes;
pub mod directory;
pub mod dns_https;
pub mod error_mapping;
pub mod etag;
pub mod http;
pub mod links;
pub mod metrics;
pub mod mm5;
pub mod model;
pub mod mp1;
pub mod notify;
pub mod openapi;
pub mod private_files;
pub mod problem;
pub mod readiness;
pub mod registry;
pub mod store;
pub mod tls;

pub use app::Mep;
pub use config::Config;
