//! TLS for the listeners: rustls with the ring provider, TLS 1.3 and 1.2 with AEAD suites only,
//! ALPN `h2` and `http/1.1`, and optional client-certificate verification (mutual TLS on Mm5).
//!
//! The server certificate comes from `tls_cert`/`tls_key`. When neither is configured, the first
//! start creates a private CA and a server certificate signed by it in `<data_dir>/tls/`
//! (`ca.pem` is what clients trust: `curl --cacert <data_dir>/tls/ca.pem`). The server certificate
//! is re-issued by the same CA whenever the set of names it must cover changes.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::crypto::ring as provider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use tokio_rustls::TlsAcceptor;

use crate::private_files::replace_private_file;

/// Where certificates come from.
#[derive(Debug, Clone, Default)]
pub struct TlsConfig {
    /// PEM certificate chain of the server (with `key`).
    pub cert: Option<PathBuf>,
    /// PEM private key of the server (with `cert`).
    pub key: Option<PathBuf>,
    /// PEM CA certificates that Mm5 clients must present a certificate from (mutual TLS).
    pub mm5_client_ca: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {detail}")]
    Pem { path: PathBuf, detail: String },
    #[error("tls_cert and tls_key must be given together")]
    HalfConfigured,
    #[error("cannot create the self-signed certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("mm5_client_ca: {0}")]
    ClientCa(String),
}

/// A server certificate chain and its key.
#[derive(Debug)]
pub struct Identity {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

impl Clone for Identity {
    fn clone(&self) -> Self {
        Self {
            chain: self.chain.clone(),
            key: self.key.clone_key(),
        }
    }
}

/// The configured identity, or the generated one covering `names` (DNS names or IP addresses).
pub fn identity(
    config: &TlsConfig,
    data_dir: &Path,
    names: &[String],
) -> Result<Identity, TlsError> {
    match (&config.cert, &config.key) {
        (Some(cert), Some(key)) => Ok(Identity {
            chain: read_certs(cert)?,
            key: PrivateKeyDer::from_pem_file(key).map_err(|e| pem_error(key, e))?,
        }),
        (None, None) => self_signed(&data_dir.join("tls"), names),
        _ => Err(TlsError::HalfConfigured),
    }
}

/// An acceptor for `identity`; with `client_ca`, clients must present a certificate it issued.
pub fn acceptor(identity: &Identity, client_ca: Option<&Path>) -> Result<TlsAcceptor, TlsError> {
    let provider = Arc::new(modern_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let mut roots = RootCertStore::empty();
            for cert in read_certs(path)? {
                roots
                    .add(cert)
                    .map_err(|e| TlsError::ClientCa(e.to_string()))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| TlsError::ClientCa(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_single_cert(identity.chain.clone(), identity.key.clone_key())?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// The ring provider restricted to forward-secret AEAD suites.
fn modern_provider() -> rustls::crypto::CryptoProvider {
    use provider::cipher_suite::*;
    rustls::crypto::CryptoProvider {
        cipher_suites: vec![
            TLS13_AES_256_GCM_SHA384,
            TLS13_AES_128_GCM_SHA256,
            TLS13_CHACHA20_POLY1305_SHA256,
            TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
            TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
            TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
            TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
            TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
            TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
        ],
        ..provider::default_provider()
    }
}

pub(crate) fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem_error(path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(path, e))?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            path: path.to_owned(),
            detail: "no certificate in the file".into(),
        });
    }
    Ok(certs)
}

fn pem_error(path: &Path, e: rustls::pki_types::pem::Error) -> TlsError {
    match e {
        rustls::pki_types::pem::Error::Io(source) => TlsError::Io {
            path: path.to_owned(),
            source,
        },
        other => TlsError::Pem {
            path: path.to_owned(),
            detail: other.to_string(),
        },
    }
}

const CA_NAME: &str = "mep local CA";

/// The CA's parameters; rebuilt identically to sign with a stored CA key.
fn ca_params(now: SystemTime) -> Result<CertificateParams, rcgen::Error> {
    let mut params = CertificateParams::new(Vec::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, CA_NAME);
    dn.push(DnType::OrganizationName, "mep");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    set_validity(&mut params, now, 10 * 365);
    Ok(params)
}

fn set_validity(params: &mut CertificateParams, now: SystemTime, days: u64) {
    let ymd = |t: SystemTime| {
        let days = t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() / 86_400;
        let (y, m, d) = civil_from_days(days as i64);
        rcgen::date_time_ymd(y as i32, m as u8, d as u8)
    };
    params.not_before = ymd(now - Duration::from_secs(86_400));
    params.not_after = ymd(now + Duration::from_secs(days * 86_400));
}

/// Creates (or reuses) the CA and the server certificate in `dir`.
fn self_signed(dir: &Path, names: &[String]) -> Result<Identity, TlsError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| TlsError::Io { path, source }
    };
    // Not private: clients read ca.pem from here; the keys in it are 0600 files.
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let now = SystemTime::now();
    let (ca_pem, ca_key_pem) = (dir.join("ca.pem"), dir.join("ca.key"));
    let ca_key = match std::fs::read_to_string(&ca_key_pem) {
        Ok(pem) if ca_pem.exists() => KeyPair::from_pem(&pem)?,
        _ => {
            let key = KeyPair::generate()?;
            let cert = ca_params(now)?.self_signed(&key)?;
            replace_private_file(&ca_key_pem, key.serialize_pem().as_bytes())
                .map_err(io(&ca_key_pem))?;
            replace_private_file(&ca_pem, cert.pem().as_bytes()).map_err(io(&ca_pem))?;
            set_mode(&ca_pem, 0o644);
            let _ = std::fs::remove_file(dir.join("server.names"));
            tracing::info!(ca = %ca_pem.display(), "created a local CA for Mp1's certificate");
            key
        }
    };
    let (server_pem, server_key_pem, names_file) = (
        dir.join("server.pem"),
        dir.join("server.key"),
        dir.join("server.names"),
    );
    let mut wanted: Vec<String> = names.to_vec();
    wanted.sort();
    wanted.dedup();
    let recorded = std::fs::read_to_string(&names_file).unwrap_or_default();
    let covered = recorded.lines().map(str::to_owned).collect::<Vec<_>>() == wanted;
    if !(covered && server_pem.exists() && server_key_pem.exists()) {
        let issuer = ca_params(now)?.self_signed(&ca_key)?;
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(wanted.clone())?;
        let mut dn = DistinguishedName::new();
        dn.push(
            DnType::CommonName,
            wanted.first().map_or("mep", String::as_str),
        );
        params.distinguished_name = dn;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        set_validity(&mut params, now, 2 * 365);
        let cert = params.signed_by(&key, &issuer, &ca_key)?;
        replace_private_file(&server_key_pem, key.serialize_pem().as_bytes())
            .map_err(io(&server_key_pem))?;
        let ca_text = std::fs::read_to_string(&ca_pem).map_err(io(&ca_pem))?;
        replace_private_file(&server_pem, format!("{}{ca_text}", cert.pem()).as_bytes())
            .map_err(io(&server_pem))?;
        set_mode(&server_pem, 0o644);
        replace_private_file(&names_file, wanted.join("\n").as_bytes()).map_err(io(&names_file))?;
        tracing::info!(
            cert = %server_pem.display(), names = ?wanted,
            "issued Mp1's server certificate from the local CA"
        );
    }
    tracing::info!(
        ca = %ca_pem.display(),
        "Mp1 uses a certificate from mep's local CA; clients trust it with: curl --cacert {}",
        ca_pem.display()
    );
    identity(
        &TlsConfig {
            cert: Some(server_pem),
            key: Some(server_key_pem),
            mm5_client_ca: None,
        },
        dir,
        &[],
    )
}

fn set_mode(path: &Path, mode: u32) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode));
    }
    #[cfg(not(unix))]
    let _ = (path, mode);
}

/// The names a generated certificate covers: loopback, this host's name, and the host of the
/// configured API root.
pub fn default_names(api_root: Option<&str>, bind: std::net::SocketAddr) -> Vec<String> {
    let mut names = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    if let Some(host) = host_name() {
        names.push(host);
    }
    if !bind.ip().is_unspecified() {
        names.push(bind.ip().to_string());
    }
    if let Some(host) = api_root
        .and_then(|r| url::Url::parse(r).ok())
        .and_then(|u| u.host().map(|h| h.to_string()))
    {
        names.push(
            host.trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
        );
    }
    names
}

fn host_name() -> Option<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())?;
    let name = name.trim().to_ascii_lowercase();
    let valid = !name.is_empty()
        && name.len() <= 253
        && name
            .split('.')
            .all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
    valid.then_some(name)
}

/// Year, month, day of a day count since 1970-01-01 (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
    }

    #[test]
    fn generated_identity_is_reused_and_reissued_for_new_names() {
        let dir = tempfile::tempdir().unwrap();
        let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
        let first = identity(&TlsConfig::default(), dir.path(), &names).unwrap();
        assert_eq!(first.chain.len(), 2, "server certificate and CA");
        let ca = std::fs::read(dir.path().join("tls/ca.pem")).unwrap();
        let again = identity(&TlsConfig::default(), dir.path(), &names).unwrap();
        assert_eq!(again.chain[0], first.chain[0]);
        let more = [names.clone(), vec!["mep.example".to_owned()]].concat();
        let reissued = identity(&TlsConfig::default(), dir.path(), &more).unwrap();
        assert_ne!(reissued.chain[0], first.chain[0]);
        assert_eq!(std::fs::read(dir.path().join("tls/ca.pem")).unwrap(), ca);
        assert!(acceptor(&reissued, None).is_ok());
        assert!(matches!(
            identity(
                &TlsConfig {
                    cert: Some(dir.path().join("x")),
                    ..Default::default()
                },
                dir.path(),
                &names
            ),
            Err(TlsError::HalfConfigured)
        ));
    }
}
