//! The SIP request path up to our call decision: bytes as a UDP datagram or a TCP stream
//! (cut into chunks), through ezk's parser and receive checks (vendor patch 0009), into
//! our layer's decisions and the call core (screening, SDP negotiation, the answer).
//!
//! Input: the first byte's low bit picks datagram (0) or stream (1); for a stream the rest of
//! that byte sets the chunk size (1..=128 bytes), so framing across reads is exercised, and
//! the messages must be the same as when the stream arrives in one read (RFC 3261 18.3: the
//! head and Content-Length frame a message, not the reads). A datagram also goes through the
//! early shed's scan (`early::peek`, which answers an INVITE from its bytes under overload): where
//! both it and the stack take a request, they must read the same Call-ID, From-tag, CSeq number
//! and top Via branch (the stateless To-tag and the transaction depend on them), and the answer
//! built from it must be a response the stack parses.
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

fn early_agrees(bytes: &[u8], parsed: Option<&Parsed>) {
    use milliwatt_signaling_core::early::{answer, peek, Peek};
    let head = match peek(bytes) {
        Peek::NewInvite(h) | Peek::Ack(h) => h,
        Peek::Other => return,
    };
    // What the stack refuses (a malformed From, say) may still be refused with the early 503
    // under overload, echoing what it got; what it takes must get an answer it could parse.
    let Some(m) = parsed else { return };
    let reply = answer(
        &head,
        "127.0.0.1:5060".parse().unwrap(),
        503,
        "Service Unavailable",
        "abc",
        Some(5),
        "overload",
    );
    assert!(
        parse_datagram(&reply).is_some(),
        "the early answer does not parse:\n{}",
        String::from_utf8_lossy(&reply)
    );
    let b = &m.base_headers;
    assert_eq!(head.call_id, b.call_id.0.as_str(), "Call-ID");
    assert_eq!(Some(head.from_tag), b.from.tag.as_deref(), "From-tag");
    assert_eq!(head.to_tag, b.to.tag.as_deref(), "To-tag");
    assert_eq!(head.cseq_number, b.cseq.cseq, "CSeq");
    assert_eq!(
        Some(head.branch),
        b.via[0].params.get_val("branch").map(|v| v.as_str()),
        "branch"
    );
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, bytes)) = data.split_first() else {
        return;
    };
    let messages = if mode & 1 == 0 {
        let parsed = parse_datagram(bytes);
        early_agrees(bytes, parsed.as_ref());
        parsed.into_iter().collect()
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
