//! Test PKIs for TLS on the media gRPC API, made by the shipped scripts/grpc-certs.sh (openssl).

use std::path::{Path, PathBuf};
use std::process::Command;

/// A CA and the media and client certificates it signed (the files grpc-certs.sh writes).
pub struct Pki {
    pub dir: PathBuf,
}

impl Pki {
    /// Runs scripts/grpc-certs.sh into `dir` (media's certificate names localhost and 127.0.0.1).
    pub fn generate(dir: &Path) -> Pki {
        Pki::generate_for(dir, &["localhost", "127.0.0.1"])
    }

    /// As [`Pki::generate`], media's certificate carrying `names`.
    pub fn generate_for(dir: &Path, names: &[&str]) -> Pki {
        super::require_tool("openssl", "openssl");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/grpc-certs.sh");
        let out = Command::new("bash")
            .arg(&script)
            .arg(dir)
            .args(names)
            .output()
            .expect("running scripts/grpc-certs.sh");
        assert!(
            out.status.success(),
            "scripts/grpc-certs.sh failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Pki {
            dir: dir.to_path_buf(),
        }
    }

    pub fn file(&self, name: &str) -> String {
        let path = self.dir.join(name);
        assert!(path.exists(), "{} missing", path.display());
        path.to_string_lossy().into_owned()
    }

    /// `[media]` lines: media's identity and the CA clients trust; `mutual`: media requires a
    /// client certificate and clients present one.
    pub fn media_keys(&self, mutual: bool) -> String {
        let mut keys = format!(
            "grpc_tls_cert_file = \"{}\"\ngrpc_tls_key_file = \"{}\"\ngrpc_tls_ca_file = \"{}\"\n",
            self.file("media.pem"),
            self.file("media.key"),
            self.file("ca.pem"),
        );
        if mutual {
            keys += &format!(
                "grpc_tls_client_ca_file = \"{}\"\ngrpc_tls_client_cert_file = \"{}\"\n\
                 grpc_tls_client_key_file = \"{}\"\n",
                self.file("ca.pem"),
                self.file("client.pem"),
                self.file("client.key"),
            );
        }
        keys
    }
}
