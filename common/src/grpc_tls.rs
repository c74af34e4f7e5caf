//! TLS on the media gRPC API (`media.grpc_tls_*`), rustls under tonic.
//!
//! Server (media): `grpc_tls_cert_file` + `grpc_tls_key_file` make the gRPC listener speak TLS
//! only; `grpc_tls_client_ca_file` also requires every client to present a certificate that CA
//! signed (mutual TLS). Clients (signaling, milliwatt-ctl): `grpc_tls_ca_file` is the CA that
//! signed media's certificate and goes with an `https://` `media.endpoint`;
//! `grpc_tls_client_cert_file` + `grpc_tls_client_key_file` are the certificate they present;
//! `grpc_tls_server_name` is the name media's certificate is checked against when it is not the
//! endpoint's host. Empty keys: plain HTTP/2, as on loopback.
//!
//! Files are read and their PEM checked when the process starts, so a wrong path or a key in the
//! certificate's place names the key and the file instead of failing the first call.

use std::net::SocketAddr;
use std::path::PathBuf;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity, ServerTlsConfig};

use crate::config::MediaConfig;

/// A gRPC TLS setting that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("media.{key} = {path:?}: cannot read it: {source}")]
    Read {
        key: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("media.{key} = {path:?}: {reason}")]
    Content {
        key: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("media.endpoint {0:?} is not a gRPC URL: {1}")]
    Endpoint(String, String),
    #[error(
        "media.endpoint {0:?} is https:// but media.grpc_tls_ca_file is empty: set it to the CA \
         that signed media's certificate"
    )]
    HttpsWithoutCa(String),
    #[error(
        "media.grpc_tls_ca_file is set but media.endpoint {0:?} is not https://: a TLS client \
         needs an https:// endpoint"
    )]
    TlsWithoutHttps(String),
    #[error("media.endpoint {0:?}: the TLS settings were refused: {1}")]
    Transport(String, String),
}

fn read(key: &'static str, path: &str) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        key,
        path: path.into(),
        source,
    })
}

fn content(key: &'static str, path: &str, reason: impl Into<String>) -> TlsError {
    TlsError::Content {
        key,
        path: path.into(),
        reason: reason.into(),
    }
}

/// The PEM text of `path`, checked to hold one or more well-formed certificates.
fn certificates(key: &'static str, path: &str) -> Result<Vec<u8>, TlsError> {
    let pem = read(key, path)?;
    let mut count = 0;
    for cert in CertificateDer::pem_slice_iter(&pem) {
        cert.map_err(|e| content(key, path, format!("not PEM certificates: {e}")))?;
        count += 1;
    }
    if count == 0 {
        return Err(content(
            key,
            path,
            "holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
        ));
    }
    Ok(pem)
}

/// The PEM text of `path`, checked to hold a private key (PKCS#8, PKCS#1 or SEC1).
fn private_key(key: &'static str, path: &str) -> Result<Vec<u8>, TlsError> {
    let pem = read(key, path)?;
    PrivateKeyDer::from_pem_slice(&pem)
        .map_err(|e| content(key, path, format!("holds no PEM private key: {e}")))?;
    Ok(pem)
}

/// The media server's TLS, or `None` when `grpc_tls_cert_file` is empty (plain HTTP/2).
/// [`MediaConfig`]'s checks have made sure the keys come in the pairs they need.
pub fn server_config(m: &MediaConfig) -> Result<Option<ServerTlsConfig>, TlsError> {
    if m.grpc_tls_cert_file.is_empty() {
        return Ok(None);
    }
    let cert = certificates("grpc_tls_cert_file", &m.grpc_tls_cert_file)?;
    let key = private_key("grpc_tls_key_file", &m.grpc_tls_key_file)?;
    let mut tls = ServerTlsConfig::new().identity(Identity::from_pem(cert, key));
    if !m.grpc_tls_client_ca_file.is_empty() {
        let ca = certificates("grpc_tls_client_ca_file", &m.grpc_tls_client_ca_file)?;
        tls = tls.client_ca_root(Certificate::from_pem(ca));
    }
    Ok(Some(tls))
}

/// A client's TLS settings (signaling, milliwatt-ctl): none, or the CA it trusts, the
/// certificate it presents and the name it checks.
#[derive(Clone, Debug, Default)]
pub struct ClientTls {
    config: Option<ClientTlsConfig>,
    /// `media.grpc_tls_server_name` was set (else the URL's host is the name checked).
    server_name_set: bool,
}

impl ClientTls {
    /// From `media.grpc_tls_ca_file`, `grpc_tls_client_cert_file`/`_key_file` and
    /// `grpc_tls_server_name`; the files are read and checked now.
    pub fn from_config(m: &MediaConfig) -> Result<ClientTls, TlsError> {
        if m.grpc_tls_ca_file.is_empty() {
            return Ok(ClientTls::default());
        }
        let ca = certificates("grpc_tls_ca_file", &m.grpc_tls_ca_file)?;
        let mut config = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca));
        if !m.grpc_tls_client_cert_file.is_empty() {
            let cert = certificates("grpc_tls_client_cert_file", &m.grpc_tls_client_cert_file)?;
            let key = private_key("grpc_tls_client_key_file", &m.grpc_tls_client_key_file)?;
            config = config.identity(Identity::from_pem(cert, key));
        }
        if !m.grpc_tls_server_name.is_empty() {
            config = config.domain_name(m.grpc_tls_server_name.clone());
        }
        Ok(ClientTls {
            config: Some(config),
            server_name_set: !m.grpc_tls_server_name.is_empty(),
        })
    }

    pub fn is_enabled(&self) -> bool {
        self.config.is_some()
    }

    /// A channel endpoint for `url`: `https://` exactly when TLS is configured (an `http://`
    /// endpoint with a CA set, or `https://` without one, is a mistake worth naming).
    pub fn endpoint(&self, url: &str) -> Result<Endpoint, TlsError> {
        let endpoint = Endpoint::from_shared(url.to_string())
            .map_err(|e| TlsError::Endpoint(url.to_string(), root_cause(&e)))?;
        let https = endpoint.uri().scheme_str() == Some("https");
        match (&self.config, https) {
            (None, false) => Ok(endpoint),
            (None, true) => Err(TlsError::HttpsWithoutCa(url.to_string())),
            (Some(_), false) => Err(TlsError::TlsWithoutHttps(url.to_string())),
            (Some(config), true) => endpoint
                .tls_config(config.clone())
                .map_err(|e| TlsError::Transport(url.to_string(), root_cause(&e))),
        }
    }
    /// As [`ClientTls::endpoint`], but connecting to `addr` (one address `url`'s host resolved
    /// to): the certificate is still checked against the URL's host name (or
    /// `media.grpc_tls_server_name`), not against the address.
    pub fn endpoint_at(&self, url: &str, addr: SocketAddr) -> Result<Endpoint, TlsError> {
        let uri: http::Uri = url.parse().map_err(|e: http::uri::InvalidUri| {
            TlsError::Endpoint(url.to_string(), e.to_string())
        })?;
        let (Some(scheme), Some(host)) = (uri.scheme_str(), uri.host()) else {
            return Err(TlsError::Endpoint(
                url.to_string(),
                "no scheme or no host".into(),
            ));
        };
        let path = uri.path_and_query().map_or("", |p| p.as_str());
        let at = format!("{scheme}://{addr}{}", if path == "/" { "" } else { path });
        let endpoint = Endpoint::from_shared(at.clone())
            .map_err(|e| TlsError::Endpoint(at.clone(), root_cause(&e)))?;
        match (&self.config, scheme == "https") {
            (None, false) => Ok(endpoint),
            (None, true) => Err(TlsError::HttpsWithoutCa(url.to_string())),
            (Some(_), false) => Err(TlsError::TlsWithoutHttps(url.to_string())),
            (Some(config), true) => {
                let mut config = config.clone();
                if !self.server_name_set {
                    config = config.domain_name(host.trim_matches(['[', ']']).to_string());
                }
                endpoint
                    .tls_config(config)
                    .map_err(|e| TlsError::Transport(url.to_string(), root_cause(&e)))
            }
        }
    }
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut e = e;
    while let Some(inner) = e.source() {
        e = inner;
    }
    e.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn media(set: &[(&str, &str)]) -> MediaConfig {
        let overrides: Vec<String> = set.iter().map(|(k, v)| format!("media.{k}={v}")).collect();
        crate::Config::load_with_env(None, &overrides, std::iter::empty())
            .expect("valid configuration")
            .media
    }

    fn temp(name: &str, text: &str) -> String {
        let dir = std::env::temp_dir().join(format!("milliwatt-grpc-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path.to_string_lossy().into_owned()
    }

    #[test]
    fn without_tls_keys_endpoints_are_plain_and_https_is_refused() {
        let m = media(&[]);
        assert!(server_config(&m).unwrap().is_none());
        let tls = ClientTls::from_config(&m).unwrap();
        assert!(!tls.is_enabled());
        assert!(tls.endpoint("http://127.0.0.1:50051").is_ok());
        let at: SocketAddr = "10.0.0.7:50051".parse().unwrap();
        let e = tls.endpoint_at("http://media:50051", at).unwrap();
        assert_eq!(e.uri().to_string(), "http://10.0.0.7:50051/");
        let v6: SocketAddr = "[fd00::7]:50051".parse().unwrap();
        let e = tls.endpoint_at("http://media:50051", v6).unwrap();
        assert_eq!(e.uri().to_string(), "http://[fd00::7]:50051/");
        assert!(matches!(
            tls.endpoint_at("https://media:50051", at),
            Err(TlsError::HttpsWithoutCa(_))
        ));
        let e = tls.endpoint("https://media:50051").unwrap_err();
        assert!(matches!(e, TlsError::HttpsWithoutCa(_)), "{e}");
        assert!(e.to_string().contains("media.grpc_tls_ca_file"), "{e}");
        let e = tls.endpoint("not a url").unwrap_err();
        assert!(matches!(e, TlsError::Endpoint(..)), "{e}");
    }

    #[test]
    fn a_missing_file_names_the_key_and_the_path() {
        let m = media(&[("grpc_tls_ca_file", "/nonexistent/ca.pem")]);
        let e = ClientTls::from_config(&m).unwrap_err();
        let text = e.to_string();
        assert!(matches!(e, TlsError::Read { .. }), "{text}");
        assert!(
            text.contains("media.grpc_tls_ca_file") && text.contains("/nonexistent/ca.pem"),
            "{text}"
        );
    }

    #[test]
    fn a_file_without_pem_blocks_is_refused_with_what_was_expected() {
        let junk = temp("junk.pem", "this is not PEM\n");
        let m = media(&[("grpc_tls_cert_file", &junk), ("grpc_tls_key_file", &junk)]);
        let e = server_config(&m).unwrap_err();
        let text = e.to_string();
        assert!(text.contains("media.grpc_tls_cert_file"), "{text}");
        assert!(text.contains("no PEM certificate"), "{text}");

        // A certificate where the key belongs.
        let cert = temp(
            "cert.pem",
            "-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n",
        );
        let m = media(&[("grpc_tls_cert_file", &cert), ("grpc_tls_key_file", &cert)]);
        let e = server_config(&m).unwrap_err();
        let text = e.to_string();
        assert!(text.contains("media.grpc_tls_key_file"), "{text}");
        assert!(text.contains("no PEM private key"), "{text}");
    }

    #[test]
    fn with_a_ca_the_endpoint_must_be_https() {
        let cert = temp(
            "ca.pem",
            "-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n",
        );
        let m = media(&[("grpc_tls_ca_file", &cert)]);
        let tls = ClientTls::from_config(&m).unwrap();
        assert!(tls.is_enabled());
        let e = tls.endpoint("http://127.0.0.1:50051").unwrap_err();
        assert!(matches!(e, TlsError::TlsWithoutHttps(_)), "{e}");
    }
}
