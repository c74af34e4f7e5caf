//! Core part of the EZK SIP Stack
//!
//! Implementing transport and transaction abstractions it can be used to
//! build any kind of stateful SIP Application
//!
//! [__Examples__](https://github.com/kbalt/ezk/tree/main/examples) can be found here

use bytes::Bytes;
use downcast_rs::{Downcast, impl_downcast};
use sip_types::header::HeaderError;
use sip_types::header::typed::{CSeq, CallID, FromTo, Via};
use sip_types::msg::{RequestLine, StatusLine};
use sip_types::print::AppendCtx;
use sip_types::uri::SipUri;
use sip_types::{Headers, Method, Name};
use std::fmt;
use transaction::{TsxKey, TsxRegistration};
use transport::MessageTpInfo;

#[macro_use]
mod error;
mod endpoint;
/// PATCH(milliwatt): the receive path's parsing, for fuzzing.
#[doc(hidden)]
pub mod fuzzing;
mod may_take;
pub mod transaction;
pub mod transport;

/// PATCH(milliwatt): incoming messages dropped because they could not be parsed or lacked the
/// headers every SIP message needs (Via, From, To, Call-ID, CSeq): nothing could answer them.
pub static DROPPED_MALFORMED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn count_dropped_malformed() {
    DROPPED_MALFORMED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

/// PATCH(milliwatt): incoming requests answered 400 by the endpoint itself because a header
/// every request needs (From, To, Call-ID, CSeq) was missing or malformed while the Via could
/// route the answer (RFC 3261 8.1.1, 21.4.1). They never reach the layers.
pub static REJECTED_BAD_BASE_HEADERS: std::sync::atomic::AtomicU64 =
    std::sync::atomic::AtomicU64::new(0);

/// PATCH(milliwatt): incoming requests answered 505 (a SIP version other than 2.0) by the
/// endpoint itself; they never reach the layers.
pub static REFUSED_SIP_VERSION: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// PATCH(milliwatt): incoming requests answered 416 (a Request-URI scheme other than sip and
/// sips) by the endpoint itself; they never reach the layers.
pub static REFUSED_URI_SCHEME: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// PATCH(milliwatt): incoming requests answered 513 (larger than
/// `MessageLimits::max_message_bytes`) by the endpoint itself.
pub static REFUSED_TOO_LARGE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// PATCH(milliwatt): stream connections closed by `MessageLimits`: at accept beyond
/// `max_connections`, or for a message not complete within `message_timeout`.
pub static CLOSED_CONNECTIONS_LIMIT: std::sync::atomic::AtomicU64 =
    std::sync::atomic::AtomicU64::new(0);
pub static CLOSED_CONNECTIONS_SLOW: std::sync::atomic::AtomicU64 =
    std::sync::atomic::AtomicU64::new(0);

pub use endpoint::Endpoint;
pub use endpoint::EndpointBuilder;
pub use endpoint::MessageLimits; // PATCH(milliwatt)
pub use endpoint::{DatagramScreen, Screened}; // PATCH(milliwatt)
pub use error::{Error, Result, StunError};
pub use may_take::MayTake;

/// Basic Response
#[derive(Debug, Clone)]
pub struct Response {
    pub line: StatusLine,
    pub headers: Headers,
    pub body: Bytes,
}

impl fmt::Display for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.line.default_print_ctx().fmt(f)
    }
}

#[derive(Debug, Clone)]
/// Basic request
pub struct Request {
    pub line: RequestLine,
    pub headers: Headers,
    pub body: Bytes,
}

impl fmt::Display for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.line.default_print_ctx().fmt(f)
    }
}

impl Request {
    /// Create an empty request
    pub fn new(method: Method, uri: SipUri) -> Self {
        Self {
            line: RequestLine { method, uri },
            headers: Default::default(),
            body: Bytes::new(),
        }
    }
}

/// Parsed SIP headers that are part of every message, part of [`IncomingRequest`].
#[derive(Debug)]
pub struct BaseHeaders {
    /// All via headers, must be guaranteed to not be empty
    pub via: Vec<Via>,
    pub from: FromTo,
    pub to: FromTo,
    pub call_id: CallID,
    pub cseq: CSeq,
}

impl BaseHeaders {
    fn extract_from(headers: &Headers) -> Result<Self, HeaderError> {
        Self::extract_naming(headers).map_err(|(_, e)| e)
    }

    /// PATCH(milliwatt): as `extract_from`, naming the header that is missing or malformed
    /// (the endpoint's 400 says which, RFC 3261 21.4.1).
    fn extract_naming(headers: &Headers) -> Result<Self, (Name, HeaderError)> {
        // PATCH(milliwatt): `Vec<Via>` decodes to an empty list when no Via value parses (a
        // `SIP/2.5/UDP` one, say), and the receive path indexes `via[0]`: it panicked once per
        // such message. A message without a usable Via is malformed (RFC 3261 8.1.1.7) and a
        // response to it could not be routed (18.2.2): it is dropped and counted.
        let via: Vec<Via> = headers.get_named().map_err(|e| (Name::VIA, e))?;
        if via.is_empty() {
            return Err((
                Name::VIA,
                HeaderError::malformed_adhoc(Name::VIA, "no Via value parses"),
            ));
        }
        Ok(BaseHeaders {
            via,
            from: headers.get(Name::FROM).map_err(|e| (Name::FROM, e))?,
            to: headers.get(Name::TO).map_err(|e| (Name::TO, e))?,
            call_id: headers.get_named().map_err(|e| (Name::CALL_ID, e))?,
            cseq: headers.get_named().map_err(|e| (Name::CSEQ, e))?,
        })
    }
}

/// Request received by the endpoint and passed to every layer
#[derive(Debug)]
pub struct IncomingRequest {
    pub tp_info: MessageTpInfo,
    pub tsx_key: TsxKey,
    tsx: Option<TsxRegistration>,

    pub line: RequestLine,
    pub base_headers: BaseHeaders,
    pub headers: Headers,
    pub body: Bytes,
}

impl fmt::Display for IncomingRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.line.default_print_ctx().fmt(f)
    }
}

impl IncomingRequest {
    #[track_caller]
    fn take_tsx_registration(&mut self) -> TsxRegistration {
        let Some(tsx) = self.tsx.take() else {
            panic!(
                "Tried to create transaction for {:?}, which is an already handled message or isn't a transaction creating request",
                self.tsx_key
            );
        };

        tsx
    }

    /// Make a clone of the request data, allowing access to the requests data if the `IncomingRequest`
    pub fn clone_request(&self) -> Request {
        Request {
            line: self.line.clone(),
            headers: self.headers.clone(),
            body: self.body.clone(),
        }
    }
}

/// Layers are extensions to the endpoint.
///
/// They can be added to the endpoint in the building stage bay calling
/// [`EndpointBuilder::add_layer`], and later be accessed via [`Endpoint::layer`]
#[async_trait::async_trait]
pub trait Layer: Downcast + Send + Sync + 'static {
    /// Return a descriptive and unique name of the layer
    fn name(&self) -> &'static str;

    /// When building the endpoint each layer may make modifications to the [`EndpointBuilder`]
    fn init(&mut self, _endpoint: &mut EndpointBuilder) {}

    /// Whenever the endpoint receives a request which is outside any transaction,
    /// it will call this function on each layer (in insertion order).
    ///
    /// The message is wrapped inside a [`MayTake`] which allows the layer to inspect
    /// and modify the request or take ownership of it. If it takes the request the
    /// endpoint will no longer own the request and thus will not pass the request to
    /// the remaining layers.
    async fn receive(&self, endpoint: &Endpoint, request: MayTake<'_, IncomingRequest>);
}

impl_downcast!(Layer);
