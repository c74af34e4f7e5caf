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

#[cfg(test)]
mod tests {
    use super::*;

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
