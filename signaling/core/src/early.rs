//! A new INVITE refused from its bytes, before the SIP stack parses it.
//!
//! Under overload the work a shed call costs decides how fast a backlog drains: a 503 built
//! from the request's bytes costs a scan and a send, where the stack's parse, a task per
//! message and the layers cost several times that (README, Benchmark). [`peek`] takes only
//! requests simple enough to answer exactly as the stack would (RFC 3261 8.2.6: Via, From, To,
//! Call-ID and CSeq copied, a To-tag added); anything else is left to the stack, which parses
//! it and answers or refuses it as usual. The shell decides whether to shed (the same
//! `overload::admit` as the stack's path) and sends what [`answer`] builds.
//!
//! The scan checks the framing it relies on (the request line, one each of From, To, Call-ID
//! and CSeq, the top Via's sent-by and branch, the tags), not every header's grammar: under
//! overload a request the stack would refuse with 400 (a malformed URI in its From, say) may get
//! the 503 instead. Where both take a request they read the same Call-ID, tags, CSeq number and
//! branch (the fuzz target `sip_request` holds them to it).

use std::net::{IpAddr, SocketAddr};

/// What [`peek`] found in a datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Peek<'a> {
    /// An INVITE without a To-tag (a new call), simple enough to answer from its bytes.
    NewInvite(RawHead<'a>),
    /// An ACK with a To-tag, simple enough to match against a stateless answer.
    Ack(RawHead<'a>),
    /// Anything else, or an INVITE or ACK this scan does not take (folded or repeated
    /// headers, several Via values on the first Via line, a Via `maddr` or `received`, an
    /// RFC 2543 branch, a quoted display name with an escape, bare LF line ends, ...): left to
    /// the stack.
    Other,
}

/// The headers a stateless answer is made of, as written (values trimmed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawHead<'a> {
    /// Each Via header's value, in order; the first holds exactly one value (the top Via).
    pub vias: Vec<&'a str>,
    pub from: &'a str,
    pub to: &'a str,
    pub call_id: &'a str,
    pub cseq: &'a str,
    pub cseq_number: u32,
    /// The From-tag (required: a request without one is left to the stack).
    pub from_tag: &'a str,
    pub to_tag: Option<&'a str>,
    /// The top Via's branch (RFC 3261: `z9hG4bK...`).
    pub branch: &'a str,
    top_via: TopVia<'a>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct TopVia<'a> {
    /// `SIP/2.0/UDP`, as written.
    protocol: &'a str,
    /// host[:port], as written.
    sent_by: &'a str,
    host: &'a str,
    /// Each parameter (`branch=...`, `rport`), in order, as [`params`] reads them.
    params: Vec<(&'a str, Option<&'a str>)>,
}

/// The RFC 3261 branch prefix (8.1.1.7); an older branch keys its transaction by other fields.
const MAGIC_COOKIE: &str = "z9hG4bK";

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
                )
        })
}

/// `name=value` or `name` parameters after a `;`-separated list's head: each trimmed, none
/// empty, values tokens. `None` if any is not that simple.
fn params(list: &str) -> Option<Vec<(&str, Option<&str>)>> {
    list.split(';')
        .map(|p| {
            let p = p.trim();
            match p.split_once('=') {
                Some((n, v)) => {
                    let (n, v) = (n.trim(), v.trim());
                    (is_token(n) && is_token(v)).then_some((n, Some(v)))
                }
                None => is_token(p).then_some((p, None)),
            }
        })
        .collect()
}

/// The header parameters of a From or To value (after the `>` of a name-addr, or after the
/// addr-spec's first `;`, RFC 3261 20.10), and whether any is `tag` (its value).
fn tag_of(value: &str) -> Option<Option<&str>> {
    let mut rest = value;
    if let Some(q) = rest.find('"') {
        // A quoted display name: skipped to its closing quote (an escape: left to the stack).
        let after = &rest[q + 1..];
        let close = after.find('"')?;
        if after[..close].contains('\\') {
            return None;
        }
        rest = &after[close + 1..];
    }
    let header_params = if let Some(open) = rest.find('<') {
        let close = rest[open..].find('>')? + open;
        &rest[close + 1..]
    } else {
        match rest.find(';') {
            Some(i) => &rest[i..],
            None => "",
        }
    };
    let header_params = header_params.trim();
    if header_params.is_empty() {
        return Some(None);
    }
    let list = header_params.strip_prefix(';')?;
    let mut tag = None;
    for (n, v) in params(list)? {
        // Parameter names as the stack matches them: exactly (it reads no `TAG` as a tag).
        if n == "tag" {
            if tag.is_some() {
                return None;
            }
            tag = Some(v?);
        }
    }
    Some(tag)
}

fn top_via(value: &str) -> Option<TopVia<'_>> {
    if value.contains(',') {
        return None;
    }
    let (protocol, rest) = value.split_once([' ', '\t'])?;
    if !protocol
        .get(..8)
        .is_some_and(|p| p.eq_ignore_ascii_case("SIP/2.0/"))
    {
        return None;
    }
    let rest = rest.trim_start();
    let (sent_by, list) = rest.split_once(';')?;
    let sent_by = sent_by.trim();
    // sent-by = host [ ":" port ] (RFC 3261 25.1), strictly: an IP literal or a host name
    // of letters, digits, `-` and `.`, and a port of digits.
    let (host, port) = if let Some(v6) = sent_by.strip_prefix('[') {
        let (addr, rest) = v6.split_once(']')?;
        addr.parse::<std::net::Ipv6Addr>().ok()?;
        let port = match rest {
            "" => None,
            _ => Some(rest.strip_prefix(':')?),
        };
        (addr, port)
    } else {
        match sent_by.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (sent_by, None),
        }
    };
    let host_ok = host.parse::<IpAddr>().is_ok() || is_hostname(host);
    if !host_ok
        || port.is_some_and(|p| {
            p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) || p.parse::<u16>().is_err()
        })
    {
        return None;
    }
    let params = params(list)?;
    if params
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case("maddr") || n.eq_ignore_ascii_case("received"))
    {
        return None;
    }
    Some(TopVia {
        protocol,
        sent_by,
        host,
        params,
    })
}

/// RFC 3261 25.1 `hostname`: dot-separated labels of letters, digits and inner `-`, the last
/// (the top label) starting with a letter, an optional final dot.
fn is_hostname(host: &str) -> bool {
    let host = host.strip_suffix('.').unwrap_or(host);
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    host.split('.').all(label_ok)
        && host
            .rsplit('.')
            .next()
            .is_some_and(|top| top.starts_with(|c: char| c.is_ascii_alphabetic()))
}

fn branch_of<'a>(via: &TopVia<'a>) -> Option<&'a str> {
    let mut found = None;
    for &(n, v) in &via.params {
        if n == "branch" {
            if found.is_some() {
                return None;
            }
            found = Some(v?);
        }
    }
    found.filter(|b| b.starts_with(MAGIC_COOKIE))
}

/// An INVITE or ACK simple enough to answer or match from its bytes (see [`Peek`]).
pub fn peek(datagram: &[u8]) -> Peek<'_> {
    let is_invite = datagram.starts_with(b"INVITE ");
    if !is_invite && !datagram.starts_with(b"ACK ") {
        return Peek::Other;
    }
    scan(datagram, is_invite).unwrap_or(Peek::Other)
}

fn scan(datagram: &[u8], is_invite: bool) -> Option<Peek<'_>> {
    let end = datagram.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&datagram[..end]).ok()?;
    if head
        .bytes()
        .enumerate()
        .any(|(i, b)| b == b'\n' && (i == 0 || head.as_bytes()[i - 1] != b'\r'))
    {
        return None;
    }
    let mut lines = head.split("\r\n");
    let line = lines.next()?;
    let method = if is_invite { "INVITE" } else { "ACK" };
    let mut parts = line.split(' ');
    let (m, uri, version) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || m != method || uri.is_empty() || version != "SIP/2.0" {
        return None;
    }
    let (mut vias, mut from, mut to, mut call_id, mut cseq, mut lengths) =
        (Vec::new(), None, None, None, None, 0);
    for l in lines {
        if l.starts_with([' ', '\t']) {
            return None; // folded (RFC 3261 7.3.1): left to the stack
        }
        let (name, value) = l.split_once(':')?;
        let (name, value) = (name.trim_end(), value.trim());
        // Header names are case-insensitive (RFC 3261 7.3.1); compact forms too (7.3.3).
        let is = |names: &[&str]| names.iter().any(|n| name.eq_ignore_ascii_case(n));
        let slot = if is(&["via", "v"]) {
            vias.push(value);
            continue;
        } else if is(&["content-length", "l"]) {
            lengths += 1;
            if lengths > 1 || value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            continue;
        } else if is(&["from", "f"]) {
            &mut from
        } else if is(&["to", "t"]) {
            &mut to
        } else if is(&["call-id", "i"]) {
            &mut call_id
        } else if is(&["cseq"]) {
            &mut cseq
        } else {
            continue;
        };
        if slot.replace(value).is_some() {
            return None;
        }
    }
    let (from, to, call_id, cseq) = (from?, to?, call_id?, cseq?);
    if call_id.is_empty() || call_id.contains(char::is_whitespace) {
        return None;
    }
    let mut c = cseq.split_whitespace();
    let (number, cseq_method) = (c.next()?, c.next()?);
    if c.next().is_some() || cseq_method != method {
        return None;
    }
    let cseq_number: u32 = number.parse().ok()?;
    let top = top_via(vias.first()?)?;
    let branch = branch_of(&top)?;
    let from_tag = tag_of(from)??;
    let to_tag = tag_of(to)?;
    let head = RawHead {
        vias,
        from,
        to,
        call_id,
        cseq,
        cseq_number,
        from_tag,
        to_tag,
        branch,
        top_via: top,
    };
    Some(match (is_invite, to_tag) {
        (true, None) => Peek::NewInvite(head),
        (false, Some(_)) => Peek::Ack(head),
        _ => return None,
    })
}

/// A stateless final response to `head` (received from `source`) as the stack would send it:
/// the top Via with `received` where its host is not the source address and `rport` filled
/// (RFC 3261 18.2.1, RFC 3581), the other Vias, From, To with `to_tag`, Call-ID and CSeq as
/// received, then `Retry-After` (when given) and a `Warning` with `text`. It goes to `source`.
pub fn answer(
    head: &RawHead<'_>,
    source: SocketAddr,
    code: u16,
    reason: &str,
    to_tag: &str,
    retry_after: Option<u32>,
    text: &str,
) -> Vec<u8> {
    use std::fmt::Write;
    let v = &head.top_via;
    let mut via = format!("{} {}", v.protocol, v.sent_by);
    for &(n, value) in &v.params {
        match (n, value) {
            ("rport", _) => {
                let _ = write!(via, ";rport={}", source.port());
            }
            (n, Some(value)) => {
                let _ = write!(via, ";{n}={value}");
            }
            (n, None) => {
                let _ = write!(via, ";{n}");
            }
        }
    }
    let host = v.host.parse::<IpAddr>().ok();
    if host != Some(source.ip()) {
        let _ = write!(via, ";received={}", source.ip());
    }
    let mut out = String::with_capacity(512);
    let _ = write!(out, "SIP/2.0 {code} {reason}\r\nVia: {via}\r\n");
    for other in &head.vias[1..] {
        let _ = write!(out, "Via: {other}\r\n");
    }
    let _ = write!(
        out,
        "From: {}\r\nTo: {};tag={to_tag}\r\nCall-ID: {}\r\nCSeq: {}\r\n",
        head.from, head.to, head.call_id, head.cseq
    );
    if let Some(s) = retry_after {
        let _ = write!(out, "Retry-After: {s}\r\n");
    }
    let _ = write!(
        out,
        "Warning: 399 milliwatt \"{}\"\r\nContent-Length: 0\r\n\r\n",
        text.replace(['"', '\\'], "'")
    );
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    const INVITE: &str = "INVITE sip:milliwatt@127.0.0.1:5180 SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5299;branch=z9hG4bK-11195-2-0\r\n\
From: \"sipp\" <sip:sipp@127.0.0.1:5299>;tag=11195SIPpTag002\r\n\
To: <sip:milliwatt@127.0.0.1:5180>\r\n\
Call-ID: 2-11195@127.0.0.1\r\n\
CSeq: 1 INVITE\r\n\
Contact: <sip:sipp@127.0.0.1:5299>\r\n\
Max-Forwards: 70\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 4\r\n\
\r\n\
v=0\n";

    fn src() -> SocketAddr {
        "127.0.0.1:5299".parse().unwrap()
    }

    fn new_invite(text: &str) -> RawHead<'_> {
        match peek(text.as_bytes()) {
            Peek::NewInvite(h) => h,
            other => panic!("not taken as a new INVITE: {other:?}"),
        }
    }

    #[test]
    fn a_plain_invite_is_taken_with_its_headers_as_written() {
        let h = new_invite(INVITE);
        assert_eq!(
            h.vias,
            ["SIP/2.0/UDP 127.0.0.1:5299;branch=z9hG4bK-11195-2-0"]
        );
        assert_eq!(
            h.from,
            "\"sipp\" <sip:sipp@127.0.0.1:5299>;tag=11195SIPpTag002"
        );
        assert_eq!(h.to, "<sip:milliwatt@127.0.0.1:5180>");
        assert_eq!(h.call_id, "2-11195@127.0.0.1");
        assert_eq!((h.cseq, h.cseq_number), ("1 INVITE", 1));
        assert_eq!(h.from_tag, "11195SIPpTag002");
        assert_eq!(h.to_tag, None);
        assert_eq!(h.branch, "z9hG4bK-11195-2-0");
    }

    #[test]
    fn the_answer_copies_the_headers_and_adds_the_tag_retry_after_and_warning() {
        let h = new_invite(INVITE);
        let a = answer(
            &h,
            src(),
            503,
            "Service Unavailable",
            "0ecb",
            Some(5),
            "overload: \"x\"",
        );
        assert_eq!(
            String::from_utf8(a).unwrap(),
            "SIP/2.0 503 Service Unavailable\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5299;branch=z9hG4bK-11195-2-0\r\n\
From: \"sipp\" <sip:sipp@127.0.0.1:5299>;tag=11195SIPpTag002\r\n\
To: <sip:milliwatt@127.0.0.1:5180>;tag=0ecb\r\n\
Call-ID: 2-11195@127.0.0.1\r\n\
CSeq: 1 INVITE\r\n\
Retry-After: 5\r\n\
Warning: 399 milliwatt \"overload: 'x'\"\r\n\
Content-Length: 0\r\n\r\n"
        );
    }

    #[test]
    fn the_top_via_gets_received_and_rport_and_the_others_stay() {
        let text = INVITE.replace(
            "Via: SIP/2.0/UDP 127.0.0.1:5299;branch=z9hG4bK-11195-2-0\r\n",
            "v: SIP/2.0/UDP host.example;rport;branch=z9hG4bKa\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKb, SIP/2.0/UDP 10.0.0.2\r\n",
        );
        let h = new_invite(&text);
        let a = String::from_utf8(answer(
            &h,
            src(),
            503,
            "Service Unavailable",
            "t",
            None,
            "w",
        ))
        .unwrap();
        assert!(
            a.contains(
                "\r\nVia: SIP/2.0/UDP host.example;rport=5299;branch=z9hG4bKa;received=127.0.0.1\r\n\
Via: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKb, SIP/2.0/UDP 10.0.0.2\r\nFrom: "
            ),
            "{a}"
        );
        assert!(!a.contains("Retry-After"), "{a}");
        // An IPv6 source that is the sent-by host: no `received`.
        let text = INVITE.replace("127.0.0.1:5299;branch", "[::1]:5299;branch");
        let h = new_invite(&text);
        let a = answer(&h, "[::1]:5299".parse().unwrap(), 503, "S", "t", None, "w");
        assert!(!String::from_utf8(a).unwrap().contains("received"));
    }

    #[test]
    fn compact_names_and_case_are_taken() {
        let text = INVITE
            .replace("From:", "f:")
            .replace("To:", "t:")
            .replace("Call-ID:", "i:")
            .replace("CSeq:", "cseq:")
            .replace("Content-Length:", "l:");
        let h = new_invite(&text);
        assert_eq!(h.from_tag, "11195SIPpTag002");
    }

    #[test]
    fn an_ack_with_a_to_tag_is_an_ack() {
        let text = INVITE
            .replace("INVITE sip", "ACK sip")
            .replace("1 INVITE", "1 ACK")
            .replace("5180>\r\n", "5180>;tag=abc\r\n");
        match peek(text.as_bytes()) {
            Peek::Ack(h) => assert_eq!(h.to_tag, Some("abc")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn what_the_scan_does_not_take_is_left_to_the_stack() {
        let cases: Vec<(&str, String)> = vec![
            ("OPTIONS", INVITE.replace("INVITE sip", "OPTIONS sip")),
            (
                "lowercase method",
                INVITE.replace("INVITE sip", "invite sip"),
            ),
            (
                "two spaces in the line",
                INVITE.replace("INVITE sip", "INVITE  sip"),
            ),
            ("SIP/2.1", INVITE.replace(" SIP/2.0\r\n", " SIP/2.1\r\n")),
            ("a To-tag", INVITE.replace("5180>\r\n", "5180>;tag=x\r\n")),
            ("no From-tag", INVITE.replace(";tag=11195SIPpTag002", "")),
            (
                "two From-tags",
                INVITE.replace(";tag=11195SIPpTag002", ";tag=a;tag=b"),
            ),
            (
                "a quoted tag",
                INVITE.replace(";tag=11195SIPpTag002", ";tag=\"a\""),
            ),
            (
                "an escape in the name",
                INVITE.replace("\"sipp\"", "\"si\\\"pp\""),
            ),
            (
                "two Call-IDs",
                INVITE.replace("CSeq:", "Call-ID: b\r\nCSeq:"),
            ),
            (
                "no Call-ID",
                INVITE.replace("Call-ID: 2-11195@127.0.0.1\r\n", ""),
            ),
            (
                "a CSeq of another method",
                INVITE.replace("1 INVITE", "1 ACK"),
            ),
            (
                "a CSeq out of range",
                INVITE.replace("1 INVITE", "4294967296 INVITE"),
            ),
            (
                "a folded header",
                INVITE.replace("Max-Forwards: 70", "Max-Forwards:\r\n 70"),
            ),
            (
                "bare LF",
                INVITE.replace("Max-Forwards: 70\r\n", "Max-Forwards: 70\n"),
            ),
            (
                "no Via",
                INVITE.replace(
                    "Via: SIP/2.0/UDP 127.0.0.1:5299;branch=z9hG4bK-11195-2-0\r\n",
                    "",
                ),
            ),
            (
                "two top Vias on a line",
                INVITE.replace("2-0\r\n", "2-0, SIP/2.0/UDP b\r\n"),
            ),
            ("an RFC 2543 branch", INVITE.replace("z9hG4bK-11195", "abc")),
            (
                "a maddr",
                INVITE.replace(";branch=", ";maddr=10.0.0.9;branch="),
            ),
            (
                "a received",
                INVITE.replace(";branch=", ";received=10.0.0.9;branch="),
            ),
            (
                "a bad sent-by port",
                INVITE.replace("127.0.0.1:5299;", "127.0.0:051.70;"),
            ),
            (
                "a host name whose top label is a number",
                INVITE.replace("127.0.0.1:5299;", "127.0.0.1V5070;"),
            ),
            (
                "a port out of range",
                INVITE.replace("127.0.0.1:5299;", "127.0.0.1:65536;"),
            ),
            (
                "a bad IPv6 sent-by",
                INVITE.replace("127.0.0.1:5299;", "[::1:5299;"),
            ),
            (
                "two Content-Lengths",
                INVITE.replace("Max-Forwards", "l: 4\r\nMax-Forwards"),
            ),
            (
                "a bad Content-Length",
                INVITE.replace("Content-Length: 4", "Content-Length: x"),
            ),
            ("no head end", INVITE.replace("\r\n\r\n", "\r\n")),
            (
                "not UTF-8",
                INVITE.replace("Max-Forwards: 70", "Max-Forwards: \u{0}\u{ff}"),
            ),
        ];
        for (what, text) in cases {
            let mut bytes = text.into_bytes();
            if what == "not UTF-8" {
                let i = bytes.iter().position(|&b| b == 0).unwrap();
                bytes[i] = 0xff;
            }
            assert_eq!(peek(&bytes), Peek::Other, "{what}");
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let base = INVITE.as_bytes();
        for cut in 0..base.len() {
            let _ = peek(&base[..cut]);
        }
        for i in 0..base.len() {
            for b in [
                0u8, b'\r', b'\n', b';', b'<', b'>', b'"', b'[', b',', b':', 0xc3,
            ] {
                let mut m = base.to_vec();
                m[i] = b;
                if let Peek::NewInvite(h) = peek(&m) {
                    let _ = answer(&h, src(), 503, "S", "t", Some(5), "w");
                }
            }
        }
    }
}
