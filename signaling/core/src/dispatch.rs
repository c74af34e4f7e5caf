//! What to do with a request outside any dialog (in-dialog requests and the CANCEL of a
//! ringing call never reach this decision: the SIP stack's dialog and invite layers take them).

/// The decision for one out-of-dialog request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dispatch {
    /// An INVITE without To-tag: a new call ([`crate::call::CallCore`]).
    NewCall,
    /// OPTIONS: 200 with Allow and Accept (RFC 3261 11.2).
    Options,
    /// Left to the stack: a stray ACK is dropped; BYE, CANCEL, INFO, UPDATE, PRACK and re-INVITE
    /// for unknown dialogs or transactions get 481 from the stack (INFO outside a call: RFC 6086
    /// 4.2.2; an UPDATE before the call is answered too: early-dialog UPDATE is not supported; a
    /// PRACK matching no reliable provisional response: RFC 3262 §3).
    Stack,
    /// Any other method: 405 with Allow (RFC 3261 8.2.1).
    MethodNotAllowed,
}

/// `method` as it appears on the request line; `has_to_tag` for the To header.
pub fn dispatch(method: &str, has_to_tag: bool) -> Dispatch {
    match method {
        "INVITE" if !has_to_tag => Dispatch::NewCall,
        "OPTIONS" => Dispatch::Options,
        "INVITE" | "ACK" | "BYE" | "CANCEL" | "INFO" | "UPDATE" | "PRACK" => Dispatch::Stack,
        _ => Dispatch::MethodNotAllowed,
    }
}

/// A request as it was received, for what the SIP stack's lenient parsing lets through: the
/// stack reads methods case-insensitively, allows any whitespace in the request line, takes
/// one of several Content-Length values and any display name.
#[derive(Debug, Clone, Default)]
pub struct RawRequest<'a> {
    /// The message as received.
    pub bytes: &'a [u8],
    /// The CSeq header's value as written.
    pub cseq: &'a str,
    /// Every Content-Length value as written (each header).
    pub content_lengths: Vec<&'a str>,
    /// The From and To values as written, each with its header name.
    pub name_addrs: Vec<(&'static str, &'a str)>,
}

impl RawRequest<'_> {
    /// The request line (line ends before it skipped, its own CR LF or LF not included).
    fn line(&self) -> &[u8] {
        let raw = self.bytes;
        let start = raw
            .iter()
            .position(|b| !matches!(b, b'\r' | b'\n'))
            .unwrap_or(raw.len());
        let rest = &raw[start..];
        let line = &rest[..rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len())];
        line.strip_suffix(b"\r").unwrap_or(line)
    }

    /// The method as written on the request line: methods are case-sensitive (RFC 3261 7.1),
    /// so `invite` is an extension method, not INVITE.
    pub fn method(&self) -> &str {
        let line = self.line();
        let end = line.iter().position(|&b| b == b' ').unwrap_or(line.len());
        std::str::from_utf8(&line[..end]).unwrap_or("")
    }

    /// The CSeq method as written.
    fn cseq_method(&self) -> &str {
        self.cseq.split_whitespace().nth(1).unwrap_or("")
    }
}

/// Why a request that reached this layer is malformed before any method-specific look, if it
/// is. The caller answers 400 with the reason (an ACK is never answered: it is dropped).
///
/// - The request line must be exactly `Method SP Request-URI SP SIP-Version` (RFC 3261 25.1):
///   one space between the three parts, none before or after, no other whitespace or control
///   character.
/// - The CSeq method must be the request line's, case included (8.1.1.5).
/// - Every `Content-Length` value must be digits, and all the same (20.14, 7.5: one value
///   frames one body).
/// - A From or To display name must be a quoted string or tokens (25.1 `display-name`).
pub fn malformed(r: &RawRequest) -> Option<String> {
    request_line_problem(r.line())
        .or_else(|| {
            let (method, cseq_method) = (r.method(), r.cseq_method());
            (method != cseq_method).then(|| {
                format!(
                    "CSeq method {cseq_method} differs from the request line's {method} \
                     (RFC 3261 8.1.1.5)"
                )
            })
        })
        .or_else(|| content_length_problem(&r.content_lengths))
        .or_else(|| {
            r.name_addrs
                .iter()
                .find_map(|(name, value)| display_name_problem(name, value))
        })
}

/// The request line against RFC 3261 25.1 (see [`malformed`]).
fn request_line_problem(line: &[u8]) -> Option<String> {
    if let Some(bad) = line.iter().find(|&&b| b != b' ' && (b < 0x21 || b == 0x7f)) {
        return Some(format!(
            "the request line holds the control character 0x{bad:02x} (RFC 3261 25.1)"
        ));
    }
    let parts: Vec<&[u8]> = line.split(|&b| b == b' ').collect();
    if parts.len() != 3 || parts.iter().any(|p| p.is_empty()) {
        return Some(
            "the request line is not Method SP Request-URI SP SIP-Version: one space \
             between its parts, none before or after (RFC 3261 25.1)"
                .to_string(),
        );
    }
    None
}

/// A From or To value's display name against RFC 3261 25.1: `display-name = *(token LWS) /
/// quoted-string` before a `<`. A value without `<` is an addr-spec (no display name).
fn display_name_problem(name: &str, value: &str) -> Option<String> {
    let value = value.trim();
    let open = value.find('<')?;
    let display = value[..open].trim();
    if display.is_empty() || display.starts_with('"') {
        // A quoted string: the stack's parser checks where it ends.
        return None;
    }
    let is_token_char = |c: char| c.is_ascii_alphanumeric() || "-.!%*_+`'~".contains(c);
    let tokens = display
        .split([' ', '\t'])
        .all(|w| w.chars().all(is_token_char));
    (!tokens).then(|| {
        format!(
            "the {name} display name {display:?} is neither tokens nor a quoted string \
             (RFC 3261 25.1)"
        )
    })
}

/// The `Content-Length` values against RFC 3261 20.14 (see [`malformed`]).
fn content_length_problem(values: &[&str]) -> Option<String> {
    let mut seen: Option<&str> = None;
    for v in values.iter().flat_map(|v| v.split(',')).map(str::trim) {
        if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
            return Some(format!(
                "Content-Length '{v}' is not a number of bytes (RFC 3261 20.14)"
            ));
        }
        let v = v.trim_start_matches('0');
        match seen {
            Some(s) if s != v => {
                return Some(format!(
                    "two different Content-Length values, {} and {} (RFC 3261 20.14)",
                    if s.is_empty() { "0" } else { s },
                    if v.is_empty() { "0" } else { v }
                ))
            }
            _ => seen = Some(v),
        }
    }
    None
}

/// Option tags (RFC 3261 19.2) this UAS supports: `100rel` (RFC 3262 reliable provisional
/// responses, with PRACK) and `timer` (RFC 4028 session timers, [`crate::session_timer`]).
pub const SUPPORTED_EXTENSIONS: &[&str] = &["100rel", "timer"];

/// The option tags of a request's `Require` header(s) that we do not support (RFC 3261
/// 8.2.2.3): the request gets 420 (Bad Extension) listing them in `Unsupported`. It applies to
/// what this layer answers itself (a new call, OPTIONS), after the method check (8.2.1 comes
/// first: an unknown method gets 405 whatever it requires); never to ACK or CANCEL, which the
/// stack handles. Tags compare case-insensitively; each unsupported one is listed once.
pub fn unsupported_required<'a>(required: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for tag in required
        .into_iter()
        .map(str::trim)
        .filter(|t| !t.is_empty())
    {
        let supported = SUPPORTED_EXTENSIONS
            .iter()
            .any(|s| s.eq_ignore_ascii_case(tag));
        if !supported && !out.iter().any(|o| o.eq_ignore_ascii_case(tag)) {
            out.push(tag.to_string());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINE: &[u8] = b"INVITE sip:t@h SIP/2.0\r\nVia: x\r\n\r\n";

    /// `bytes` with a CSeq matching its method and nothing else.
    fn raw(bytes: &[u8]) -> RawRequest<'_> {
        RawRequest {
            bytes,
            cseq: "1 INVITE",
            ..RawRequest::default()
        }
    }

    #[test]
    fn the_method_is_as_written() {
        assert_eq!(raw(LINE).method(), "INVITE");
        assert_eq!(raw(b"\r\ninvite sip:t@h SIP/2.0\r\n").method(), "invite");
        assert_eq!(raw(b"").method(), "");
    }

    #[test]
    fn the_cseq_method_must_match_the_request_line() {
        assert_eq!(malformed(&raw(LINE)), None);
        let cseq = |cseq| RawRequest { cseq, ..raw(LINE) };
        let why = malformed(&cseq("1 OPTIONS")).expect("mismatch");
        assert!(why.contains("8.1.1.5"), "{why}");
        assert!(
            malformed(&cseq("1 invite")).is_some(),
            "methods are case-sensitive"
        );
        assert!(malformed(&cseq("1")).is_some(), "no CSeq method");
    }

    #[test]
    fn the_request_line_is_three_parts_one_space_apart() {
        let ok = |bytes: &[u8]| {
            let cseq = format!("1 {}", raw(bytes).method());
            malformed(&RawRequest {
                cseq: &cseq,
                ..raw(bytes)
            })
        };
        assert_eq!(ok(LINE), None);
        assert_eq!(
            ok(b"\r\n\r\nOPTIONS sip:h SIP/2.0\n\n"),
            None,
            "leading CRLF, bare LF"
        );
        assert_eq!(ok(b"OPTIONS sip:h SIP/2.0"), None, "no line end at all");
        for bad in [
            &b"INVITE sip:t@h SIP/2.0 \r\n\r\n"[..],
            b"INVITE  sip:t@h SIP/2.0\r\n",
            b"INVITE sip:t@h  SIP/2.0\r\n",
            b" INVITE sip:t@h SIP/2.0\r\n",
            b"INVITE sip:t@h\tSIP/2.0\r\n",
            b"INVITE sip:t@h SIP/2.0\r\r\n",
            b"INVITE sip:t@h SIP/2.0 extra\r\n",
            b"INVITE sip:t@h\r\n",
            b"",
        ] {
            let why =
                ok(bad).unwrap_or_else(|| panic!("{:?} passed", String::from_utf8_lossy(bad)));
            assert!(why.contains("25.1"), "{why}");
        }
    }

    #[test]
    fn content_length_values_are_digits_and_agree() {
        let cl = |content_lengths: &[&str]| {
            malformed(&RawRequest {
                content_lengths: content_lengths.to_vec(),
                ..raw(LINE)
            })
        };
        assert_eq!(cl(&[]), None);
        assert_eq!(cl(&["0"]), None);
        assert_eq!(cl(&[" 129 ", "129"]), None, "the same value twice");
        assert_eq!(cl(&["0129", "129"]), None, "leading zeros: the same number");
        assert_eq!(cl(&["00", "0"]), None);
        for bad in [&["-1"][..], &["12a"], &[""], &["1e3"], &["+5"]] {
            let why = cl(bad).unwrap_or_else(|| panic!("{bad:?} passed"));
            assert!(why.contains("not a number"), "{why}");
        }
        let why = cl(&["129", "130"]).expect("two values");
        assert!(why.contains("129 and 130"), "{why}");
        assert!(
            cl(&["5, 7"]).is_some(),
            "comma-separated values that differ"
        );
        assert!(cl(&["0", "000", "1"]).unwrap().contains("0 and 1"));
    }

    #[test]
    fn display_names_are_tokens_or_quoted() {
        let from = |value| {
            malformed(&RawRequest {
                name_addrs: vec![("From", value)],
                ..raw(LINE)
            })
        };
        for ok in [
            "<sip:a@h>;tag=1",
            "sip:a@h;tag=1",
            "Caller <sip:a@h>",
            " Caller  Name\t<sip:a@h>",
            "\"Caller@Home \\\"x\\\"\" <sip:a@h>",
            "A.B-c!d%e*f_g+h`i'j~k <sip:a@h>",
        ] {
            assert_eq!(from(ok), None, "{ok}");
        }
        for bad in ["Caller@Home <sip:a@h>", "a,b <sip:a@h>", "x:y <sip:a@h>"] {
            let why = from(bad).unwrap_or_else(|| panic!("{bad} passed"));
            assert!(
                why.contains("From display name") && why.contains("25.1"),
                "{why}"
            );
        }
    }

    #[test]
    fn required_extensions_we_lack_are_listed_once() {
        assert!(unsupported_required([]).is_empty(), "nothing required");
        assert!(unsupported_required(["", " "]).is_empty(), "empty tags");
        assert_eq!(
            unsupported_required([
                "100rel",
                " nonexistent-extension ",
                "100REL",
                "timer",
                "foo"
            ]),
            vec!["nonexistent-extension", "foo"],
            "100rel and timer are supported (RFC 3262, RFC 4028)"
        );
    }

    #[test]
    fn each_method_gets_its_answer() {
        assert_eq!(dispatch("INVITE", false), Dispatch::NewCall);
        assert_eq!(
            dispatch("INVITE", true),
            Dispatch::Stack,
            "re-INVITE of an unknown dialog"
        );
        assert_eq!(dispatch("OPTIONS", false), Dispatch::Options);
        assert_eq!(dispatch("OPTIONS", true), Dispatch::Options);
        for m in ["ACK", "BYE", "CANCEL", "INFO", "UPDATE", "PRACK"] {
            assert_eq!(dispatch(m, true), Dispatch::Stack, "{m}");
        }
        assert_eq!(
            dispatch("PRACK", false),
            Dispatch::Stack,
            "481: nothing to acknowledge"
        );
        assert_eq!(dispatch("INFO", false), Dispatch::Stack, "481: no call");
        assert_eq!(dispatch("UPDATE", false), Dispatch::Stack, "481: no call");
        for m in ["REGISTER", "SUBSCRIBE", "MESSAGE", "FOO"] {
            assert_eq!(dispatch(m, false), Dispatch::MethodNotAllowed, "{m}");
        }
    }
}
