//! The SIP request path up to our call decision: bytes as a UDP datagram or a TCP stream
//! (cut into chunks), through ezk's parser and receive checks (vendor patch 0009), into
//! our layer's decisions and the call core (screening, SDP negotiation, the answer).
//!
//! Input: the first byte's low bit picks datagram (0) or stream (1); for a stream the rest of
//! that byte sets the chunk size (1..=128 bytes), so framing across reads is exercised, and
//! the messages must be the same as when the stream arrives in one read (RFC 3261 18.3: the
//! head and Content-Length frame a message, not the reads).
#![no_main]

use ezk_sip_core::fuzzing::{decode_stream, parse_datagram, Parsed};
use libfuzzer_sys::fuzz_target;

/// Call-ID, CSeq and body of each message: what framing decides.
fn framing(messages: &[Parsed]) -> Vec<(String, u32, Vec<u8>)> {
    messages
        .iter()
        .map(|m| {
            (
                m.base_headers.call_id.0.to_string(),
                m.base_headers.cseq.cseq,
                m.body.to_vec(),
            )
        })
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, bytes)) = data.split_first() else {
        return;
    };
    let messages = if mode & 1 == 0 {
        parse_datagram(bytes).into_iter().collect()
    } else {
        let chunked = decode_stream(bytes.chunks(usize::from(mode >> 1) + 1));
        let whole = decode_stream([bytes]);
        assert_eq!(
            framing(&chunked),
            framing(&whole),
            "the messages depend on how the stream was cut into reads"
        );
        chunked
    };
    for (i, m) in messages.iter().enumerate() {
        milliwatt_fuzz::decide(m, (i == 0).then_some(bytes));
    }
});
