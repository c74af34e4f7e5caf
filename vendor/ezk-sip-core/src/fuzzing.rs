//! PATCH(milliwatt): the receive path's parsing, public for fuzzing (cargo-fuzz targets live
//! outside the crate and can only call public items). Nothing here is used by the endpoint:
//! both functions call exactly what the UDP and streaming (TCP/TLS) transports and
//! `Endpoint::receive` call, up to the point where a message is handed to the transaction
//! layer and the layers.

use crate::BaseHeaders;
use crate::transaction::TsxKey;
use crate::transport::parse::{CompleteItem, parse_complete};
use crate::transport::streaming::decode::{Item, StreamingDecoder};
use bytes::{Bytes, BytesMut};
use sip_types::Headers;
use sip_types::msg::MessageLine;
use tokio_util::codec::Decoder;

/// A message as the layers would receive it (without transport information).
#[derive(Debug)]
pub struct Parsed {
    pub line: MessageLine,
    pub base_headers: BaseHeaders,
    pub headers: Headers,
    pub body: Bytes,
}

/// What the receive path does with a message once framed: the base headers every layer
/// relies on and the transaction key; `None` where the message does not reach the layers
/// (PATCH(milliwatt) 0012: dropped, or a request with a bad From, To, Call-ID or CSeq that the
/// endpoint answers 400 itself).
fn accept(line: MessageLine, headers: Headers, body: Bytes) -> Option<Parsed> {
    let base_headers = BaseHeaders::extract_from(&headers).ok()?;
    TsxKey::from_message_parts(&line, &base_headers).ok()?;
    Some(Parsed {
        line,
        base_headers,
        headers,
        body,
    })
}

/// One UDP datagram, as the UDP transport parses it. `None`: dropped (malformed, a
/// keep-alive or STUN).
pub fn parse_datagram(bytes: &[u8]) -> Option<Parsed> {
    match parse_complete(bytes).ok()? {
        CompleteItem::Sip {
            line,
            headers,
            body,
            ..
        } => accept(line, headers, body),
        _ => None,
    }
}

/// A stream's bytes (TCP or TLS after decryption), as the streaming transports decode them,
/// fed in `chunks` as they might arrive; every message the layers would receive, until the
/// decoder fails (the transport closes the connection then) or needs more input.
pub fn decode_stream<'a>(chunks: impl IntoIterator<Item = &'a [u8]>) -> Vec<Parsed> {
    let mut decoder = StreamingDecoder::default();
    let mut buffer = BytesMut::new();
    let mut out = Vec::new();
    for chunk in chunks {
        buffer.extend_from_slice(chunk);
        loop {
            match decoder.decode(&mut buffer) {
                Ok(Some(Item::DecodedMessage(m))) => {
                    out.extend(accept(m.line, m.headers, m.body));
                }
                // PATCH(milliwatt) 0014: a refused request (505, 416) never reaches the layers
                Ok(Some(
                    Item::KeepAliveRequest | Item::KeepAliveResponse | Item::Refused(_),
                )) => {}
                Ok(None) => break,
                Err(_) => return out,
            }
        }
    }
    out
}
