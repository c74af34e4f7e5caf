use bytes::Bytes;
use internal::Finish;
use sip_types::Headers;
use sip_types::header::typed::ContentLength;
use sip_types::msg::{Line, MessageLine, PullParser};
use sip_types::parse::Parse;
use std::str::from_utf8;
use stun_types::{Message, is_stun_message};

#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    #[error("the given input was invalid in this context and couldn't be parsed")]
    FailedToParse,
}

pub(crate) enum CompleteItem {
    KeepAliveRequest,
    KeepAliveResponse,
    Stun(Message),
    /// PATCH(milliwatt): a request whose start line names a SIP version or a Request-URI
    /// scheme this stack does not support (see [`Refused`])
    Refused(Refused),
    Sip {
        line: MessageLine,
        headers: Headers,
        body: Bytes,
        buffer: Bytes,
    },
}

/// PATCH(milliwatt): a request the parser cannot represent but RFC 3261 answers: a SIP version
/// other than 2.0 (505 Version Not Supported, 21.5.7) or a Request-URI scheme other than sip
/// and sips (416 Unsupported URI Scheme, 8.2.2.1). Its headers are parsed as usual so that the
/// endpoint can answer it statelessly (`Endpoint::receive_refused`).
pub(crate) struct Refused {
    pub code: sip_types::StatusCode,
    pub reason: String,
    pub headers: Headers,
}

/// PATCH(milliwatt): the answer to a request line the parser rejected, if it deserves one:
/// `Method SP Request-URI SP SIP/x.y` whose method is a token other than ACK (an ACK is never
/// answered) and whose version is not 2.0 (505), or whose version is 2.0 and whose URI has
/// another scheme than sip or sips (416).
pub(crate) fn refusal_for(line: &str) -> Option<(sip_types::StatusCode, String)> {
    let mut parts = line.split(' ');
    let (method, uri, version) = (parts.next()?, parts.next()?, parts.next()?);
    let is_token = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b))
    };
    if parts.next().is_some() || !is_token(method) || method == "ACK" || uri.is_empty() {
        return None;
    }
    let number = version
        .get(..4)
        .filter(|sip| sip.eq_ignore_ascii_case("SIP/"))
        .map(|_| &version[4..])?;
    let (major, minor) = number.split_once('.')?;
    if major.is_empty()
        || minor.is_empty()
        || !major.bytes().chain(minor.bytes()).all(|b| b.is_ascii_digit())
    {
        return None;
    }
    if major.trim_start_matches('0') != "2" || !minor.bytes().all(|b| b == b'0') {
        return Some((
            sip_types::StatusCode::VERSION_NOT_SUPPORTED,
            format!("Version Not Supported ({version})"),
        ));
    }
    let (scheme, rest) = uri.split_once(':')?;
    // scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )
    let scheme_ok = scheme.bytes().next().is_some_and(|b| b.is_ascii_alphabetic())
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b));
    if !scheme_ok || rest.is_empty() {
        return None;
    }
    if scheme.eq_ignore_ascii_case("sip") || scheme.eq_ignore_ascii_case("sips") {
        return None;
    }
    Some((
        sip_types::StatusCode::UNSUPPORTED_URI_SCHEME,
        format!("Unsupported URI Scheme ({scheme})"),
    ))
}

pub(crate) fn parse_complete(bytes: &[u8]) -> Result<CompleteItem, Error> {
    if bytes == b"\r\n\r\n" {
        return Ok(CompleteItem::KeepAliveRequest);
    } else if bytes == b"\r\n" {
        return Ok(CompleteItem::KeepAliveResponse);
    }

    match is_stun_message(bytes) {
        stun_types::IsStunMessageInfo::TooShort
        | stun_types::IsStunMessageInfo::YesIncomplete { needed: _ } => Err(Error::FailedToParse),
        stun_types::IsStunMessageInfo::Yes { len } => parse_complete_stun(&bytes[..len]),
        stun_types::IsStunMessageInfo::No => parse_complete_sip(bytes),
    }
}

fn parse_complete_stun(bytes: &[u8]) -> Result<CompleteItem, Error> {
    let msg = match Message::parse(bytes) {
        Ok(msg) => msg,
        Err(e) => {
            log::warn!("failed to parse complete stun message, {e}");
            return Err(Error::FailedToParse);
        }
    };

    Ok(CompleteItem::Stun(msg))
}

fn parse_complete_sip(bytes: &[u8]) -> Result<CompleteItem, Error> {
    let buffer = Bytes::copy_from_slice(bytes);

    let mut parser = PullParser::new(&buffer, 0);

    let mut message_line = None;
    let mut headers = Headers::new();
    // PATCH(milliwatt): the answer to a start line the parser rejected, see `refusal_for`
    let mut refused = None;

    // PATCH(milliwatt): where the last line ends, for `head_end`
    let mut last_line_end = None;
    loop {
        let begin = parser.progress();
        let Some(item) = parser.next() else {
            break;
        };
        let line = match item {
            Ok(line) => {
                last_line_end = Some(begin + line.len());
                line
            }
            Err(_) => {
                log::warn!("Incoming SIP messages is incomplete");
                return Err(Error::FailedToParse);
            }
        };

        let line = from_utf8(line).map_err(|_| {
            log::warn!("Incoming SIP message contained invalid UTF8 in header line");
            Error::FailedToParse
        })?;

        if message_line.is_none() && refused.is_none() {
            match MessageLine::parse(&buffer)(line) {
                Ok((_, line)) => {
                    message_line = Some(line);
                }
                Err(_) if refusal_for(line).is_some() => refused = refusal_for(line),
                Err(_) => {
                    log::warn!(
                        "Incoming SIP message contained invalid Request/Status Line: {line:?}"
                    );
                    return Err(Error::FailedToParse);
                }
            }
        } else {
            match Line::parse(&buffer, line).finish() {
                Ok((_, line)) => headers.insert(line.name, line.value),
                Err(e) => {
                    log::error!("Incoming SIP message has malformed header line, {e}");
                    return Err(Error::FailedToParse);
                }
            }
        }
    }

    if let Some((code, reason)) = refused {
        return Ok(CompleteItem::Refused(Refused {
            code,
            reason,
            headers,
        }));
    }

    let head_end = head_end(&buffer, parser.progress(), last_line_end);

    // look for optional content-length header
    let body = match headers.get_named::<ContentLength>() {
        Ok(len) => {
            if len.0 == 0 {
                Bytes::new()
            } else if buffer.len() >= head_end + len.0 {
                buffer.slice(head_end..head_end + len.0)
            } else {
                log::warn!("Incoming SIP message has an incomplete body");
                return Err(Error::FailedToParse);
            }
        }
        Err(_) => {
            log::trace!("no valid content-length given, guessing body length from udp frame");

            if head_end == buffer.len() {
                Bytes::new()
            } else {
                buffer.slice(head_end..)
            }
        }
    };

    Ok(CompleteItem::Sip {
        line: message_line.ok_or(Error::FailedToParse)?,
        headers,
        body,
        buffer,
    })
}

/// PATCH(milliwatt): where a message head ends (after its empty line), given where a
/// `PullParser` that returned `None` stopped and where the last line it returned ends. The
/// parser stops either at the last line's end (when the empty line follows in the same style:
/// CRLF CRLF, LF LF) or at the empty line itself (mixed: LF CRLF, CRLF LF);
/// `PullParser::head_end` knows only the first case and left a mixed empty line at the start
/// of the body (the body was then sliced 1 or 2 bytes early).
pub(crate) fn head_end(input: &[u8], stopped_at: usize, last_line_end: Option<usize>) -> usize {
    let mut at = stopped_at;
    if last_line_end == Some(at) {
        at = skip_line_end(input, at);
    }
    skip_line_end(input, at)
}

/// The position after a line end (CRLF or a bare LF) at `at`, or `at`.
fn skip_line_end(input: &[u8], at: usize) -> usize {
    match input[at..] {
        [b'\r', b'\n', ..] => at + 2,
        [b'\n', ..] => at + 1,
        _ => at,
    }
}
