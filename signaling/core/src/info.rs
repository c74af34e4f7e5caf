//! What an INFO request inside a call gets (RFC 6086, legacy usage without `Info-Package`):
//! DTMF as `application/dtmf-relay` (`Signal=5` / `Duration=160`, the form SIP trunks and
//! gateways send) or `application/dtmf` (the digit alone), reported like an RFC 4733 digit; an
//! empty INFO (a keep-alive some callers send) is accepted; any other body gets 415 with the
//! types we accept.

use std::fmt;

/// The body types an INFO may carry, for `Accept` in a 415.
pub const ACCEPTED_INFO_TYPES: &str = "application/dtmf-relay, application/dtmf";

/// A DTMF digit as RFC 4733 names them: 0-9, `*`, `#`, A-D.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InfoDigit {
    pub digit: char,
    /// As the caller said, in ms; `None` when the body gave none.
    pub duration_ms: Option<u32>,
}

/// The answer to an INFO, and the digit it carried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InfoAnswer {
    /// 200: a DTMF digit.
    Digit(InfoDigit),
    /// 200: nothing to report (no body).
    Empty,
    /// 415 with `Accept` ([`ACCEPTED_INFO_TYPES`]): the body type named.
    UnsupportedType(String),
    /// 400 with this reason: a DTMF body we cannot read.
    Malformed(String),
}

impl fmt::Display for InfoAnswer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InfoAnswer::Digit(d) => write!(f, "DTMF digit {}", d.digit),
            InfoAnswer::Empty => f.write_str("no body"),
            InfoAnswer::UnsupportedType(t) => write!(f, "unsupported body type {t}"),
            InfoAnswer::Malformed(why) => f.write_str(why),
        }
    }
}

/// The longest digit a caller may claim, in ms (a minute: anything longer is a broken body).
const MAX_DURATION_MS: u32 = 60_000;

/// `content_type` as in the request (parameters and case allowed), `body` as received.
pub fn answer_info(content_type: Option<&str>, body: &[u8]) -> InfoAnswer {
    let body = match std::str::from_utf8(body) {
        Ok(b) => b.trim(),
        Err(_) => return InfoAnswer::Malformed("INFO body is not UTF-8 text".into()),
    };
    let media_type = content_type
        .map(|t| {
            t.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default();
    if body.is_empty() {
        return InfoAnswer::Empty;
    }
    match media_type.as_str() {
        "application/dtmf-relay" => dtmf_relay(body),
        "application/dtmf" => match digit(body) {
            Some(digit) => InfoAnswer::Digit(InfoDigit {
                digit,
                duration_ms: None,
            }),
            None => InfoAnswer::Malformed(format!("application/dtmf body {body:?} is not a digit")),
        },
        "" => InfoAnswer::UnsupportedType("(no Content-Type)".into()),
        other => InfoAnswer::UnsupportedType(other.to_string()),
    }
}

/// `Signal=<digit>` and an optional `Duration=<ms>`, one per line, names case-insensitive,
/// spaces around `=` allowed; other lines are ignored.
fn dtmf_relay(body: &str) -> InfoAnswer {
    let mut signal = None;
    let mut duration_ms = None;
    for line in body.lines() {
        let Some((name, value)) = line.split_once('=') else {
            continue;
        };
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "signal" => match digit(value) {
                Some(d) => signal = Some(d),
                None => {
                    return InfoAnswer::Malformed(format!(
                        "dtmf-relay Signal {value:?} is not a DTMF digit (0-9, *, #, A-D)"
                    ))
                }
            },
            "duration" => match value.parse::<u32>() {
                Ok(ms) if ms <= MAX_DURATION_MS => duration_ms = Some(ms),
                _ => {
                    return InfoAnswer::Malformed(format!(
                        "dtmf-relay Duration {value:?} is not 0..{MAX_DURATION_MS} ms"
                    ))
                }
            },
            _ => {}
        }
    }
    match signal {
        Some(digit) => InfoAnswer::Digit(InfoDigit { digit, duration_ms }),
        None => InfoAnswer::Malformed("dtmf-relay body without Signal=".into()),
    }
}

/// One DTMF digit: 0-9, `*`, `#`, A-D (a-d taken as A-D); RFC 4733 events 10 and 11 are the
/// same `*` and `#`, which some gateways write as their numbers.
fn digit(s: &str) -> Option<char> {
    match s {
        "10" => return Some('*'),
        "11" => return Some('#'),
        _ => {}
    }
    let mut chars = s.chars();
    let c = chars.next()?.to_ascii_uppercase();
    (chars.next().is_none() && matches!(c, '0'..='9' | '*' | '#' | 'A'..='D')).then_some(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digit_of(ct: &str, body: &str) -> InfoAnswer {
        answer_info(Some(ct), body.as_bytes())
    }

    #[test]
    fn dtmf_relay_bodies_as_gateways_send_them() {
        assert_eq!(
            digit_of("application/dtmf-relay", "Signal=5\r\nDuration=160\r\n"),
            InfoAnswer::Digit(InfoDigit {
                digit: '5',
                duration_ms: Some(160)
            })
        );
        assert_eq!(
            digit_of(
                "Application/DTMF-Relay; charset=utf-8",
                "signal = #\nDURATION= 250"
            ),
            InfoAnswer::Digit(InfoDigit {
                digit: '#',
                duration_ms: Some(250)
            })
        );
        assert_eq!(
            digit_of("application/dtmf-relay", "Signal=11\r\n"),
            InfoAnswer::Digit(InfoDigit {
                digit: '#',
                duration_ms: None
            })
        );
        assert_eq!(
            digit_of(
                "application/dtmf-relay",
                "Signal=d\r\nDuration=100\r\nX-Extra=1"
            ),
            InfoAnswer::Digit(InfoDigit {
                digit: 'D',
                duration_ms: Some(100)
            })
        );
        assert_eq!(
            digit_of("application/dtmf", "*"),
            InfoAnswer::Digit(InfoDigit {
                digit: '*',
                duration_ms: None
            })
        );
    }

    #[test]
    fn bad_dtmf_bodies_say_why() {
        for (ct, body, why) in [
            ("application/dtmf-relay", "Signal=E\r\n", "Signal \"E\""),
            ("application/dtmf-relay", "Signal=12\r\n", "Signal \"12\""),
            (
                "application/dtmf-relay",
                "Duration=100\r\n",
                "without Signal",
            ),
            (
                "application/dtmf-relay",
                "Signal=1\r\nDuration=-5",
                "Duration \"-5\"",
            ),
            (
                "application/dtmf-relay",
                "Signal=1\r\nDuration=60001",
                "Duration",
            ),
            ("application/dtmf", "55", "\"55\""),
        ] {
            match digit_of(ct, body) {
                InfoAnswer::Malformed(m) => assert!(m.contains(why), "{body:?}: {m}"),
                other => panic!("{body:?}: {other:?}"),
            }
        }
        assert!(matches!(
            answer_info(Some("application/dtmf-relay"), b"Signal=\xff"),
            InfoAnswer::Malformed(_)
        ));
    }

    #[test]
    fn other_bodies_are_refused_and_empty_ones_accepted() {
        assert_eq!(
            digit_of("text/plain", "hello"),
            InfoAnswer::UnsupportedType("text/plain".into())
        );
        assert_eq!(
            answer_info(None, b"Signal=1"),
            InfoAnswer::UnsupportedType("(no Content-Type)".into())
        );
        assert_eq!(answer_info(None, b""), InfoAnswer::Empty);
        assert_eq!(answer_info(Some("text/plain"), b"\r\n"), InfoAnswer::Empty);
    }
}
