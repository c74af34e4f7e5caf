//! What to do with a request outside any dialog (in-dialog requests and the CANCEL of a
//! ringing call never reach this decision: the SIP stack's dialog and invite layers take them).

/// The decision for one out-of-dialog request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dispatch {
    /// An INVITE without To-tag: a new call ([`crate::call::CallCore`]).
    NewCall,
    /// OPTIONS: 200 with Allow and Accept (RFC 3261 11.2).
    Options,
    /// Left to the stack: a stray ACK is dropped; BYE, CANCEL and re-INVITE for unknown dialogs
    /// or transactions get 481 from the stack.
    Stack,
    /// Any other method: 405 with Allow (RFC 3261 8.2.1).
    MethodNotAllowed,
}

/// `method` as it appears on the request line; `has_to_tag` for the To header.
pub fn dispatch(method: &str, has_to_tag: bool) -> Dispatch {
    match method {
        "INVITE" if !has_to_tag => Dispatch::NewCall,
        "OPTIONS" => Dispatch::Options,
        "INVITE" | "ACK" | "BYE" | "CANCEL" => Dispatch::Stack,
        _ => Dispatch::MethodNotAllowed,
    }
}

/// Why a request that reached this layer is malformed before any method-specific look, if it
/// is: RFC 3261 8.1.1.5 requires the CSeq method to match the request line's. The caller
/// answers 400 (an ACK is never answered: it is dropped).
pub fn malformed(method: &str, cseq_method: &str) -> Option<String> {
    (method != cseq_method).then(|| {
        format!(
            "CSeq method {cseq_method} differs from the request line's {method} (RFC 3261 8.1.1.5)"
        )
    })
}

/// Option tags (RFC 3261 19.2) this UAS supports. None yet: `100rel` (RFC 3262) and `timer`
/// (RFC 4028) come with the call shapes that need them.
pub const SUPPORTED_EXTENSIONS: &[&str] = &[];

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

    #[test]
    fn the_cseq_method_must_match_the_request_line() {
        assert_eq!(malformed("INVITE", "INVITE"), None);
        assert_eq!(malformed("OPTIONS", "OPTIONS"), None);
        let why = malformed("OPTIONS", "INVITE").expect("mismatch");
        assert!(why.contains("8.1.1.5"), "{why}");
        assert!(
            malformed("INVITE", "invite").is_some(),
            "methods are case-sensitive"
        );
    }

    #[test]
    fn required_extensions_we_lack_are_listed_once() {
        assert!(unsupported_required([]).is_empty(), "nothing required");
        assert!(unsupported_required(["", " "]).is_empty(), "empty tags");
        assert_eq!(
            unsupported_required(["100rel", " nonexistent-extension ", "100REL", "timer"]),
            vec!["100rel", "nonexistent-extension", "timer"]
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
        for m in ["ACK", "BYE", "CANCEL"] {
            assert_eq!(dispatch(m, true), Dispatch::Stack, "{m}");
        }
        for m in ["REGISTER", "SUBSCRIBE", "MESSAGE", "INFO", "UPDATE", "FOO"] {
            assert_eq!(dispatch(m, false), Dispatch::MethodNotAllowed, "{m}");
        }
    }
}
