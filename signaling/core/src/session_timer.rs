//! Session timers (RFC 4028): what a caller's `Session-Expires`, `Min-SE` and `Supported: timer`
//! ask for, what our 2xx answers, when the refresher must refresh and when the other side ends
//! the call. Pure: header values come in as text, times as durations.
//!
//! The `refresher` parameter names a side relative to the transaction that carries it (`uac`:
//! whoever sent that request), so it is kept here as [`Refresher::Caller`] or [`Refresher::Us`]
//! and written per transaction.

use std::time::Duration;

/// RFC 4028 §4: no session interval is shorter than 90 s; our `Min-SE`.
pub const MIN_SE_SECS: u32 = 90;
/// The longest interval we take (a day): longer ones are answered with this (RFC 4028 §9 lets
/// the UAS reduce the interval).
pub const MAX_SE_SECS: u32 = 86_400;

/// Who sends the refreshes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refresher {
    Caller,
    Us,
}

/// What a request says about session timers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TimerFacts {
    /// `Supported: timer` (or `Require: timer`).
    pub supported: bool,
    /// `Session-Expires`: the interval and the `refresher` parameter as written (`uac` is the
    /// request's sender).
    pub session_expires: Option<(u32, Option<&'static str>)>,
    /// `Min-SE`.
    pub min_se: Option<u32>,
}

/// A header value that is not what RFC 4028 §4 allows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{header}: {value:?} {why}")]
pub struct BadTimerHeader {
    pub header: &'static str,
    pub value: String,
    pub why: &'static str,
}

fn delta(header: &'static str, value: &str) -> Result<u32, BadTimerHeader> {
    let v = value.trim();
    // delta-seconds (RFC 3261 25.1): digits; a value past 2^32-1 is taken as the largest.
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(BadTimerHeader {
            header,
            value: value.into(),
            why: "is not delta-seconds",
        });
    }
    Ok(v.parse().unwrap_or(u32::MAX))
}

/// Whether the raw values of `Supported`/`Require` headers (comma-separated option tags) name
/// `tag` (case-insensitive).
pub fn has_option_tag<'a>(values: impl IntoIterator<Item = &'a str>, tag: &str) -> bool {
    values
        .into_iter()
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(tag))
}

impl TimerFacts {
    /// From the raw values of a request's `Supported`/`Require` option tags, `Session-Expires`
    /// (`x`) and `Min-SE`. A malformed value is an error (the request gets 400).
    pub fn parse<'a>(
        option_tags: impl IntoIterator<Item = &'a str>,
        session_expires: Option<&str>,
        min_se: Option<&str>,
    ) -> Result<TimerFacts, BadTimerHeader> {
        let supported = has_option_tag(option_tags, "timer");
        let session_expires = match session_expires {
            None => None,
            Some(v) => {
                let mut parts = v.split(';');
                let secs = delta("Session-Expires", parts.next().unwrap_or(""))?;
                let mut refresher = None;
                for p in parts {
                    let (name, value) = p.split_once('=').unwrap_or((p, ""));
                    if name.trim().eq_ignore_ascii_case("refresher") {
                        refresher = Some(match value.trim().to_ascii_lowercase().as_str() {
                            "uac" => "uac",
                            "uas" => "uas",
                            _ => {
                                return Err(BadTimerHeader {
                                    header: "Session-Expires",
                                    value: v.into(),
                                    why: "has a refresher that is neither uac nor uas",
                                })
                            }
                        });
                    }
                }
                Some((secs, refresher))
            }
        };
        let min_se = min_se.map(|v| delta("Min-SE", v)).transpose()?;
        Ok(TimerFacts {
            supported,
            session_expires,
            min_se,
        })
    }
}

/// A session timer in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionTimer {
    pub interval_secs: u32,
    pub refresher: Refresher,
    /// The caller supports `timer`: our 2xx says `Require: timer`.
    pub caller_supports: bool,
}

/// The request's interval is below our `Min-SE`: answer 422 with `Min-SE: MIN_SE_SECS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooSmall {
    pub asked: u32,
}

/// What a request (the INVITE, or a refresh from the caller) leads to: no timer, a timer, or
/// 422. `current` is the timer in force (for a refresh): a refresh without `Session-Expires`
/// keeps it (we may ask for a timer in a 2xx, RFC 4028 §9). We never raise the interval, and
/// lower it only to [`MAX_SE_SECS`]; the refresher is the request's when it names one, the
/// caller when it supports timers and names none, and us when it does not support them (a
/// proxy put the header in, RFC 4028 §9 table 2).
pub fn negotiate(
    facts: &TimerFacts,
    current: Option<SessionTimer>,
) -> Result<Option<SessionTimer>, TooSmall> {
    let Some((asked, named)) = facts.session_expires else {
        return Ok(current.map(|t| SessionTimer {
            caller_supports: facts.supported,
            ..t
        }));
    };
    if asked < MIN_SE_SECS {
        return Err(TooSmall { asked });
    }
    let refresher = match (facts.supported, named) {
        (false, _) => Refresher::Us,
        (true, Some("uas")) => Refresher::Us,
        (true, _) => Refresher::Caller,
    };
    Ok(Some(SessionTimer {
        interval_secs: asked.min(MAX_SE_SECS),
        refresher,
        caller_supports: facts.supported,
    }))
}

impl SessionTimer {
    /// The `Session-Expires` value of our 2xx to a caller's request (the caller is its `uac`).
    pub fn response_header(&self) -> String {
        let who = match self.refresher {
            Refresher::Caller => "uac",
            Refresher::Us => "uas",
        };
        format!("{};refresher={who}", self.interval_secs)
    }

    /// The `Session-Expires` value of a refresh we send (we are its `uac`).
    pub fn request_header(&self) -> String {
        format!("{};refresher=uac", self.interval_secs)
    }

    /// After a refresh (or the ACK), when to act: the refresher refreshes at half the interval
    /// (RFC 4028 §7.4); the other side ends the call when no refresh came, the minimum of 32 s
    /// and a third of the interval before it expires (§10).
    pub fn due_after(&self) -> Duration {
        let i = u64::from(self.interval_secs);
        Duration::from_secs(match self.refresher {
            Refresher::Us => i / 2,
            Refresher::Caller => i - (i / 3).min(32),
        })
    }

    /// The timer after a 2xx to our refresh: its `Session-Expires` (if any; `uac` is us) sets
    /// the interval and refresher; none keeps ours.
    pub fn after_our_refresh(&self, session_expires: Option<(u32, Option<&str>)>) -> SessionTimer {
        match session_expires {
            Some((secs, who)) if secs >= MIN_SE_SECS => SessionTimer {
                interval_secs: secs.min(MAX_SE_SECS),
                refresher: if who == Some("uas") {
                    Refresher::Caller
                } else {
                    Refresher::Us
                },
                ..*self
            },
            _ => *self,
        }
    }
}

/// How we refresh: UPDATE without a body when the caller allows UPDATE (RFC 4028 §7.4 prefers
/// it: no offer/answer), otherwise a re-INVITE offering the media we have.
pub fn refresh_with_update(caller_allows: &[&str]) -> bool {
    // `Allow` is a comma-separated list like the option tags.
    has_option_tag(caller_allows.iter().copied(), "UPDATE")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(tags: &[&str], se: Option<&str>, min_se: Option<&str>) -> TimerFacts {
        TimerFacts::parse(tags.iter().copied(), se, min_se).unwrap()
    }

    #[test]
    fn headers_parse_and_bad_ones_are_named() {
        let f = facts(&["100rel, Timer"], Some("1800 ; refresher=UAS"), Some("90"));
        assert_eq!(
            f,
            TimerFacts {
                supported: true,
                session_expires: Some((1800, Some("uas"))),
                min_se: Some(90),
            }
        );
        assert_eq!(
            facts(&[], Some("90;foo=bar"), None).session_expires,
            Some((90, None))
        );
        assert!(!facts(&["100rel"], None, None).supported);
        for (se, min_se, header) in [
            (Some("abc"), None, "Session-Expires"),
            (Some(""), None, "Session-Expires"),
            (Some("90;refresher=proxy"), None, "Session-Expires"),
            (None, Some("-1"), "Min-SE"),
        ] {
            let e = TimerFacts::parse([], se, min_se).unwrap_err();
            assert_eq!(e.header, header, "{e}");
        }
    }

    #[test]
    fn the_refresher_and_interval_follow_rfc_4028_table_2() {
        let t = |tags: &[&str], se| negotiate(&facts(tags, se, None), None);
        // Supported: timer and refresher=uac / none / uas.
        for (se, who) in [
            ("90;refresher=uac", Refresher::Caller),
            ("90", Refresher::Caller),
            ("90;refresher=uas", Refresher::Us),
        ] {
            let timer = t(&["timer"], Some(se)).unwrap().unwrap();
            assert_eq!((timer.interval_secs, timer.refresher), (90, who), "{se}");
            assert!(timer.caller_supports);
        }
        // No support (a proxy added the header): we refresh, and our 2xx requires nothing.
        let timer = t(&[], Some("1800;refresher=uac")).unwrap().unwrap();
        assert_eq!(timer.refresher, Refresher::Us);
        assert!(!timer.caller_supports);
        assert_eq!(timer.response_header(), "1800;refresher=uas");
        // Too small: 422; none asked: none.
        assert_eq!(t(&["timer"], Some("89")), Err(TooSmall { asked: 89 }));
        assert_eq!(t(&["timer"], None), Ok(None));
        // Never raised, lowered to a day at most.
        let long = t(&["timer"], Some("4294967295")).unwrap().unwrap();
        assert_eq!(long.interval_secs, MAX_SE_SECS);
    }

    #[test]
    fn a_refresh_without_session_expires_keeps_the_timer() {
        let current = negotiate(&facts(&["timer"], Some("120"), None), None)
            .unwrap()
            .unwrap();
        assert_eq!(
            negotiate(&facts(&["timer"], None, None), Some(current)),
            Ok(Some(current))
        );
        let shorter = negotiate(&facts(&["timer"], Some("100"), None), Some(current))
            .unwrap()
            .unwrap();
        assert_eq!(shorter.interval_secs, 100);
    }

    #[test]
    fn refreshes_come_at_half_and_the_bye_before_expiry() {
        let timer = |secs, refresher| SessionTimer {
            interval_secs: secs,
            refresher,
            caller_supports: true,
        };
        assert_eq!(
            timer(90, Refresher::Us).due_after(),
            Duration::from_secs(45)
        );
        // min(32, SE/3) before expiry: 30 s of 90, 32 s of 1800.
        assert_eq!(
            timer(90, Refresher::Caller).due_after(),
            Duration::from_secs(60)
        );
        assert_eq!(
            timer(1800, Refresher::Caller).due_after(),
            Duration::from_secs(1768)
        );
        assert_eq!(
            timer(90, Refresher::Us).request_header(),
            "90;refresher=uac"
        );
        assert_eq!(
            timer(90, Refresher::Caller).response_header(),
            "90;refresher=uac"
        );
        // The caller's 2xx to our refresh: refresher=uac is us, uas the caller.
        let ours = timer(90, Refresher::Us);
        assert_eq!(
            ours.after_our_refresh(Some((120, Some("uac")))).refresher,
            Refresher::Us
        );
        let theirs = ours.after_our_refresh(Some((120, Some("uas"))));
        assert_eq!(
            (theirs.interval_secs, theirs.refresher),
            (120, Refresher::Caller)
        );
        assert_eq!(ours.after_our_refresh(None), ours);
    }

    #[test]
    fn we_refresh_with_update_when_the_caller_allows_it() {
        assert!(refresh_with_update(&["INVITE, ACK, BYE, update"]));
        assert!(refresh_with_update(&["INVITE", "UPDATE"]));
        assert!(!refresh_with_update(&["INVITE, ACK, BYE"]));
        assert!(!refresh_with_update(&[]));
    }
}
