//! Framing of SIP messages on the receive path, through the vendored ezk's own parsing
//! (`ezk_sip_core::fuzzing`, vendor patch 0009): a stream decodes to the same messages however
//! it is cut into reads, and a head's empty line ends the head whatever its line-end style
//! (vendor patch 0010; both were fuzzing finds), and a stream whose message has two different
//! Content-Length values stops there (vendor patch 0013).

use ezk_sip_core::fuzzing::{decode_stream, parse_datagram, Parsed};

fn options(n: u32, eol: &str, first_header: &str, body: &str) -> String {
    let head = [
        "OPTIONS sip:milliwatt@127.0.0.1 SIP/2.0".to_string(),
        first_header.to_string(),
        format!("Via: SIP/2.0/TCP 127.0.0.1:5070;branch=z9hG4bK-f{n}"),
        "Max-Forwards: 70".into(),
        format!("From: <sip:caller@127.0.0.1>;tag=f{n}"),
        "To: <sip:milliwatt@127.0.0.1>".into(),
        format!("Call-ID: framing-{n}@test"),
        format!("CSeq: {n} OPTIONS"),
    ]
    .join(eol);
    format!("{head}{eol}{eol}{body}")
}

/// Call-ID and body of each message, to compare decodings.
fn summary(messages: &[Parsed]) -> Vec<(String, Vec<u8>)> {
    messages
        .iter()
        .map(|m| (m.base_headers.call_id.0.to_string(), m.body.to_vec()))
        .collect()
}

#[test]
fn a_stream_decodes_the_same_however_it_is_cut() {
    let stream = [
        options(1, "\r\n", "Content-Length: 5", "hello"),
        options(2, "\r\n", "l: 3", "abc"),
        options(3, "\n", "Content-Length: 0", ""),
        options(4, "\r\n", "Content-Length : 2", "ok"),
    ]
    .concat();
    let whole = summary(&decode_stream([stream.as_bytes()]));
    assert_eq!(
        whole,
        vec![
            ("framing-1@test".to_string(), b"hello".to_vec()),
            ("framing-2@test".to_string(), b"abc".to_vec()),
            ("framing-3@test".to_string(), Vec::new()),
            ("framing-4@test".to_string(), b"ok".to_vec()),
        ]
    );
    // Every cut into two reads, and reads of every size from 1 to 64 bytes.
    for cut in 1..stream.len() {
        let (a, b) = stream.as_bytes().split_at(cut);
        assert_eq!(summary(&decode_stream([a, b])), whole, "cut at byte {cut}");
    }
    for size in 1..=64 {
        assert_eq!(
            summary(&decode_stream(stream.as_bytes().chunks(size))),
            whole,
            "reads of {size} bytes"
        );
    }
}

#[test]
fn a_mixed_empty_line_ends_the_head() {
    // A bare LF after the last header and a CRLF empty line, and the reverse; the body follows.
    for (what, msg) in [
        (
            "LF CRLF",
            options(1, "\n", "Content-Length: 4", "").replacen("\n\n", "\n\r\n", 1) + "body",
        ),
        (
            "CRLF LF",
            options(1, "\r\n", "Content-Length: 4", "").replacen("\r\n\r\n", "\r\n\n", 1) + "body",
        ),
    ] {
        let datagram = parse_datagram(msg.as_bytes()).unwrap_or_else(|| panic!("{what}: dropped"));
        assert_eq!(&datagram.body[..], b"body", "{what}: datagram body");
        // On a stream, with a request behind it (the parser needs a byte after the empty line).
        let stream = msg.clone() + &options(2, "\r\n", "Content-Length: 0", "");
        assert_eq!(
            summary(&decode_stream([stream.as_bytes()])),
            vec![
                ("framing-1@test".to_string(), b"body".to_vec()),
                ("framing-2@test".to_string(), Vec::new()),
            ],
            "{what}: stream"
        );
    }
}

/// The fuzzing find (`cargo fuzz run sip_request`): a keep-alive, then a request line ended by
/// LF and a CRLF empty line, then a request, read 16 bytes at a time. It panicked the
/// streaming decoder (an `expect` on a second parse of the head). Now the head is framed: its
/// request line has no SIP version, so the decoder fails (the transport closes the
/// connection); with a version it is decoded (and dropped by the receive checks: no headers)
/// and the request behind it follows.
#[test]
fn the_fuzzing_find_is_framed() {
    let request = options(7, "\r\n", "Content-Length: 0", "");
    for (line, want) in [
        ("OPTIONS sip:m", vec![]),
        (
            "OPTIONS sip:m@127.0.0.1 SIP/2.0",
            vec![("framing-7@test".to_string(), Vec::new())],
        ),
    ] {
        let bytes = format!("\r\n\r\n{line}\n\r\n{request}");
        let messages = decode_stream(bytes.as_bytes().chunks(16));
        assert_eq!(summary(&messages), want, "{line}");
    }
}

/// A fuzzing find: no Via value parses (another SIP version), so the Via list is empty, and the
/// receive path indexed its first entry (a panic per message). Now the message is dropped as
/// malformed (vendor patch 0011): no response could be routed without a Via.
#[test]
fn a_message_without_a_usable_via_is_dropped() {
    let good = options(5, "\r\n", "Content-Length: 0", "");
    assert!(parse_datagram(good.as_bytes()).is_some());
    let bad = good.replacen("SIP/2.0/TCP", "SIP/2.5/TCP", 1);
    assert!(parse_datagram(bad.as_bytes()).is_none());
    assert!(decode_stream([bad.as_bytes()]).is_empty());
}

/// RFC 3261 7.5: on a stream, CRLFs before a start line are ignored; a CRLFCRLF there is also
/// a keep-alive ping (RFC 5626 3.5.1), answered, and the message after it is decoded.
#[test]
fn empty_lines_before_the_start_line_are_skipped() {
    let m = options(1, "\r\n", "Content-Length: 0", "");
    for prefix in ["\r\n", "\r\n\r\n", "\r\n\r\n\r\n", "\n\n"] {
        let stream = format!("{prefix}{m}");
        assert_eq!(
            summary(&decode_stream([stream.as_bytes()])),
            summary(&decode_stream([m.as_bytes()])),
            "stream after {prefix:?}"
        );
    }
}

/// RFC 3261 18.3, 20.14 (vendor patch 0013): two different Content-Length values leave a stream
/// message's end unknown, so nothing from there on is decoded (the connection closes); the same
/// value twice frames the message as usual.
#[test]
fn two_different_content_lengths_end_the_stream() {
    let same = options(1, "\r\n", "Content-Length: 5\r\nl: 5", "hello");
    let next = options(2, "\r\n", "Content-Length: 0", "");
    let both = format!("{same}{next}");
    assert_eq!(
        summary(&decode_stream([both.as_bytes()])),
        vec![
            ("framing-1@test".to_string(), b"hello".to_vec()),
            ("framing-2@test".to_string(), vec![])
        ]
    );
    let differ = options(3, "\r\n", "Content-Length: 5\r\nContent-Length: 2", "hello");
    let stream = format!("{next}{differ}{next}");
    assert_eq!(
        summary(&decode_stream([stream.as_bytes()])),
        vec![("framing-2@test".to_string(), vec![])],
        "decoding stops at the message with two Content-Length values"
    );
}

/// A request of another SIP version or Request-URI scheme (vendor patch 0014) is answered by
/// the endpoint (505, 416) and never reaches the layers; the stream goes on after it.
#[test]
fn a_refused_request_does_not_end_the_stream() {
    let next = options(2, "\r\n", "Content-Length: 0", "");
    for line in [
        "OPTIONS sip:milliwatt@127.0.0.1 SIP/7.0",
        "OPTIONS tel:+1-201-555-0123 SIP/2.0",
    ] {
        let refused = options(1, "\r\n", "Content-Length: 5", "hello").replacen(
            "OPTIONS sip:milliwatt@127.0.0.1 SIP/2.0",
            line,
            1,
        );
        let stream = format!("{refused}{next}");
        assert_eq!(
            summary(&decode_stream([stream.as_bytes()])),
            vec![("framing-2@test".to_string(), vec![])],
            "{line}"
        );
        assert!(parse_datagram(refused.as_bytes()).is_none(), "{line}");
    }
}
