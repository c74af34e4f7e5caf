//! A bearer token on the media gRPC API (`media.grpc_token`): media requires it on the Media
//! service (health and reflection stay open, for probes and tooling), signaling and
//! milliwatt-ctl send it. Empty: no token, as on loopback.

use tonic::metadata::{AsciiMetadataValue, MetadataValue};
use tonic::{Request, Status};

pub use crate::config::Secret;

/// The `authorization` value for `token`; `None` for no token. The configuration check
/// ([`crate::Config::validate`]) has made sure a token is a valid header value.
pub fn bearer(token: &Secret) -> Option<AsciiMetadataValue> {
    if token.is_empty() {
        return None;
    }
    MetadataValue::try_from(format!("Bearer {}", token.expose())).ok()
}

/// Client side: W3C trace context (as [`crate::telemetry::TraceContextInterceptor`]) and the
/// token, when there is one.
#[derive(Clone, Debug, Default)]
pub struct ClientInterceptor {
    authorization: Option<AsciiMetadataValue>,
}

impl ClientInterceptor {
    pub fn new(token: &Secret) -> Self {
        ClientInterceptor {
            authorization: bearer(token),
        }
    }
}

impl tonic::service::Interceptor for ClientInterceptor {
    fn call(&mut self, req: Request<()>) -> Result<Request<()>, Status> {
        let mut req = crate::telemetry::TraceContextInterceptor.call(req)?;
        if let Some(a) = &self.authorization {
            req.metadata_mut().insert("authorization", a.clone());
        }
        Ok(req)
    }
}

/// Server side: without a configured token every request passes; with one, a request must
/// carry `authorization: Bearer <token>` or it gets UNAUTHENTICATED (compared in constant
/// time).
#[derive(Clone, Debug, Default)]
pub struct ServerInterceptor {
    expected: Option<Vec<u8>>,
}

impl ServerInterceptor {
    pub fn new(token: &Secret) -> Self {
        ServerInterceptor {
            expected: bearer(token).map(|v| v.as_bytes().to_vec()),
        }
    }
}

impl tonic::service::Interceptor for ServerInterceptor {
    fn call(&mut self, req: Request<()>) -> Result<Request<()>, Status> {
        let Some(expected) = &self.expected else {
            return Ok(req);
        };
        match req.metadata().get("authorization") {
            Some(got) if constant_time_eq(got.as_bytes(), expected) => Ok(req),
            Some(_) => Err(Status::unauthenticated(
                "the bearer token does not match media.grpc_token",
            )),
            None => Err(Status::unauthenticated(
                "this media service requires a bearer token (media.grpc_token)",
            )),
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::service::Interceptor;

    fn secret(s: &str) -> Secret {
        Secret(s.to_string())
    }

    #[test]
    fn the_server_checks_what_the_client_sends() {
        let mut open = ServerInterceptor::new(&secret(""));
        assert!(open.call(Request::new(())).is_ok(), "no token configured");
        let mut server = ServerInterceptor::new(&secret("s3cret"));
        let e = server.call(Request::new(())).unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unauthenticated);
        assert!(
            e.message().contains("requires a bearer token"),
            "{}",
            e.message()
        );
        let sent = ClientInterceptor::new(&secret("s3cret"))
            .call(Request::new(()))
            .unwrap();
        assert!(server.call(sent).is_ok());
        let wrong = ClientInterceptor::new(&secret("s3cre7"))
            .call(Request::new(()))
            .unwrap();
        let e = server.call(wrong).unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unauthenticated);
        assert!(e.message().contains("does not match"), "{}", e.message());
        let none = ClientInterceptor::new(&secret(""))
            .call(Request::new(()))
            .unwrap();
        assert!(none.metadata().get("authorization").is_none());
    }

    #[test]
    fn a_secret_never_prints() {
        assert_eq!(format!("{:?}", secret("s3cret")), "(set)");
        assert_eq!(format!("{:?}", secret("")), "(empty)");
    }
}
