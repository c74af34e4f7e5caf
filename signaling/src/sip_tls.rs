//! SIP over TLS: the certificate and key from `sip.tls_certificate_file` and `sip.tls_key_file`
//! (PEM), checked at start and reloaded whenever either file changes, without restarting the
//! listener: new handshakes take the new pair, a bad new pair is logged and the old one kept.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::crypto::CryptoProvider;
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert};
use tokio_rustls::rustls::sign::CertifiedKey;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;

/// rustls with *ring*, the provider tonic's TLS already brings into the tree (aws-lc-rs, the
/// other, needs a C and CMake build). rustls 0.23.48 deprecates ring's provider for lacking
/// post-quantum key exchange; SIP peers (phones, SBCs) do not offer that yet.
fn default_provider() -> CryptoProvider {
    #[allow(deprecated)]
    tokio_rustls::rustls::crypto::ring::default_provider()
}

/// How often the files are looked at for a change.
pub const RELOAD_CHECK: Duration = Duration::from_secs(2);

/// A certificate or key that cannot be used, naming the configuration key.
#[derive(Debug, thiserror::Error)]
#[error("{key}: {path}: {reason}")]
pub struct TlsFileError {
    pub key: &'static str,
    pub path: String,
    pub reason: String,
}

fn load(cert_path: &Path, key_path: &Path) -> Result<CertifiedKey, TlsFileError> {
    let err = |key, path: &Path, reason: String| TlsFileError {
        key,
        path: path.display().to_string(),
        reason,
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_path)
        .map_err(|e| err("sip.tls_certificate_file", cert_path, e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| err("sip.tls_certificate_file", cert_path, e.to_string()))?;
    if certs.is_empty() {
        return Err(err(
            "sip.tls_certificate_file",
            cert_path,
            "holds no PEM certificate".into(),
        ));
    }
    let key = PrivateKeyDer::from_pem_file(key_path)
        .map_err(|e| err("sip.tls_key_file", key_path, e.to_string()))?;
    CertifiedKey::from_der(certs, key, &default_provider()).map_err(|e| {
        err(
            "sip.tls_key_file",
            key_path,
            format!("does not go with the certificate: {e}"),
        )
    })
}

/// The pair in use, swapped on reload.
#[derive(Debug)]
struct Current(RwLock<Arc<CertifiedKey>>);

impl ResolvesServerCert for Current {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.read().unwrap_or_else(|e| e.into_inner()).clone())
    }
}

/// The TLS acceptor for ezk's listener, and the task that reloads the pair.
pub struct SipTls {
    pub acceptor: TlsAcceptor,
    pub reloader: tokio::task::JoinHandle<()>,
}

fn mtime(p: &Path) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

/// Loads the pair (an error names the key) and starts watching the files.
pub fn start(cert_file: &str, key_file: &str) -> Result<SipTls, TlsFileError> {
    let (cert_path, key_path) = (PathBuf::from(cert_file), PathBuf::from(key_file));
    let current = Arc::new(Current(RwLock::new(Arc::new(load(&cert_path, &key_path)?))));
    let config = ServerConfig::builder_with_provider(Arc::new(default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsFileError {
            key: "sip.tls_certificate_file",
            path: cert_file.into(),
            reason: e.to_string(),
        })?
        .with_no_client_auth()
        .with_cert_resolver(current.clone());
    let reloader = tokio::spawn(async move {
        let mut seen = (mtime(&cert_path), mtime(&key_path));
        loop {
            tokio::time::sleep(RELOAD_CHECK).await;
            let now = (mtime(&cert_path), mtime(&key_path));
            if now == seen {
                continue;
            }
            seen = now;
            match load(&cert_path, &key_path) {
                Ok(pair) => {
                    *current.0.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(pair);
                    tracing::info!(
                        certificate = %cert_path.display(),
                        "SIP TLS certificate reloaded: new connections use it"
                    );
                }
                Err(e) => tracing::warn!(
                    error = %e,
                    "SIP TLS certificate or key changed but cannot be used: the previous pair stays"
                ),
            }
        }
    });
    Ok(SipTls {
        acceptor: TlsAcceptor::from(Arc::new(config)),
        reloader,
    })
}
