//! Torture messages, written here by category in the manner of RFC 4475: every request that
//! RFC 3261's grammar accepts gets a final answer that is not a 5xx, every malformed one a 4xx
//! with a reason, or (when no response could be routed, or a stream can no longer be framed) no
//! answer and a count in `malformed_dropped`. Each message goes over UDP and over TCP (a fresh
//! connection each), with the answer expected on each. A 200 to an INVITE is ACKed and the call
//! ended with BYE. The server runs in a loopback-only network namespace (the brief: torture
//! messages carry SDP the server would obey), and must answer OPTIONS after every message.
//!
//! Every 200 must echo the request's From and To URIs: a display name with quoted-pairs or none,
//! and a `tel:` or `urn:` From/To (vendor patches 0020, 0021) included.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::sip::{Msg, RawSip};
use common::*;

/// What a message must get.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Want {
    /// This final status code.
    Final(u16),
    /// No answer within a second, and one more in `malformed_dropped`.
    Dropped,
}
use Want::*;

struct Case {
    category: &'static str,
    what: &'static str,
    /// The message, with `$T` (transport: UDP or TCP), `$L` (our address), `$S` (the server's),
    /// `$N` (unique per send, for Call-ID and branch) and `$LEN` (the body's length).
    text: String,
    udp: Want,
    /// `None`: datagram framing only (on a stream the same bytes are other messages).
    tcp: Option<Want>,
}

fn case(category: &'static str, what: &'static str, text: String, want: Want) -> Case {
    Case {
        category,
        what,
        text,
        udp: want,
        tcp: Some(want),
    }
}

const SDP: &str = "v=0\r\no=t 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
                   m=audio 9 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";

/// The usual head lines of a request, each a separate element so a case can change one.
fn head(method: &str) -> Vec<String> {
    vec![
        format!("{method} sip:milliwatt@$S SIP/2.0"),
        "Via: SIP/2.0/$T $L;branch=z9hG4bK-t$N;rport".into(),
        "From: <sip:caller@$L>;tag=f$N".into(),
        "To: <sip:milliwatt@$S>".into(),
        "Call-ID: torture-$N@test".into(),
        format!("CSeq: 1 {method}"),
        "Contact: <sip:caller@$L;transport=$T>".into(),
        "Max-Forwards: 70".into(),
    ]
}

/// A message from head lines and a body (`Content-Type: application/sdp` when there is one).
fn msg(lines: Vec<String>, body: &str) -> String {
    let mut text = lines.join("\r\n");
    if !body.is_empty() && !text.contains("Content-Type") && !text.contains("\r\nc:") {
        text.push_str("\r\nContent-Type: application/sdp");
    }
    if !text.contains("Content-Length") && !text.contains("\r\nl:") {
        text.push_str("\r\nContent-Length: $LEN");
    }
    format!("{text}\r\n\r\n{body}")
}

/// `head(method)` with the line starting with `prefix` replaced by `line` (removed if empty).
fn with(method: &str, prefix: &str, line: &str) -> Vec<String> {
    let mut lines = head(method);
    let i = lines
        .iter()
        .position(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no line starting {prefix}"));
    if line.is_empty() {
        lines.remove(i);
    } else {
        lines[i] = line.to_string();
    }
    lines
}

fn options_with(prefix: &str, line: &str) -> String {
    msg(with("OPTIONS", prefix, line), "")
}

fn invite_with(prefix: &str, line: &str) -> String {
    msg(with("INVITE", prefix, line), SDP)
}

fn cases() -> Vec<Case> {
    let mut c = vec![
        // --- the start line
        case("start line", "OPTIONS", msg(head("OPTIONS"), ""), Final(200)),
        case("start line", "INVITE", msg(head("INVITE"), SDP), Final(200)),
        case(
            "start line",
            "trailing space after SIP/2.0",
            options_with("OPTIONS", "OPTIONS sip:milliwatt@$S SIP/2.0 "),
            Final(400),
        ),
        case(
            "start line",
            "two spaces after the method",
            options_with("OPTIONS", "OPTIONS  sip:milliwatt@$S SIP/2.0"),
            Final(400),
        ),
        case(
            "start line",
            "two spaces before the version",
            invite_with("INVITE", "INVITE sip:milliwatt@$S  SIP/2.0"),
            Final(400),
        ),
        case(
            "start line",
            "extension method (405 with Allow)",
            msg(head("NEWMETHOD"), ""),
            Final(405),
        ),
        case(
            "start line",
            "a lower-case method is another method (methods are case-sensitive)",
            msg(head("options"), ""),
            Final(405),
        ),
        case(
            "start line",
            "INFO outside a call (RFC 6086 4.2.2: 481)",
            msg(head("INFO"), ""),
            Final(481),
        ),
        case(
            "start line",
            "PRACK outside a call: nothing to acknowledge (RFC 3262 §3: 481)",
            msg(head("PRACK"), ""),
            Final(481),
        ),
        case(
            "start line",
            "REGISTER (405 with Allow)",
            msg(head("REGISTER"), ""),
            Final(405),
        ),
        case(
            "start line",
            "CSeq method differs from the request line's",
            options_with("CSeq", "CSeq: 1 INVITE"),
            Final(400),
        ),
        Case {
            category: "start line",
            what: "empty lines before the request line (RFC 3261 7.5: skipped on a stream only)",
            text: format!("\r\n\r\n{}", msg(head("OPTIONS"), "")),
            udp: Dropped,
            tcp: Some(Final(200)),
        },
        case(
            "start line",
            "another SIP version",
            options_with("OPTIONS", "OPTIONS sip:milliwatt@$S SIP/7.0"),
            Final(505),
        ),
        case(
            "start line",
            "an ACK of another SIP version (an ACK is never answered)",
            msg(with("ACK", "ACK", "ACK sip:milliwatt@$S SIP/7.0"), ""),
            Dropped,
        ),
        case(
            "start line",
            "a tel Request-URI",
            invite_with("INVITE", "INVITE tel:+1-201-555-0123 SIP/2.0"),
            Final(416),
        ),
        case(
            "start line",
            "an unknown Request-URI scheme",
            options_with("OPTIONS", "OPTIONS urn:service:sos SIP/2.0"),
            Final(416),
        ),
        case(
            "start line",
            "request line only",
            "OPTIONS sip:milliwatt@$S SIP/2.0\r\n\r\n".into(),
            Dropped,
        ),
        // --- header syntax and folding
        case(
            "headers",
            "header folded over three lines (SP and HTAB continuations)",
            invite_with("Contact", "Contact:\r\n <sip:caller@$L;transport=$T>\r\n\t;expires=60"),
            Final(200),
        ),
        case(
            "headers",
            "folded Via",
            options_with("Via", "Via: SIP/2.0/$T\r\n $L;branch=z9hG4bK-t$N;rport"),
            Final(200),
        ),
        case(
            "headers",
            "whitespace around the colon",
            options_with("Call-ID", "Call-ID    :   torture-$N@test"),
            Final(200),
        ),
        case(
            "headers",
            "header names in odd case",
            msg(
                head("OPTIONS")
                    .into_iter()
                    .map(|l| l.replacen("Call-ID", "cALL-iD", 1).replacen("CSeq", "cseq", 1))
                    .collect(),
                "",
            ),
            Final(200),
        ),
        case(
            "headers",
            "compact forms (v f t i m l c)",
            format!(
                "INVITE sip:milliwatt@$S SIP/2.0\r\nv: SIP/2.0/$T $L;branch=z9hG4bK-t$N\r\n\
                 f: <sip:caller@$L>;tag=f$N\r\nt: <sip:milliwatt@$S>\r\ni: torture-$N@test\r\n\
                 CSeq: 1 INVITE\r\nm: <sip:caller@$L;transport=$T>\r\nMax-Forwards: 70\r\n\
                 c: application/sdp\r\nl: $LEN\r\n\r\n{SDP}"
            ),
            Final(200),
        ),
        case(
            "headers",
            "unknown headers, one with an empty value",
            msg(
                [
                    head("OPTIONS"),
                    vec![
                        "X-Torture: ;;,,;;\"quoted, with comma\"".into(),
                        "Subject:".into(),
                    ],
                ]
                .concat(),
                "",
            ),
            Final(200),
        ),
        case(
            "headers",
            "a 4 KB header value",
            msg(
                [head("OPTIONS"), vec![format!("X-Long: {}", "a".repeat(4096))]].concat(),
                "",
            ),
            Final(200),
        ),
        case(
            "headers",
            "token display names and an addr-spec without angle brackets",
            options_with("From", "From: Caller Name <sip:caller@$L>;tag=f$N")
                .replacen("To: <sip:milliwatt@$S>", "To: sip:milliwatt@$S", 1),
            Final(200),
        ),
        case(
            "headers",
            "a quoted display name holding escaped quotes and a backslash",
            invite_with(
                "From",
                r#"From: "a \"quoted\" \\ name" <sip:caller@$L>;tag=f$N"#,
            ),
            Final(200),
        ),
        case(
            "headers",
            "an empty quoted display name",
            options_with("From", r#"From: "" <sip:caller@$L>;tag=f$N"#),
            Final(200),
        ),
        case(
            "headers",
            "a display name with characters a token cannot hold, unquoted",
            options_with("From", "From: Caller@Home <sip:caller@$L>;tag=f$N"),
            Final(400),
        ),
        case(
            "headers",
            "Max-Forwards 0 on OPTIONS (we are the target: answered)",
            options_with("Max-Forwards", "Max-Forwards: 0"),
            Final(200),
        ),
        case(
            "headers",
            "no Call-ID",
            options_with("Call-ID", ""),
            Final(400),
        ),
        case("headers", "no CSeq", options_with("CSeq", ""), Final(400)),
        case(
            "headers",
            "CSeq not a number",
            options_with("CSeq", "CSeq: one OPTIONS"),
            Final(400),
        ),
        case("headers", "no To", options_with("To", ""), Final(400)),
        case("headers", "no From", options_with("From", ""), Final(400)),
        case(
            "headers",
            "no From tag on an INVITE",
            invite_with("From", "From: <sip:caller@$L>"),
            Final(400),
        ),
        case(
            "headers",
            "invalid UTF-8 in a header value",
            msg([head("OPTIONS"), vec!["Subject: \u{fffd}".into()]].concat(), ""),
            Dropped,
        ),
        // --- Via and branch forms
        case(
            "Via",
            "RFC 2543 branch (no z9hG4bK)",
            options_with("Via", "Via: SIP/2.0/$T $L;branch=1234567890;rport"),
            Final(200),
        ),
        case(
            "Via",
            "no branch at all",
            options_with("Via", "Via: SIP/2.0/$T $L"),
            Final(200),
        ),
        case(
            "Via",
            "two Vias in one header, the second with an unknown transport",
            options_with(
                "Via",
                "Via: SIP/2.0/$T $L;branch=z9hG4bK-t$N;rport, SIP/2.0/NEWTRANSPORT proxy.invalid:9999;branch=z9hG4bK-x",
            ),
            Final(200),
        ),
        case(
            "Via",
            "a second Via header with an IPv6 sent-by and extension parameters",
            msg(
                [
                    head("OPTIONS"),
                    vec!["Via: SIP/2.0/TCP [2001:db8::9]:5060;branch=z9hG4bK-y;received=192.0.2.9;ext=1;flag".into()],
                ]
                .concat(),
                "",
            ),
            Final(200),
        ),
        case(
            "Via",
            "no Via (nothing to route a response by)",
            options_with("Via", ""),
            Dropped,
        ),
        case(
            "Via",
            "only a Via of another SIP version",
            options_with("Via", "Via: SIP/2.5/$T $L;branch=z9hG4bK-t$N"),
            Dropped,
        ),
        // --- URIs: escaping and schemes
        case(
            "URI",
            "escaped characters in the user part",
            options_with("OPTIONS", "OPTIONS sip:%6dilli%77att@$S SIP/2.0"),
            Final(200),
        ),
        case(
            "URI",
            "a telephone-subscriber user part with parameters (user=phone)",
            invite_with(
                "INVITE",
                "INVITE sip:+1-972-555-2222;phone-context=name%40domain;npdi@$S;user=phone SIP/2.0",
            ),
            Final(200),
        ),
        case(
            "URI",
            "URI parameters and headers in Contact",
            invite_with(
                "Contact",
                "Contact: <sip:caller@$L;transport=$T;lr;maddr=127.0.0.1?Subject=hi&Priority=urgent>",
            ),
            Final(200),
        ),
        case(
            "URI",
            "sips Request-URI",
            options_with("OPTIONS", "OPTIONS sips:milliwatt@$S SIP/2.0"),
            Final(200),
        ),
        case(
            "URI",
            "an unknown scheme in Contact",
            options_with("Contact", "Contact: <mailto:caller@example.invalid>"),
            Final(200),
        ),
        case(
            "URI",
            "a tel: URI in From (RFC 3261 20.20: any absoluteURI)",
            invite_with(
                "From",
                r#"From: "+1 555" <tel:+1-555-0100;phone-context=example.com>;tag=f$N"#,
            ),
            Final(200),
        ),
        case(
            "URI",
            "a urn: URI in To, without angle brackets",
            options_with("To", "To: urn:service:sos"),
            Final(200),
        ),
        case(
            "URI",
            "a sip: URI in From that does not parse",
            options_with("From", "From: <sip:>;tag=f$N"),
            Final(400),
        ),
        case(
            "URI",
            "an INVITE for another domain",
            invite_with("INVITE", "INVITE sip:milliwatt@elsewhere.invalid SIP/2.0"),
            Final(404),
        ),
        // --- Content-Length and bodies
        case(
            "body",
            "the same Content-Length twice",
            msg(
                [
                    head("INVITE"),
                    vec!["Content-Length: $LEN".into(), "l: $LEN".into()],
                ]
                .concat(),
                SDP,
            ),
            Final(200),
        ),
        case(
            "body",
            "unsupported body type",
            msg(
                [head("INVITE"), vec!["Content-Type: text/plain".into()]].concat(),
                "hello",
            ),
            Final(415),
        ),
        // A late offer (RFC 3261 13.2.1): our offer in the 200, the answer in the ACK.
        case(
            "body",
            "an INVITE without an offer",
            msg(head("INVITE"), ""),
            Final(200),
        ),
        // --- SDP
        case(
            "SDP",
            "LF line ends and unknown attributes",
            msg(
                head("INVITE"),
                &format!(
                    "{}a=x-unknown:with some value\r\na=sendrecv\r\nb=AS:64\r\n",
                    SDP.replace("\r\n", "\n")
                ),
            ),
            Final(200),
        ),
        case(
            "SDP",
            "c= at the media level only, a declined video stream",
            msg(
                head("INVITE"),
                "v=0\r\no=t 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=video 0 RTP/AVP 31\r\n\
                 m=audio 9 RTP/AVP 8 0\r\nc=IN IP4 127.0.0.1\r\n",
            ),
            Final(200),
        ),
        case("SDP", "garbage", msg(head("INVITE"), "garbage\r\n"), Final(400)),
        case(
            "SDP",
            "only codecs we do not have",
            msg(head("INVITE"), &SDP.replace("RTP/AVP 0", "RTP/AVP 3").replace("a=rtpmap:0 PCMU/8000\r\n", "")),
            Final(488),
        ),
        case(
            "SDP",
            "a host name in c=",
            msg(head("INVITE"), &SDP.replace("IN IP4 127.0.0.1\r\nt=", "IN IP4 host.invalid\r\nt=")),
            Final(488),
        ),
    ];
    // Content-Length framing differs: a datagram's end bounds the message, a stream has none.
    c.extend([
        Case {
            category: "body",
            what: "two different Content-Length values (a stream cannot be framed: closed)",
            text: msg(
                [
                    head("INVITE"),
                    vec!["Content-Length: $LEN".into(), "Content-Length: 1".into()],
                ]
                .concat(),
                SDP,
            ),
            udp: Final(400),
            tcp: Some(Dropped),
        },
        Case {
            category: "body",
            what: "negative Content-Length (a stream cannot be framed: closed)",
            text: msg(
                [head("OPTIONS"), vec!["Content-Length: -5".into()]].concat(),
                "",
            ),
            udp: Final(400),
            tcp: Some(Dropped),
        },
        Case {
            category: "body",
            what: "no Content-Length: the datagram's end is the body's",
            text: msg(
                [head("INVITE"), vec!["Content-Type: application/sdp".into()]].concat(),
                SDP,
            )
            .replacen("\r\nContent-Length: $LEN", "", 1),
            udp: Final(200),
            tcp: None,
        },
        Case {
            category: "body",
            what: "bytes after the Content-Length (ignored in a datagram, the next message's on a stream)",
            text: format!("{}junk after the body", msg(head("OPTIONS"), "")),
            udp: Final(200),
            tcp: Some(Final(200)),
        },
        Case {
            category: "body",
            what: "Content-Length beyond the datagram",
            text: msg(
                [head("OPTIONS"), vec!["Content-Length: 500".into()]].concat(),
                "",
            ),
            udp: Dropped,
            tcp: None,
        },
    ]);
    c
}

/// One way of sending a message and reading what comes back.
enum Peer {
    Udp(RawSip),
    Tcp(TcpStream, String),
}

impl Peer {
    fn new(tcp: bool, server: SocketAddr) -> Peer {
        if tcp {
            let s = TcpStream::connect(server).expect("connect to SIP over TCP");
            s.set_nodelay(true).unwrap();
            Peer::Tcp(s, String::new())
        } else {
            Peer::Udp(RawSip::new(server))
        }
    }

    fn local(&self) -> SocketAddr {
        match self {
            Peer::Udp(u) => u.local,
            Peer::Tcp(s, _) => s.local_addr().unwrap(),
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        match self {
            Peer::Udp(u) => u.send_bytes(bytes),
            Peer::Tcp(s, _) => s.write_all(bytes).unwrap(),
        }
    }

    /// The next final response within `limit`.
    fn final_response(&mut self, limit: Duration) -> Option<Msg> {
        let deadline = Instant::now() + limit;
        match self {
            Peer::Udp(u) => u
                .recv_until(limit, |m| m.status().is_some_and(|s| s >= 200))
                .into_iter()
                .find(|m| m.status().is_some_and(|s| s >= 200)),
            Peer::Tcp(s, pending) => loop {
                while let Some(m) = take_message(pending) {
                    if m.status().is_some_and(|s| s >= 200) {
                        return Some(m);
                    }
                }
                let left = deadline.checked_duration_since(Instant::now())?;
                s.set_read_timeout(Some(left.max(Duration::from_millis(1))))
                    .unwrap();
                let mut buf = [0u8; 8192];
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => return None,
                    Ok(n) => pending.push_str(&String::from_utf8_lossy(&buf[..n])),
                }
            },
        }
    }
}

/// A whole message off the front of a stream's text, framed by its Content-Length.
fn take_message(pending: &mut String) -> Option<Msg> {
    let trimmed = pending.trim_start_matches(['\r', '\n']).len();
    pending.drain(..pending.len() - trimmed);
    let head_end = pending.find("\r\n\r\n")? + 4;
    let head = Msg {
        at: Instant::now(),
        text: pending[..head_end].to_string(),
    };
    let len: usize = head
        .header("Content-Length")
        .or_else(|| head.header("l"))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    if pending.len() < head_end + len {
        return None;
    }
    let text: String = pending.drain(..head_end + len).collect();
    Some(Msg { at: head.at, text })
}

fn fill(template: &str, transport: &str, local: SocketAddr, server: SocketAddr, n: u32) -> Vec<u8> {
    let text = template
        .replace("$LEN", "\u{1}")
        .replace("$T", transport)
        .replace("$L", &local.to_string())
        .replace("$S", &server.to_string())
        .replace("$N", &n.to_string());
    let start = text.len() - text.trim_start_matches(['\r', '\n']).len();
    let body_len = text[start..]
        .find("\r\n\r\n")
        .map_or(0, |i| text.len() - start - i - 4);
    let text = text.replace('\u{1}', &body_len.to_string());
    // The one case with invalid UTF-8 writes U+FFFD as a stand-in for the raw byte 0xff.
    let mut bytes = Vec::with_capacity(text.len());
    for part in text.split('\u{fffd}') {
        if !bytes.is_empty() || text.starts_with('\u{fffd}') {
            bytes.push(0xff);
        }
        bytes.extend_from_slice(part.as_bytes());
    }
    bytes
}

/// `Allow` and `Supported` say what the service answers and implements: the eight methods it
/// handles, each once, and the option tags `100rel` (RFC 3262) and `timer` (RFC 4028).
fn check_capabilities(m: &Msg, what: &str) {
    let values = |name: &str| -> Vec<String> {
        m.text
            .lines()
            .filter_map(|l| l.split_once(':'))
            .filter(|(n, _)| n.trim().eq_ignore_ascii_case(name))
            .flat_map(|(_, v)| {
                v.split(',')
                    .map(|x| x.trim().to_string())
                    .collect::<Vec<_>>()
            })
            .filter(|v| !v.is_empty())
            .collect()
    };
    let allow = values("Allow");
    if !allow.is_empty() {
        let mut sorted = allow.clone();
        sorted.sort();
        assert_eq!(
            sorted,
            ["ACK", "BYE", "CANCEL", "INFO", "INVITE", "OPTIONS", "PRACK", "UPDATE"],
            "{what}: Allow {allow:?}:\n{}",
            m.text
        );
    }
    for tag in values("Supported").into_iter().chain(values("k")) {
        assert!(
            ["100rel", "timer"].contains(&tag.to_ascii_lowercase().as_str()),
            "{what}: Supported {tag}:\n{}",
            m.text
        );
    }
}

/// The URI of a From or To value: between `<` and `>`, or an addr-spec up to its first `;`.
fn uri_of(value: &str) -> &str {
    match value.find('<') {
        Some(open) => value[open + 1..].split('>').next().unwrap_or(""),
        None => value.split(';').next().unwrap_or("").trim(),
    }
}

/// A response carries the request's From and To URIs as they were sent (RFC 3261 8.2.6.2),
/// whatever their scheme.
fn echoes_from_and_to(request: &[u8], response: &Msg, what: &str) {
    let request = Msg {
        at: Instant::now(),
        text: String::from_utf8_lossy(request).into_owned(),
    };
    for (name, compact) in [("From", "f"), ("To", "t")] {
        let sent = request.header(name).or_else(|| request.header(compact));
        let got = response.header(name).or_else(|| response.header(compact));
        let (Some(sent), Some(got)) = (sent, got) else {
            panic!("{what}: {name} missing:\n{}", response.text);
        };
        assert_eq!(
            uri_of(got),
            uri_of(sent),
            "{what}: the {name} URI echoed:\n{}",
            response.text
        );
    }
}

/// ACK and BYE for a 200 to an INVITE, on `peer`; the BYE must get 200.
fn end_call(peer: &mut Peer, ok: &Msg, transport: &str, n: u32, ack_sdp: Option<&str>) {
    let h = |name: &str, compact: &str| {
        ok.header(name)
            .or_else(|| ok.header(compact))
            .unwrap_or_else(|| panic!("{name} in the 200:\n{}", ok.text))
            .to_string()
    };
    let (from, to, call_id) = (h("From", "f"), h("To", "t"), h("Call-ID", "i"));
    let cseq: u32 = h("CSeq", "CSeq")
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .expect("CSeq number");
    let contact = h("Contact", "m");
    let target = contact
        .trim_start_matches(|c| c != '<')
        .trim_start_matches('<')
        .split('>')
        .next()
        .unwrap()
        .to_string();
    let local = peer.local();
    let request = |method: &str, seq: u32, branch: &str| {
        format!(
            "{method} {target} SIP/2.0\r\nVia: SIP/2.0/{transport} {local};branch=z9hG4bK-{branch}{n}\r\n\
             From: {from}\r\nTo: {to}\r\nCall-ID: {call_id}\r\nCSeq: {seq} {method}\r\n\
             Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        )
    };
    let ack = match ack_sdp {
        Some(sdp) => request("ACK", cseq, "ack").replace(
            "Content-Length: 0\r\n\r\n",
            &format!(
                "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
                sdp.len()
            ),
        ),
        None => request("ACK", cseq, "ack"),
    };
    peer.send(ack.as_bytes());
    peer.send(request("BYE", cseq + 1, "bye").as_bytes());
    let bye = peer
        .final_response(Duration::from_secs(2))
        .expect("an answer to our BYE");
    assert_eq!(bye.status(), Some(200), "BYE:\n{}", bye.text);
}

fn options_answered(server: SocketAddr, n: u32) {
    let c = RawSip::new(server);
    let text = fill(&msg(head("OPTIONS"), ""), "UDP", c.local, server, n);
    c.send_bytes(&text);
    let r = c
        .recv_until(Duration::from_secs(2), |m| m.status().is_some())
        .pop()
        .expect("server stopped answering OPTIONS");
    assert_eq!(r.status(), Some(200), "{}", r.text);
}

fn counter(stats: &str, name: &str) -> u64 {
    stats
        .split(&format!("{name}="))
        .nth(1)
        .and_then(|s| s.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{name} in the statistics: {stats}"))
}

#[test]
fn every_torture_message_gets_its_answer_over_udp_and_tcp() {
    if reexec_in_loopback_namespace("every_torture_message_gets_its_answer_over_udp_and_tcp") {
        return;
    }
    let mut cfg = TestConfig::new();
    cfg.answer_delay_ms = 0;
    let mut server = Server::start(cfg.clone(), Mode::AllInOne);
    let addr = cfg.sip_addr();
    let mut n = 0;
    let mut failures = Vec::new();
    let (mut want_dropped, mut want_400) = (0, 0);
    for c in cases() {
        let sends = [("UDP", Some(c.udp)), ("TCP", c.tcp)];
        for (transport, want) in sends.into_iter().filter_map(|(t, w)| Some((t, w?))) {
            n += 1;
            let mut peer = Peer::new(transport == "TCP", addr);
            let bytes = fill(&c.text, transport, peer.local(), addr, n);
            peer.send(&bytes);
            let got = peer.final_response(Duration::from_secs(1));
            let status = got.as_ref().and_then(Msg::status);
            let as_wanted = match want {
                Final(code) => status == Some(code),
                Dropped => got.is_none(),
            };
            if !as_wanted {
                failures.push(format!(
                    "[{}] {} over {transport}: wanted {want:?}, got {}",
                    c.category,
                    c.what,
                    got.map_or("no answer".into(), |m| m
                        .text
                        .lines()
                        .next()
                        .unwrap_or("")
                        .to_string())
                ));
            } else if let (Some(code), Some(m)) = (status, &got) {
                let line = m.text.lines().next().unwrap_or("");
                assert!(
                    code != 400 || m.header("Warning").is_some() || !line.ends_with(" Bad Request"),
                    "[{}] {} over {transport}: a 400 says why (Warning or reason phrase):\n{}",
                    c.category,
                    c.what,
                    m.text
                );
                check_capabilities(m, c.what);
                if code == 200 {
                    echoes_from_and_to(&bytes, m, &format!("{} over {transport}", c.what));
                }
                let is_invite = c.text.trim_start().starts_with("INVITE");
                if code == 200 && is_invite {
                    // A late offer's ACK carries the answer (else we would end the call).
                    let late = c.text.split("\r\n\r\n").nth(1).is_some_and(str::is_empty);
                    end_call(&mut peer, m, transport, n, late.then_some(SDP));
                }
            }
            match want {
                Dropped => want_dropped += 1,
                Final(400) => want_400 += 1,
                Final(_) => {}
            }
            n += 1;
            options_answered(addr, n);
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} sends:\n{}",
        failures.len(),
        n / 2,
        failures.join("\n")
    );
    let statuses = server.terminate();
    assert!(
        statuses.iter().all(|s| s.success()),
        "exit after SIGTERM: {statuses:?}"
    );
    let log = server.log_text();
    let stats = log
        .lines()
        .find(|l| l.contains("signaling stopping"))
        .expect("final statistics line");
    assert_eq!(
        counter(stats, "malformed_dropped"),
        want_dropped,
        "every dropped message counted: {stats}"
    );
    assert_eq!(
        counter(stats, "malformed_400"),
        want_400,
        "every 400 counted as malformed: {stats}"
    );
}
