//! One incoming call as a sans-IO state machine (str0m/quinn style). The SIP shell turns what
//! happens on the wire into [`Event`]s, calls [`CallCore::handle`] with the time, then drains
//! [`CallCore::poll_output`] until it returns `None` and executes each [`Output`]; it sleeps
//! until [`CallCore::poll_timeout`] and feeds [`Event::Timeout`]. Every decision lives here:
//! screening and refusal kinds, ring delay, answer SDP (and its `o=` version across
//! re-INVITEs), tone start and stop, duration, CANCEL races, a lost ACK, media loss, drain.
//! No clock is read and no message is sent here, so every path is tested in simulated time.
//!
//! ```text
//!  new() ─► Trying + Allocate ─► Allocating ──Allocated──► Ringing ──answer time──► Answering
//!                 │                   │                      │                         │ ACK
//!                 ▼                   ▼ (refuse 503/500)     ▼ CANCEL (487)            ▼
//!              Refuse              Ended ◄───────────────── Ended ◄──── BYE/timer ── Confirmed
//! ```

use std::collections::VecDeque;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::session_timer::{self, BadTimerHeader, Refresher, SessionTimer, TimerFacts};
use milliwatt_media_core::session::ToneRequest;
use milliwatt_media_core::Codec;

use crate::sdp::{self, Negotiated, SdpError};

/// Seconds a 503 asks the caller to wait (`Retry-After`).
pub const RETRY_AFTER_SECS: u32 = 5;
/// Media stops the tone by itself this long after our own hangup time (a safety net for a
/// signaling instance that vanishes; normally our BYE and release come first).
pub const MEDIA_SAFETY_MARGIN: Duration = Duration::from_secs(5);

/// What every call of this instance does (from configuration).
#[derive(Debug, Clone)]
pub struct Settings {
    /// Time between 180 Ringing and 200 OK; `None` rings until the caller cancels.
    pub answer_after: Option<Duration>,
    /// Tone time between the ACK and our BYE.
    pub tone: Duration,
    pub tone_frequency_hz: u32,
    pub tone_level_dbm0: f64,
    pub preferred_codecs: Vec<Codec>,
    pub enable_dtmf: bool,
    /// The tone waits for the caller's first RTP packet (`media.rtp_start = "on_caller_rtp"`).
    pub wait_for_caller_rtp: bool,
    /// Offers naming a private address get 488 (`media.refuse_private_destinations`).
    pub refuse_private_destinations: bool,
    pub max_concurrent_calls: u32,
    /// Host names a Request-URI may carry (IP literals are always accepted).
    pub domains: Vec<String>,
    /// Admission by measured load.
    pub overload: crate::overload::Thresholds,
    /// Test plans by dialed number, in order: the first whose number matches the Request-URI
    /// user part gives the call its tone; none: the tone above.
    pub plans: Vec<Plan>,
}

/// What a call plays: the tone and for how long (between the ACK and our BYE).
#[derive(Debug, Clone, PartialEq)]
pub struct Tone {
    pub frequency_hz: u32,
    pub level_dbm0: f64,
    pub duration: Duration,
    /// A second tone, a sweep, a cadence (a plan's; the default tone has none).
    pub shape: milliwatt_media_core::tone::Shape,
    /// The echo test (a plan's): the caller's RTP comes straight back instead of a tone.
    pub echo: bool,
}

/// A test plan (`[[behavior.plans]]`): the numbers it answers and its tone.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Exact, or with `*` for any run of characters.
    pub number: String,
    pub tone: Tone,
    /// The caller may set the tone by Request-URI parameters (`;freq=1000;level=-3;duration=5`).
    pub uri_parameters: bool,
    /// Early media: 183 Session Progress with the SDP answer instead of 180, and the tone from
    /// then on, before (or, without auto answer, instead of) the 200 OK.
    pub early_media: bool,
}

/// Tone parameters of a Request-URI (`sip:tone@host;freq=1000;level=-3;duration=5`), as text.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UriTone<'a> {
    pub freq: Option<&'a str>,
    pub level: Option<&'a str>,
    pub duration: Option<&'a str>,
}

impl UriTone<'_> {
    /// `tone` with these parameters applied: a value that is not a number gets 400, one out of
    /// range 488, each naming the parameter and its range.
    pub fn apply(&self, mut tone: Tone) -> Result<Tone, Refusal> {
        fn num<T: std::str::FromStr>(name: &str, v: &str) -> Result<T, Refusal> {
            v.trim().parse().map_err(|_| {
                Refusal::new(
                    RefusalKind::Malformed,
                    format!("Request-URI parameter {name}={v:?} is not a number"),
                )
            })
        }
        let out_of_range = |name: &str, v: &str, range: &str| {
            Refusal::new(
                RefusalKind::NoAcceptableMedia,
                format!("Request-URI parameter {name}={v} is out of range {range}"),
            )
        };
        if let Some(v) = self.freq {
            let f: u32 = num("freq", v)?;
            if !(1..=3999).contains(&f) {
                return Err(out_of_range("freq", v, "1..3999 Hz"));
            }
            tone.frequency_hz = f;
        }
        if let Some(v) = self.level {
            let l: f64 = num("level", v)?;
            if !(-60.0..=3.0).contains(&l) {
                return Err(out_of_range("level", v, "-60..3 dBm0"));
            }
            tone.level_dbm0 = l;
        }
        if let Some(v) = self.duration {
            let d: u64 = num("duration", v)?;
            if !(1..=86_400).contains(&d) {
                return Err(out_of_range("duration", v, "1..86400 s"));
            }
            tone.duration = Duration::from_secs(d);
        }
        // The plan's shape with the caller's frequency and level (a second tone on the same
        // frequency, or two that would clip together).
        tone.shape
            .check(tone.frequency_hz, tone.level_dbm0)
            .map_err(|e| {
                Refusal::new(
                    RefusalKind::NoAcceptableMedia,
                    format!("Request-URI parameters: the plan's {}", e.reason),
                )
            })?;
        Ok(tone)
    }
}

impl Settings {
    /// The default tone (`[behavior]`).
    pub fn default_tone(&self) -> Tone {
        Tone {
            frequency_hz: self.tone_frequency_hz,
            level_dbm0: self.tone_level_dbm0,
            duration: self.tone,
            shape: Default::default(),
            echo: false,
        }
    }

    /// The plan for a dialed user part: the first that matches.
    pub fn plan_for(&self, user: Option<&str>) -> Option<&Plan> {
        let user = user?;
        self.plans.iter().find(|p| glob(&p.number, user))
    }
}

/// `pattern` matches all of `text`, `*` standing for any run of characters (also none).
pub fn glob(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    // Greedy with backtracking to the last star: linear for patterns with one star.
    let (mut i, mut j, mut star, mut mark) = (0, 0, None, 0);
    while j < t.len() {
        if i < p.len() && p[i] != b'*' && p[i] == t[j] {
            i += 1;
            j += 1;
        } else if i < p.len() && p[i] == b'*' {
            star = Some(i);
            mark = j;
            i += 1;
        } else if let Some(s) = star {
            i = s + 1;
            mark += 1;
            j = mark;
        } else {
            return false;
        }
    }
    p[i..].iter().all(|&c| c == b'*')
}

/// What the shell read from the INVITE (no SIP types cross this wall).
#[derive(Debug, Clone)]
pub struct InviteFacts<'a> {
    pub has_from_tag: bool,
    pub has_contact: bool,
    /// The Request-URI host when it is a name rather than an IP literal.
    pub uri_host_name: Option<&'a str>,
    /// The Request-URI user part (the dialed number), when it has one.
    pub uri_user: Option<&'a str>,
    /// The Request-URI's `freq`, `level` and `duration` parameters, for a plan that takes them.
    pub uri_tone: UriTone<'a>,
    pub content_type: Option<&'a str>,
    pub body: &'a [u8],
    /// Its `Session-Expires`, `Min-SE` and `Supported: timer` (RFC 4028), or why they are
    /// malformed (400).
    pub timer: Result<TimerFacts, BadTimerHeader>,
    /// The caller supports or requires `100rel` (RFC 3262): our 180/183 go reliably.
    pub caller_100rel: bool,
    /// Random key material the shell drew for our SRTP stream (used when the offer is SDES).
    pub srtp_key: [u8; 30],
}

/// The state of this instance when the INVITE arrived.
#[derive(Debug, Clone, Copy, Default)]
pub struct Load {
    pub draining: bool,
    pub media_down: bool,
    /// Calls in progress, this one not counted.
    pub active_calls: u64,
    /// What the shell measured (answer-path queueing, media, event loop).
    pub signals: crate::overload::Signals,
}

/// Why an INVITE is refused before the call is answered; each kind has one status code and
/// one metrics label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalKind {
    Malformed,
    UnknownDomain,
    UnsupportedBody,
    NoAcceptableMedia,
    Draining,
    MediaUnavailable,
    OverCapacity,
    /// Shed by measured load (`[overload]`).
    Overloaded,
    RtpPortsExhausted,
    MediaRefused,
    MediaLost,
    /// `Session-Expires` below our `Min-SE` (RFC 4028): 422 with `Min-SE`.
    SessionIntervalTooSmall,
    /// No PRACK for our reliable provisional response within 64*T1 (RFC 3262 §3: 5xx).
    NoPrack,
}

impl RefusalKind {
    pub fn code(self) -> u16 {
        match self {
            RefusalKind::Malformed => 400,
            RefusalKind::UnknownDomain => 404,
            RefusalKind::UnsupportedBody => 415,
            RefusalKind::SessionIntervalTooSmall => 422,
            RefusalKind::NoAcceptableMedia => 488,
            RefusalKind::MediaRefused | RefusalKind::NoPrack => 500,
            RefusalKind::Draining
            | RefusalKind::MediaUnavailable
            | RefusalKind::OverCapacity
            | RefusalKind::Overloaded
            | RefusalKind::RtpPortsExhausted
            | RefusalKind::MediaLost => 503,
        }
    }

    /// The `reason` label of `milliwatt_calls_failed_total`.
    pub fn label(self) -> &'static str {
        match self {
            RefusalKind::Malformed => "malformed",
            RefusalKind::UnknownDomain => "unknown_domain",
            RefusalKind::UnsupportedBody => "unsupported_body",
            RefusalKind::NoAcceptableMedia => "no_acceptable_media",
            RefusalKind::Draining => "draining",
            RefusalKind::MediaUnavailable => "media_unavailable",
            RefusalKind::OverCapacity => "over_capacity",
            RefusalKind::Overloaded => "overload",
            RefusalKind::RtpPortsExhausted => "rtp_ports_exhausted",
            RefusalKind::MediaRefused => "media_refused",
            RefusalKind::MediaLost => "media_lost",
            RefusalKind::SessionIntervalTooSmall => "session_interval_too_small",
            RefusalKind::NoPrack => "no_prack",
        }
    }

    /// `Retry-After` seconds, for the refusals that are about our state, not the request.
    pub fn retry_after(self) -> Option<u32> {
        (self.code() == 503).then_some(RETRY_AFTER_SECS)
    }
}

/// A refusal: the kind and the text for the `Warning` header and the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub kind: RefusalKind,
    pub reason: String,
}

impl Refusal {
    fn new(kind: RefusalKind, reason: impl Into<String>) -> Refusal {
        Refusal {
            kind,
            reason: reason.into(),
        }
    }
}

/// Why media could not give us an endpoint (the shell maps gRPC statuses to these).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaFailure {
    Unavailable(String),
    PortsExhausted,
    NotFound,
    Refused(String),
}

impl fmt::Display for MediaFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MediaFailure::Unavailable(m) => write!(f, "media service unavailable: {m}"),
            MediaFailure::PortsExhausted => f.write_str("no free RTP port on the media service"),
            MediaFailure::NotFound => f.write_str("media session not found"),
            MediaFailure::Refused(m) => write!(f, "media service refused the request: {m}"),
        }
    }
}

/// The checks that need no dialog: headers, measured load (shed first), Request-URI, body and
/// SDP offer, then drain, media and the call limit. `Ok(None)`: an INVITE without a body, a late
/// offer (RFC 3261 13.2.1): our offer goes in the 200 OK and the caller's answer in the ACK.
pub fn screen(
    s: &Settings,
    invite: &InviteFacts<'_>,
    load: Load,
) -> Result<Option<Negotiated>, Refusal> {
    use RefusalKind::*;
    if !invite.has_from_tag {
        return Err(Refusal::new(Malformed, "From header has no tag"));
    }
    if !invite.has_contact {
        return Err(Refusal::new(Malformed, "missing or invalid Contact header"));
    }
    // Shed first: an overloaded service answers at once and does no other work for the call.
    crate::overload::admit(&s.overload, &load.signals)
        .map_err(|why| Refusal::new(Overloaded, why))?;
    if let Some(name) = invite.uri_host_name {
        if !s.domains.iter().any(|d| d.eq_ignore_ascii_case(name)) {
            return Err(Refusal::new(
                UnknownDomain,
                format!("domain {name} is not served here"),
            ));
        }
    }
    let negotiated = if invite.body.is_empty() {
        None
    } else {
        let is_sdp = invite
            .content_type
            .is_some_and(|c| c.trim().eq_ignore_ascii_case("application/sdp"));
        if !is_sdp {
            return Err(Refusal::new(UnsupportedBody, "body is not application/sdp"));
        }
        let body = std::str::from_utf8(invite.body)
            .map_err(|_| Refusal::new(Malformed, "SDP is not UTF-8"))?;
        let negotiated = negotiate(s, body)?;
        // RFC 3264 8.4 makes c=0.0.0.0 "hold" in a re-offer; an initial offer with it names no
        // one to send to, and is refused like a multicast address (no answer, no session).
        if negotiated.remote.is_none() {
            return Err(Refusal::new(
                NoAcceptableMedia,
                "an initial offer with the unspecified address (c=0.0.0.0) names no destination",
            ));
        }
        Some(negotiated)
    };
    if load.draining {
        return Err(Refusal::new(Draining, "shutting down"));
    }
    if load.media_down {
        return Err(Refusal::new(MediaUnavailable, "media service unavailable"));
    }
    if load.active_calls >= u64::from(s.max_concurrent_calls) {
        return Err(Refusal::new(
            OverCapacity,
            format!(
                "{} calls in progress, max_concurrent_calls reached",
                load.active_calls
            ),
        ));
    }
    Ok(negotiated)
}

fn negotiate(s: &Settings, body: &str) -> Result<Negotiated, Refusal> {
    let n = sdp::negotiate(body, &s.preferred_codecs, s.enable_dtmf).map_err(|e| match e {
        SdpError::Unparseable(r) => {
            Refusal::new(RefusalKind::Malformed, format!("unparseable SDP: {r}"))
        }
        SdpError::NotAcceptable(r) => Refusal::new(RefusalKind::NoAcceptableMedia, r),
    })?;
    if s.refuse_private_destinations {
        let why = n
            .remote
            .and_then(|r| milliwatt_media_core::destination::private(r.ip()));
        if let Some(why) = why {
            return Err(Refusal::new(
                RefusalKind::NoAcceptableMedia,
                format!("c=: {why} (media.refuse_private_destinations)"),
            ));
        }
    }
    Ok(n)
}

/// Why a call ended (logged, and given to media as the release reason).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// Refused before the answer (the [`Refusal`] says why).
    Refused(RefusalKind),
    /// We played the tone for its whole duration and sent BYE.
    ToneFinished,
    /// The caller sent BYE (or the dialog ended under us).
    CallerHungUp,
    /// The caller sent CANCEL before the answer (487).
    CallerCancelled,
    /// No ACK for our 200 OK within 64*T1 (we send BYE).
    NoAck,
    /// The media service lost the session or became unreachable (we send BYE).
    MediaLost,
    /// A late offer's ACK carried no usable SDP answer (none, unparseable, no codec we offered,
    /// or no address): we end the call with BYE.
    BadAnswer,
    /// The drain grace lapsed (we send BYE).
    Shutdown,
    /// The caller was the refresher and no refresh came in time (RFC 4028 §10: we send BYE).
    SessionExpired,
    /// We were the refresher and our refresh failed (we send BYE).
    RefreshFailed,
}

impl EndReason {
    pub fn who_hung_up(self) -> &'static str {
        match self {
            EndReason::CallerHungUp | EndReason::CallerCancelled => "caller",
            _ => "milliwatt",
        }
    }
}

impl fmt::Display for EndReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EndReason::Refused(k) => write!(f, "refused ({})", k.label()),
            EndReason::ToneFinished => f.write_str("tone finished"),
            EndReason::CallerHungUp => f.write_str("caller hung up"),
            EndReason::CallerCancelled => f.write_str("caller cancelled"),
            EndReason::NoAck => f.write_str("no ACK for 200 OK"),
            EndReason::MediaLost => f.write_str("media session lost"),
            EndReason::BadAnswer => f.write_str("no usable SDP answer in the ACK"),
            EndReason::Shutdown => f.write_str("shutdown"),
            EndReason::SessionExpired => {
                f.write_str("session timer expired (no refresh within Session-Expires)")
            }
            EndReason::RefreshFailed => f.write_str("our session refresh failed"),
        }
    }
}

/// What happens on the wire or in media, as the shell saw it.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The time given is at or past [`CallCore::poll_timeout`].
    Timeout,
    /// The dialog could not be created from the INVITE (before 100 Trying went out).
    DialogFailed(String),
    /// Media gave us an endpoint: the address for our SDP.
    Allocated {
        host: String,
        port: u16,
    },
    AllocationFailed(MediaFailure),
    /// CANCEL (the stack answers it 200 and the INVITE 487 when it comes before our 200).
    Cancel,
    /// Our 200 OK could not be sent because a CANCEL won the race.
    AnswerRaced,
    /// Our reliable 180/183 got no PRACK within 64*T1 (RFC 3262 §3).
    NoPrack,
    /// The ACK to our 200 OK; `answer` is its SDP body when it has one (the answer to a late
    /// offer; ignored otherwise).
    Ack {
        answer: Option<String>,
    },
    /// The stack retransmitted our 200 OK until 64*T1 without an ACK.
    AckTimeout,
    Bye,
    /// The dialog ended under us (transport failure, stack error).
    DialogEnded,
    /// A re-INVITE inside the dialog; `offer` is its SDP body, `None` when it has none.
    ReInvite {
        offer: Option<String>,
        timer: TimerFacts,
    },
    /// The ACK to our 200 for a re-INVITE; `answer` is its SDP body (the answer to the offer
    /// our 200 carried when the re-INVITE had none; ignored otherwise).
    ReInviteAck {
        answer: Option<String>,
    },
    /// An UPDATE inside the confirmed dialog (RFC 3311); `offer` is its SDP body, `None` when
    /// it has none (a session refresh: answered 200 without a body).
    Update {
        offer: Option<String>,
        timer: TimerFacts,
    },
    /// Our session refresh (after [`Output::Refresh`]) got a 2xx, with its `Session-Expires`
    /// (`uac`: us), or failed (the status or error).
    Refreshed(Result<Option<(u32, Option<&'static str>)>, String>),
    /// Media lost the session or became unreachable.
    MediaLost,
    /// The drain grace lapsed: end now.
    Shutdown,
}

/// What the shell must do, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Create the dialog and send 100 Trying (on failure feed [`Event::DialogFailed`]).
    Trying,
    /// Ask media for an RTP endpoint (answer with `Allocated`/`AllocationFailed`); with
    /// `rtcp_mux` RTCP shares the RTP port (RFC 5761).
    Allocate { rtcp_mux: bool },
    /// Send 180 Ringing (with To-tag).
    Ringing,
    /// Send 183 Session Progress with this SDP answer (early media); the tone follows.
    Progress { sdp: String },
    /// Refuse the INVITE with a final response (`Retry-After` from the kind).
    Refuse(Refusal),
    /// Send 200 OK with this SDP: the answer, or our offer when the INVITE had none (then feed
    /// `Ack` or `AckTimeout`).
    Answer { sdp: String },
    /// The ACK came: the call is established (counted as answered).
    Established,
    /// Tell media to send the tone.
    StartTone(ToneRequest),
    /// Tell media to stop sending (hold); the session stays.
    StopTone,
    /// Answer the re-INVITE 200 with this SDP.
    AcceptReInvite { sdp: String, send: bool },
    /// Refuse the re-INVITE; the call goes on.
    RefuseReInvite(Refusal),
    /// Answer the UPDATE 200, with this SDP answer when it carried an offer.
    AcceptUpdate { sdp: Option<String>, send: bool },
    /// Refuse the UPDATE's offer; the call goes on with the media it had.
    RefuseUpdate(Refusal),
    /// We are the session refresher and it is time (RFC 4028 §7.4): send UPDATE without a body
    /// when the caller allows it, else a re-INVITE offering `sdp` (our current answer); feed
    /// [`Event::Refreshed`].
    Refresh { sdp: String },
    /// Send BYE.
    SendBye(EndReason),
    /// Release the media session.
    Release(EndReason),
    /// The call is over; nothing follows.
    Finished(Summary),
}

/// The last word on a call, for its log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub reason: EndReason,
    /// From the ACK to the end, if the call was established.
    pub talk: Option<Duration>,
    /// From the INVITE to the end.
    pub age: Duration,
}

#[derive(Debug, Clone, PartialEq)]
enum Phase {
    /// 100 Trying sent, media asked.
    Allocating,
    /// 180 sent; answering at `answer_at` (never without auto answer).
    Ringing {
        answer_at: Option<Instant>,
    },
    /// 200 OK sent; waiting for the ACK. `then` is an end decided meanwhile (media lost,
    /// shutdown): applied when the ACK comes, since a BYE needs a confirmed dialog.
    Answering {
        then: Option<EndReason>,
    },
    /// ACK received; the tone plays until `hangup_at`.
    Confirmed {
        hangup_at: Instant,
    },
    /// Waiting only for media's answer to release what it allocated after we gave up.
    Abandoned,
    Ended,
}

/// The answer SDP of this call: the `o=` session id stays, the version counts changes.
#[derive(Debug, Clone)]
struct SdpState {
    host: String,
    port: u16,
    session_id: u64,
    version: u64,
    /// The last answer sent (at `version`).
    last: String,
}

impl SdpState {
    /// Our answer for `n` at the current version, with `key` when the stream is SRTP.
    fn answer(&self, n: &Negotiated, key: &milliwatt_media_core::srtp::MasterKey) -> String {
        sdp::answer_with_key(
            n,
            &self.host,
            self.port,
            self.session_id,
            self.version,
            Some(key),
        )
    }
}

/// One call. Create it with [`CallCore::new`] for each out-of-dialog INVITE.
#[derive(Debug)]
pub struct CallCore {
    settings: Arc<Settings>,
    phase: Phase,
    started: Instant,
    acked_at: Option<Instant>,
    negotiated: Option<Negotiated>,
    sdp: Option<SdpState>,
    /// Set once the tone has been asked for and not stopped since.
    sending: bool,
    /// Whether media holds a session for us (so the end must release it).
    allocated: bool,
    /// Why the call ended while media was still allocating (see [`Phase::Abandoned`]).
    abandoned: EndReason,
    /// Chosen by the shell (random): the `o=` session id of every answer of this call.
    sdp_session_id: u64,
    /// What this call plays (its plan's tone, or the default).
    tone: Tone,
    /// Our 200 to an offerless re-INVITE carried an offer: its answer comes in the ACK.
    reinvite_offered: bool,
    /// Early media (the plan's): 183 with SDP and the tone before the answer.
    early_media: bool,
    /// Our provisional responses go reliably (RFC 3262: the caller supports or requires it).
    reliable_provisionals: bool,
    /// Our SDES master key, when the stream is SRTP.
    srtp_key: milliwatt_media_core::srtp::MasterKey,
    /// The number of the plan that matched, if any.
    plan: Option<String>,
    /// The session timer in force (RFC 4028), and when it is next due: our refresh, or the
    /// BYE when the caller's did not come. `None` while our refresh is out.
    timer: Option<SessionTimer>,
    timer_due: Option<Instant>,
    out: VecDeque<Output>,
}

impl CallCore {
    /// A call for an INVITE received at `now`: screened at once (the first outputs are either
    /// `Refuse` and `Finished`, or `Trying` and `Allocate`).
    /// `settings` is shared by every call of the instance (an `Arc`: cloning the settings
    /// copied the plans, codecs and domains for every call).
    pub fn new(
        settings: impl Into<Arc<Settings>>,
        invite: &InviteFacts<'_>,
        load: Load,
        sdp_session_id: u64,
        now: Instant,
    ) -> CallCore {
        let settings = settings.into();
        let matched = settings.plan_for(invite.uri_user);
        let tone = matched.map_or_else(|| settings.default_tone(), |p| p.tone.clone());
        // A plan that takes URI parameters: the caller's values, checked.
        let tone = match matched.filter(|p| p.uri_parameters) {
            Some(_) => invite.uri_tone.apply(tone),
            None => Ok(tone),
        };
        let plan = matched.map(|p| p.number.clone());
        let early_media = matched.is_some_and(|p| p.early_media);
        let (tone, bad_parameter) = match tone {
            Ok(t) => (t, None),
            Err(r) => (settings.default_tone(), Some(r)),
        };
        let mut call = CallCore {
            tone,
            plan,
            reinvite_offered: false,
            early_media,
            phase: Phase::Allocating,
            started: now,
            acked_at: None,
            negotiated: None,
            sdp: None,
            sending: false,
            allocated: false,
            abandoned: EndReason::CallerCancelled,
            sdp_session_id,
            timer: None,
            timer_due: None,
            reliable_provisionals: invite.caller_100rel,
            srtp_key: milliwatt_media_core::srtp::MasterKey::from_bytes(&invite.srtp_key)
                .expect("30 bytes"),
            out: VecDeque::new(),
            settings,
        };
        let timer = invite
            .timer
            .as_ref()
            .map_err(|e| Refusal::new(RefusalKind::Malformed, e.to_string()))
            .and_then(|f| {
                session_timer::negotiate(f, None).map_err(|t| {
                    Refusal::new(
                        RefusalKind::SessionIntervalTooSmall,
                        format!(
                            "Session-Expires {} is below our Min-SE {} (RFC 4028)",
                            t.asked,
                            session_timer::MIN_SE_SECS
                        ),
                    )
                })
            });
        match screen(&call.settings, invite, load)
            .and_then(|n| match bad_parameter {
                Some(r) => Err(r),
                None => Ok(n),
            })
            .and_then(|n| timer.map(|t| (n, t)))
        {
            Ok((n, timer)) => {
                // A late offer: we offer no rtcp-mux (RFC 5761 lets the answer refuse it).
                let rtcp_mux = n.as_ref().is_some_and(|n| n.rtcp_mux);
                call.negotiated = n;
                call.timer = timer;
                call.out.push_back(Output::Trying);
                call.out.push_back(Output::Allocate { rtcp_mux });
            }
            Err(r) => call.refuse(r, now),
        }
        call
    }

    /// The negotiated media (after screening), for logs.
    pub fn negotiated(&self) -> Option<&Negotiated> {
        self.negotiated.as_ref()
    }

    /// Whether our 180/183 go reliably (RFC 3262: `Require: 100rel` and `RSeq`, retransmitted
    /// until the PRACK; none within 64*T1: feed [`Event::NoPrack`]).
    pub fn reliable_provisionals(&self) -> bool {
        self.reliable_provisionals
    }

    /// The session timer in force (RFC 4028), for the headers of our 2xx responses.
    pub fn session_timer(&self) -> Option<SessionTimer> {
        self.timer
    }

    /// The tone this call plays, and the number of the plan that chose it (`None`: default).
    pub fn tone(&self) -> (&Tone, Option<&str>) {
        (&self.tone, self.plan.as_deref())
    }

    pub fn is_finished(&self) -> bool {
        self.phase == Phase::Ended && self.out.is_empty()
    }

    /// The next thing to do; drain until `None` after every [`CallCore::handle`].
    pub fn poll_output(&mut self) -> Option<Output> {
        let next = self.out.pop_front();
        if self.out.is_empty() {
            // The queue's room (768 bytes) is given back once it is drained: a call spends
            // nearly all its life with nothing queued (memory per call).
            self.out = VecDeque::new();
        }
        next
    }

    /// When [`Event::Timeout`] is due next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.phase {
            Phase::Ringing { answer_at } => answer_at,
            Phase::Confirmed { hangup_at } => Some(match self.timer_due {
                Some(t) => t.min(hangup_at),
                None => hangup_at,
            }),
            _ => None,
        }
    }

    pub fn handle(&mut self, event: Event, now: Instant) {
        use Phase::*;
        match (self.phase.clone(), event) {
            (Ended, _) => {}
            // Media answered after we gave up: give its session back.
            (Abandoned, Event::Allocated { .. }) => {
                self.allocated = true;
                self.finish_with(self.abandoned, now);
            }
            (Abandoned, Event::AllocationFailed(_)) => self.finish_with(self.abandoned, now),
            (Abandoned, _) => {}

            (Allocating, Event::DialogFailed(reason)) => {
                self.out.clear();
                self.refuse(Refusal::new(RefusalKind::Malformed, reason), now);
            }
            (Allocating, Event::Allocated { host, port }) => {
                self.allocated = true;
                self.sdp = Some(SdpState {
                    host,
                    port,
                    session_id: self.sdp_session_id,
                    version: 1,
                    last: String::new(),
                });
                let answer_at = self.settings.answer_after.map(|d| now + d);
                self.phase = Ringing { answer_at };
                // Early media needs the offer now; a late offer has none, so it rings.
                match self.negotiated.clone().filter(|_| self.early_media) {
                    Some(n) => {
                        let sdp = self.sdp.as_mut().expect("just allocated");
                        sdp.last = sdp.answer(&n, &self.srtp_key);
                        self.out.push_back(Output::Progress {
                            sdp: sdp.last.clone(),
                        });
                        if let Some(remote) = n.remote.filter(|_| n.send) {
                            // Until the answer and the whole tone after it (or, ringing until
                            // the caller gives up, the tone's time).
                            let until = answer_at.map_or(self.tone.duration, |t| {
                                t.saturating_duration_since(now) + self.tone.duration
                            });
                            self.out
                                .push_back(Output::StartTone(self.tone_request(&n, remote, until)));
                            self.sending = true;
                        }
                    }
                    None => self.out.push_back(Output::Ringing),
                }
            }
            (Allocating, Event::AllocationFailed(f)) => {
                let kind = match f {
                    MediaFailure::PortsExhausted => RefusalKind::RtpPortsExhausted,
                    MediaFailure::Unavailable(_) => RefusalKind::MediaUnavailable,
                    MediaFailure::NotFound | MediaFailure::Refused(_) => RefusalKind::MediaRefused,
                };
                self.refuse(Refusal::new(kind, f.to_string()), now);
            }
            (Allocating, Event::Cancel) => self.abandon(EndReason::CallerCancelled),
            (Allocating, Event::MediaLost) => {
                self.out.push_back(Output::Refuse(Refusal::new(
                    RefusalKind::MediaLost,
                    "media service lost",
                )));
                self.abandon(EndReason::Refused(RefusalKind::MediaLost));
            }
            (Allocating, Event::Shutdown) => {
                self.out.push_back(Output::Refuse(Refusal::new(
                    RefusalKind::Draining,
                    "shutting down",
                )));
                self.abandon(EndReason::Refused(RefusalKind::Draining));
            }
            (Allocating, _) => {}

            (Ringing { answer_at }, Event::Timeout) if answer_at.is_some_and(|t| now >= t) => {
                self.answer()
            }
            (Ringing { .. }, Event::NoPrack) => {
                // Nothing queued behind the 18x (an early-media tone) goes out.
                self.out.clear();
                self.refuse(
                    Refusal::new(
                        RefusalKind::NoPrack,
                        "no PRACK for our reliable provisional response within 64*T1 (RFC 3262)",
                    ),
                    now,
                )
            }
            (Ringing { .. }, Event::Cancel | Event::AnswerRaced) => {
                self.finish_with(EndReason::CallerCancelled, now)
            }
            (Ringing { .. }, Event::MediaLost) => self.refuse(
                Refusal::new(RefusalKind::MediaLost, "media service lost"),
                now,
            ),
            (Ringing { .. }, Event::Shutdown) => {
                self.refuse(Refusal::new(RefusalKind::Draining, "shutting down"), now)
            }
            (Ringing { .. }, _) => {}

            // A CANCEL that crosses our 200 OK has no effect (RFC 3261 9.2).
            (Answering { .. }, Event::AnswerRaced) => {
                self.finish_with(EndReason::CallerCancelled, now)
            }
            (Answering { then }, Event::Ack { answer }) => {
                self.acked_at = Some(now);
                self.out.push_back(Output::Established);
                let late_answer_bad = self.negotiated.is_none() && !self.take_answer(answer);
                match then {
                    Some(reason) => self.hang_up(reason, now),
                    None if late_answer_bad => self.hang_up(EndReason::BadAnswer, now),
                    None => {
                        self.phase = Confirmed {
                            hangup_at: now + self.tone.duration,
                        };
                        // The session timer runs from the confirmed answer (RFC 4028 §10).
                        self.refreshed(self.timer, now);
                        // Early media: the tone is already playing, for this long.
                        if !self.sending {
                            self.apply_media(now);
                        }
                    }
                }
            }
            (Answering { .. }, Event::AckTimeout) => self.hang_up(EndReason::NoAck, now),
            (Answering { .. }, Event::Bye | Event::DialogEnded) => {
                self.finish_with(EndReason::CallerHungUp, now)
            }
            (Answering { .. }, Event::MediaLost) => {
                self.phase = Answering {
                    then: Some(EndReason::MediaLost),
                }
            }
            (Answering { .. }, Event::Shutdown) => {
                self.phase = Answering {
                    then: Some(EndReason::Shutdown),
                }
            }
            (Answering { .. }, _) => {}

            (Confirmed { hangup_at }, Event::Timeout) if now >= hangup_at => {
                self.hang_up(EndReason::ToneFinished, now)
            }
            (Confirmed { .. }, Event::Timeout) if self.timer_due.is_some_and(|t| now >= t) => {
                self.timer_due = None;
                match self.timer.map(|t| t.refresher) {
                    Some(Refresher::Us) => {
                        let sdp = self.sdp.as_ref().expect("allocated").last.clone();
                        self.out.push_back(Output::Refresh { sdp });
                    }
                    _ => self.hang_up(EndReason::SessionExpired, now),
                }
            }
            (Confirmed { .. }, Event::Refreshed(Ok(se))) => {
                if let Some(t) = self.timer {
                    let t = t.after_our_refresh(se);
                    self.timer = Some(t);
                    self.timer_due = Some(now + t.due_after());
                }
            }
            (Confirmed { .. }, Event::Refreshed(Err(_))) => {
                self.hang_up(EndReason::RefreshFailed, now)
            }
            (Confirmed { .. }, Event::Bye | Event::DialogEnded) => {
                self.finish_with(EndReason::CallerHungUp, now)
            }
            (Confirmed { .. }, Event::MediaLost) => self.hang_up(EndReason::MediaLost, now),
            (Confirmed { .. }, Event::Shutdown) => self.hang_up(EndReason::Shutdown, now),
            // A re-INVITE or UPDATE the caller sends is also a session refresh (RFC 4028):
            // its timer takes effect when we accept it.
            (Confirmed { .. }, Event::ReInvite { offer, timer }) => {
                match self.refresh_timer(&timer) {
                    Err(r) => self.out.push_back(Output::RefuseReInvite(r)),
                    Ok(t) => {
                        if self.reinvite(offer, now) {
                            self.refreshed(t, now);
                        }
                    }
                }
            }
            (Confirmed { .. }, Event::Update { timer, .. })
                if self.refresh_timer(&timer).is_err() =>
            {
                let r = self.refresh_timer(&timer).expect_err("checked");
                self.out.push_back(Output::RefuseUpdate(r));
            }
            (Confirmed { .. }, Event::Update { offer: None, timer }) => {
                let t = self.refresh_timer(&timer).expect("checked");
                self.refreshed(t, now);
                let send = self.negotiated.as_ref().expect("negotiated").send;
                self.out.push_back(Output::AcceptUpdate { sdp: None, send });
            }
            (
                Confirmed { .. },
                Event::Update {
                    offer: Some(offer),
                    timer,
                },
            ) => {
                let t = self.refresh_timer(&timer).expect("checked");
                match self.renegotiate(Some(offer)) {
                    Ok((sdp, send, media_changed)) => {
                        self.refreshed(t, now);
                        self.out.push_back(Output::AcceptUpdate {
                            sdp: Some(sdp),
                            send,
                        });
                        if media_changed {
                            self.apply_media(now);
                        }
                    }
                    Err(r) => self.out.push_back(Output::RefuseUpdate(r)),
                }
            }
            (Confirmed { .. }, Event::ReInviteAck { answer }) if self.reinvite_offered => {
                self.reinvite_offered = false;
                let before = self.negotiated.clone();
                if self.take_answer(answer) {
                    if self.negotiated != before {
                        self.apply_media(now);
                    }
                } else {
                    self.hang_up(EndReason::BadAnswer, now);
                }
            }
            (Confirmed { .. }, _) => {}
        }
    }

    fn refuse(&mut self, r: Refusal, now: Instant) {
        let kind = r.kind;
        self.out.push_back(Output::Refuse(r));
        self.finish_with(EndReason::Refused(kind), now);
    }

    /// Ends before media answered: the session media may still allocate must be released
    /// when its answer comes.
    fn abandon(&mut self, reason: EndReason) {
        self.abandoned = reason;
        self.phase = Phase::Abandoned;
    }

    fn answer(&mut self) {
        let sdp = self.sdp.as_mut().expect("allocated before ringing");
        sdp.last = match self.negotiated.as_ref() {
            // Early media: the 200 repeats the 183's answer (RFC 3264: the same version).
            Some(_) if self.sending => sdp.last.clone(),
            Some(n) => sdp.answer(n, &self.srtp_key),
            None => sdp::offer(
                &self.settings.preferred_codecs,
                self.settings.enable_dtmf,
                &sdp.host,
                sdp.port,
                sdp.session_id,
                sdp.version,
            ),
        };
        self.out.push_back(Output::Answer {
            sdp: sdp.last.clone(),
        });
        self.phase = Phase::Answering { then: None };
    }

    /// The caller's answer to our offer (a late offer's 200, or an offerless re-INVITE's), from
    /// the ACK: negotiated like an offer (its codec
    /// is one we offered, its address and direction say where and whether to send). False when
    /// there is none or it is not usable (the call then ends with BYE).
    fn take_answer(&mut self, answer: Option<String>) -> bool {
        let Some(body) = answer.filter(|b| !b.trim().is_empty()) else {
            return false;
        };
        match negotiate(&self.settings, &body) {
            Ok(n) if n.remote.is_some() || !n.send => {
                self.negotiated = Some(n);
                true
            }
            _ => false,
        }
    }

    /// Starts or stops the tone to match the negotiated media.
    fn apply_media(&mut self, now: Instant) {
        let Phase::Confirmed { hangup_at } = self.phase else {
            return;
        };
        let n = self.negotiated.as_ref().expect("negotiated");
        match n.remote.filter(|_| n.send) {
            Some(remote) => {
                let remaining = hangup_at.saturating_duration_since(now);
                self.out
                    .push_back(Output::StartTone(self.tone_request(n, remote, remaining)));
                self.sending = true;
            }
            None if self.sending => {
                self.out.push_back(Output::StopTone);
                self.sending = false;
            }
            None => {}
        }
    }

    fn tone_request(&self, n: &Negotiated, remote: SocketAddr, remaining: Duration) -> ToneRequest {
        ToneRequest {
            remote,
            codec: n.codec,
            payload_type: n.payload_type,
            frequency_hz: self.tone.frequency_hz,
            level_dbm0: self.tone.level_dbm0,
            duration: Some(remaining + MEDIA_SAFETY_MARGIN),
            dtmf_payload_type: n.dtmf_payload_type,
            wait_for_caller_rtp: self.settings.wait_for_caller_rtp,
            shape: self.tone.shape.clone(),
            echo: self.tone.echo,
            srtp: n
                .srtp
                .as_ref()
                .map(|s| milliwatt_media_core::srtp::SrtpKeys {
                    suite: s.suite,
                    send: self.srtp_key.clone(),
                    recv: s.caller_key.clone(),
                }),
        }
    }

    /// RFC 3264 §8: a new offer in the dialog gets an answer with the same `o=` session id and
    /// the version +1 when the answer changed, the same version when it did not.
    /// Whether it was accepted.
    fn reinvite(&mut self, offer: Option<String>, now: Instant) -> bool {
        self.reinvite_offered = offer.is_none();
        match self.renegotiate(offer) {
            Ok((sdp, send, media_changed)) => {
                self.out.push_back(Output::AcceptReInvite { sdp, send });
                if media_changed {
                    self.apply_media(now);
                }
                true
            }
            Err(r) => {
                self.out.push_back(Output::RefuseReInvite(r));
                false
            }
        }
    }

    /// The session timer a caller's refresh (re-INVITE or UPDATE) asks for, or its 422.
    fn refresh_timer(&self, facts: &TimerFacts) -> Result<Option<SessionTimer>, Refusal> {
        session_timer::negotiate(facts, self.timer).map_err(|t| {
            Refusal::new(
                RefusalKind::SessionIntervalTooSmall,
                format!(
                    "Session-Expires {} is below our Min-SE {} (RFC 4028)",
                    t.asked,
                    session_timer::MIN_SE_SECS
                ),
            )
        })
    }

    /// A refresh was accepted (or the call confirmed): the timer runs from `now`.
    fn refreshed(&mut self, timer: Option<SessionTimer>, now: Instant) {
        self.timer = timer;
        self.timer_due = timer.map(|t| now + t.due_after());
    }

    /// A new offer in the dialog (re-INVITE or UPDATE), or none (our current media): the SDP
    /// answer, whether we send, and whether the media changed (the caller applies it after
    /// queueing the answer); `Err` refuses it and changes nothing.
    fn renegotiate(&mut self, offer: Option<String>) -> Result<(String, bool, bool), Refusal> {
        let n = match offer {
            // No offer (a session refresh): our answer is the current media, unchanged.
            None => self.negotiated.clone().expect("negotiated"),
            Some(body) => negotiate(&self.settings, &body)?,
        };
        let sdp = self.sdp.as_mut().expect("allocated");
        let same = sdp.answer(&n, &self.srtp_key);
        if same != sdp.last {
            sdp.version += 1;
            sdp.last = sdp.answer(&n, &self.srtp_key);
        }
        let answer = sdp.last.clone();
        let send = n.send;
        let media_changed = self.negotiated.as_ref() != Some(&n);
        self.negotiated = Some(n);
        Ok((answer, send, media_changed))
    }

    /// We end an established (or answered) call: BYE, then release.
    fn hang_up(&mut self, reason: EndReason, now: Instant) {
        self.out.push_back(Output::SendBye(reason));
        self.finish_with(reason, now);
    }

    fn finish_with(&mut self, reason: EndReason, now: Instant) {
        if self.allocated {
            self.out.push_back(Output::Release(reason));
            self.allocated = false;
        }
        self.out.push_back(Output::Finished(Summary {
            reason,
            talk: self.acked_at.map(|t| now.saturating_duration_since(t)),
            age: now.saturating_duration_since(self.started),
        }));
        self.phase = Phase::Ended;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;
    const SDP: &str = "application/sdp";

    fn settings() -> Settings {
        Settings {
            answer_after: Some(MS(1000)),
            tone: Duration::from_secs(10),
            tone_frequency_hz: 440,
            tone_level_dbm0: -10.0,
            preferred_codecs: vec![Codec::Pcmu, Codec::Pcma],
            enable_dtmf: true,
            wait_for_caller_rtp: false,
            refuse_private_destinations: false,
            max_concurrent_calls: 10,
            domains: vec!["milliwatt.test".into()],
            overload: crate::overload::Thresholds {
                max_calls_in_setup: 100,
                max_pending_allocations: 0,
                max_event_loop_lag: Duration::ZERO,
                max_answer_lateness: Duration::ZERO,
                max_invite_wait: Duration::ZERO,
            },
            plans: Vec::new(),
        }
    }

    fn offer_with(c: &str, port: u16, codecs: &str, dir: &str) -> String {
        format!(
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 {c}\r\nt=0 0\r\n\
             m=audio {port} RTP/AVP {codecs}\r\na={dir}\r\n"
        )
    }

    fn offer() -> String {
        offer_with("127.0.0.1", 4000, "0 8", "sendrecv")
    }

    fn facts(body: &str) -> InviteFacts<'_> {
        InviteFacts {
            has_from_tag: true,
            has_contact: true,
            uri_host_name: None,
            uri_user: None,
            uri_tone: UriTone::default(),
            content_type: Some(SDP),
            body: body.as_bytes(),
            timer: Ok(TimerFacts::default()),
            caller_100rel: false,
            srtp_key: [5; 30],
        }
    }

    /// A caller driving one call in simulated time.
    struct Sim {
        call: CallCore,
        now: Instant,
        t0: Instant,
        log: Vec<(Duration, Output)>,
    }

    impl Sim {
        fn new(s: Settings, body: &str, load: Load) -> Sim {
            let t0 = Instant::now();
            let mut sim = Sim {
                call: CallCore::new(s, &facts(body), load, 77, t0),
                now: t0,
                t0,
                log: Vec::new(),
            };
            sim.drain();
            sim
        }

        /// A call whose INVITE said `Supported: timer` and `Session-Expires: se`, answered at
        /// 1 s and acknowledged; its tone lasts ten minutes.
        fn with_session_timer(se: &str) -> Sim {
            let t0 = Instant::now();
            let mut s = settings();
            s.tone = Duration::from_secs(600);
            let body = offer();
            let mut f = facts(&body);
            f.timer = TimerFacts::parse(["timer"], Some(se), None);
            let mut sim = Sim {
                call: CallCore::new(s, &f, Load::default(), 77, t0),
                now: t0,
                t0,
                log: Vec::new(),
            };
            sim.drain();
            sim.allocated();
            sim.run_until(MS(1000));
            sim.event(Event::Ack { answer: None });
            sim
        }

        fn answered() -> Sim {
            let mut sim = Sim::new(settings(), &offer(), Load::default());
            sim.event(Event::Allocated {
                host: "192.0.2.1".into(),
                port: 20000,
            });
            sim.run_until(MS(1000));
            sim.event(Event::Ack { answer: None });
            sim
        }

        /// Media answers the allocation.
        fn allocated(&mut self) {
            self.event(Event::Allocated {
                host: "h".into(),
                port: 2,
            });
        }

        fn drain(&mut self) {
            while let Some(o) = self.call.poll_output() {
                self.log.push((self.now - self.t0, o));
            }
        }

        fn event(&mut self, e: Event) {
            self.call.handle(e, self.now);
            self.drain();
        }

        fn at(&mut self, since_start: Duration, e: Event) {
            self.run_until(since_start);
            self.event(e);
        }

        /// Runs the call's timers until `since_start`.
        fn run_until(&mut self, since_start: Duration) {
            let until = self.t0 + since_start;
            while let Some(t) = self.call.poll_timeout().filter(|t| *t <= until) {
                self.now = t;
                self.event(Event::Timeout);
            }
            self.now = until;
        }

        fn outputs(&self) -> Vec<Output> {
            self.log.iter().map(|(_, o)| o.clone()).collect()
        }

        fn kinds(&self) -> Vec<&'static str> {
            self.log.iter().map(|(_, o)| kind(o)).collect()
        }

        fn summary(&self) -> Summary {
            match self.log.last() {
                Some((_, Output::Finished(s))) => *s,
                other => panic!("not finished: {other:?}"),
            }
        }

        fn when(&self, k: &str) -> Duration {
            self.log
                .iter()
                .find(|(_, o)| kind(o) == k)
                .unwrap_or_else(|| panic!("no {k} in {:?}", self.kinds()))
                .0
        }
    }

    fn kind(o: &Output) -> &'static str {
        match o {
            Output::Trying => "trying",
            Output::Allocate { .. } => "allocate",
            Output::Ringing => "ringing",
            Output::Progress { .. } => "progress",
            Output::Refuse(_) => "refuse",
            Output::Answer { .. } => "answer",
            Output::Established => "established",
            Output::StartTone(_) => "start_tone",
            Output::StopTone => "stop_tone",
            Output::AcceptReInvite { .. } => "accept_reinvite",
            Output::RefuseReInvite(_) => "refuse_reinvite",
            Output::AcceptUpdate { .. } => "accept_update",
            Output::RefuseUpdate(_) => "refuse_update",
            Output::Refresh { .. } => "refresh",
            Output::SendBye(_) => "bye",
            Output::Release(_) => "release",
            Output::Finished(_) => "finished",
        }
    }

    fn o_line(sdp: &str) -> (String, String) {
        let o = sdp.lines().find(|l| l.starts_with("o=")).expect("o= line");
        let f: Vec<&str> = o.split_whitespace().collect();
        (f[1].to_string(), f[2].to_string())
    }

    #[test]
    fn a_call_rings_answers_after_the_delay_plays_the_tone_and_hangs_up() {
        let mut sim = Sim::answered();
        sim.run_until(Duration::from_secs(60));
        assert_eq!(
            sim.kinds(),
            [
                "trying",
                "allocate",
                "ringing",
                "answer",
                "established",
                "start_tone",
                "bye",
                "release",
                "finished"
            ]
        );
        assert_eq!(sim.when("answer"), MS(1000));
        assert_eq!(
            sim.when("bye"),
            MS(11_000),
            "BYE tone_duration after the ACK"
        );
        let Output::StartTone(t) = &sim.outputs()[5] else {
            panic!()
        };
        assert_eq!(t.remote, "127.0.0.1:4000".parse().unwrap());
        assert_eq!((t.codec, t.payload_type), (Codec::Pcmu, 0));
        assert_eq!(t.frequency_hz, 440);
        assert_eq!(
            t.duration,
            Some(Duration::from_secs(10) + MEDIA_SAFETY_MARGIN)
        );
        let Output::Answer { sdp } = &sim.outputs()[3] else {
            panic!()
        };
        assert!(sdp.contains("c=IN IP4 192.0.2.1") && sdp.contains("m=audio 20000 "));
        assert_eq!(o_line(sdp), ("77".into(), "1".into()));
        let s = sim.summary();
        assert_eq!(s.reason, EndReason::ToneFinished);
        assert_eq!(s.talk, Some(Duration::from_secs(10)));
        assert_eq!(s.age, MS(11_000));
    }

    #[test]
    fn a_late_offer_is_offered_in_the_200_and_answered_in_the_ack() {
        // INVITE without a body: 100, allocate (no rtcp-mux), 180, then our offer in the 200.
        let late = |answer: Option<String>| {
            let mut sim = Sim::new(settings(), "", Load::default());
            assert_eq!(
                sim.outputs(),
                [Output::Trying, Output::Allocate { rtcp_mux: false }]
            );
            sim.event(Event::Allocated {
                host: "192.0.2.1".into(),
                port: 20000,
            });
            sim.run_until(MS(1000));
            let Some(Output::Answer { sdp }) = sim.outputs().last().cloned() else {
                panic!("{:?}", sim.outputs())
            };
            assert!(sdp.contains("m=audio 20000 RTP/AVP 0 8 101\r\n"), "{sdp}");
            assert_eq!(o_line(&sdp), ("77".into(), "1".into()));
            sim.at(MS(1020), Event::Ack { answer });
            sim
        };
        // The answer picks PCMA at 198.51.100.2:5000: the tone goes there, for its whole time.
        let sim = late(Some(offer_with("198.51.100.2", 5000, "8", "sendrecv")));
        let tone = sim
            .outputs()
            .into_iter()
            .find_map(|o| match o {
                Output::StartTone(t) => Some(t),
                _ => None,
            })
            .expect("the tone starts on the answer");
        assert_eq!(tone.remote, "198.51.100.2:5000".parse().unwrap());
        assert_eq!((tone.codec, tone.payload_type), (Codec::Pcma, 8));
        assert_eq!(
            sim.call.negotiated().map(|n| n.codec),
            Some(Codec::Pcma),
            "negotiated from the answer"
        );
        // No answer, garbage, or a codec we did not offer: established, then BYE at once.
        for bad in [
            None,
            Some(String::new()),
            Some("garbage".into()),
            Some(offer_with("198.51.100.2", 5000, "18", "sendrecv")),
        ] {
            let sim = late(bad.clone());
            assert_eq!(
                sim.kinds()[sim.kinds().len() - 4..],
                ["established", "bye", "release", "finished"],
                "{bad:?}"
            );
            assert_eq!(sim.summary().reason, EndReason::BadAnswer, "{bad:?}");
            assert!(
                !sim.outputs()
                    .iter()
                    .any(|o| matches!(o, Output::StartTone(_))),
                "no tone without an answer: {bad:?}"
            );
        }
        // An answer in an ACK to a 200 that carried an answer is ignored.
        let mut sim = Sim::answered();
        sim.event(Event::Ack {
            answer: Some("garbage".into()),
        });
        assert!(!sim.kinds().contains(&"bye"));
    }

    #[test]
    fn an_offerless_reinvite_takes_its_answer_from_the_ack() {
        let reinvite_then_ack = |answer: Option<String>| {
            let mut sim = Sim::answered();
            sim.at(
                MS(3000),
                Event::ReInvite {
                    offer: None,
                    timer: TimerFacts::default(),
                },
            );
            let n = sim.log.len();
            sim.at(MS(3010), Event::ReInviteAck { answer });
            let after: Vec<&'static str> = sim.log[n..].iter().map(|(_, o)| kind(o)).collect();
            (sim, after)
        };
        // The caller answers sendonly (it holds): the tone stops.
        let (_, after) = reinvite_then_ack(Some(offer_with("127.0.0.1", 4000, "0", "sendonly")));
        assert_eq!(after, ["stop_tone"]);
        // The same media: nothing to do.
        let (_, after) = reinvite_then_ack(Some(offer_with("127.0.0.1", 4000, "0", "sendrecv")));
        assert!(after.is_empty(), "{after:?}");
        // Another address: the tone moves there.
        let (sim, after) = reinvite_then_ack(Some(offer_with("127.0.0.1", 4002, "0", "sendrecv")));
        assert_eq!(after, ["start_tone"]);
        assert!(
            matches!(sim.outputs().last(), Some(Output::StartTone(t)) if t.remote.port() == 4002)
        );
        // No answer, or garbage: BYE.
        for bad in [None, Some("garbage".to_string())] {
            let (sim, after) = reinvite_then_ack(bad.clone());
            assert_eq!(after, ["bye", "release", "finished"], "{bad:?}");
            assert_eq!(sim.summary().reason, EndReason::BadAnswer);
        }
        // After a re-INVITE with an offer, an ACK body is not an answer: ignored.
        let mut sim = Sim::answered();
        sim.at(
            MS(3000),
            Event::ReInvite {
                offer: Some(offer()),
                timer: TimerFacts::default(),
            },
        );
        let n = sim.log.len();
        sim.at(MS(3010), Event::ReInviteAck { answer: None });
        assert_eq!(sim.log.len(), n, "nothing happens");
    }

    #[test]
    fn uri_parameters_set_the_tone_where_the_plan_allows_and_bad_ones_are_refused() {
        let base = Tone {
            frequency_hz: 440,
            level_dbm0: -10.0,
            duration: Duration::from_secs(10),
            shape: Default::default(),
            echo: false,
        };
        let p = |freq, level, duration| UriTone {
            freq,
            level,
            duration,
        };
        assert_eq!(
            p(Some("1000"), Some("-3"), Some("5")).apply(base.clone()),
            Ok(Tone {
                frequency_hz: 1000,
                level_dbm0: -3.0,
                duration: Duration::from_secs(5),
                shape: Default::default(),
                echo: false,
            })
        );
        assert_eq!(p(None, None, None).apply(base.clone()), Ok(base.clone()));
        // A plan's dual tone: the caller's level must not make the two clip, nor its frequency
        // be the second tone's.
        let dual = Tone {
            shape: milliwatt_media_core::tone::Shape {
                second: Some((350, -13.0)),
                ..Default::default()
            },
            ..base.clone()
        };
        assert!(p(None, Some("-13"), None).apply(dual.clone()).is_ok());
        for (freq, level) in [(None, Some("2")), (Some("350"), None)] {
            let e = p(freq, level, None).apply(dual.clone()).unwrap_err();
            assert_eq!(e.kind, RefusalKind::NoAcceptableMedia, "{e:?}");
            assert!(e.reason.contains("plan's"), "{e:?}");
        }
        for (u, code, name) in [
            (p(Some("abc"), None, None), 400, "freq"),
            (p(Some("4000"), None, None), 488, "freq"),
            (p(None, Some("4"), None), 488, "level"),
            (p(None, Some("x"), None), 400, "level"),
            (p(None, None, Some("0")), 488, "duration"),
            (p(None, None, Some("-1")), 400, "duration"),
        ] {
            let r = u.apply(base.clone()).unwrap_err();
            assert_eq!(r.kind.code(), code, "{u:?}: {}", r.reason);
            assert!(r.reason.contains(name), "{}", r.reason);
        }
        // In a call: a plan that takes them applies them; others do not read them.
        let mut s = settings();
        s.plans = vec![
            Plan {
                number: "tone".into(),
                tone: base.clone(),
                uri_parameters: true,
                early_media: false,
            },
            Plan {
                number: "fixed".into(),
                tone: base,
                uri_parameters: false,
                early_media: false,
            },
        ];
        let body = offer();
        let call = |user: &str, freq: &str| {
            let f = InviteFacts {
                uri_user: Some(user),
                uri_tone: UriTone {
                    freq: Some(freq),
                    ..UriTone::default()
                },
                ..facts(&body)
            };
            let mut c = CallCore::new(s.clone(), &f, Load::default(), 1, Instant::now());
            (c.poll_output(), c.tone().0.frequency_hz)
        };
        assert_eq!(call("tone", "1000"), (Some(Output::Trying), 1000));
        assert_eq!(call("fixed", "1000"), (Some(Output::Trying), 440));
        let (refused, _) = call("tone", "5000");
        assert!(
            matches!(&refused, Some(Output::Refuse(r)) if r.kind.code() == 488 && r.reason.contains("freq=5000")),
            "{refused:?}"
        );
    }

    #[test]
    fn early_media_sends_183_with_the_answer_and_the_tone_before_the_200() {
        let mut s = settings();
        s.plans = vec![Plan {
            number: "early".into(),
            tone: s.default_tone(),
            uri_parameters: false,
            early_media: true,
        }];
        let body = offer();
        let f = InviteFacts {
            uri_user: Some("early"),
            ..facts(&body)
        };
        let t0 = Instant::now();
        let mut sim = Sim {
            call: CallCore::new(s, &f, Load::default(), 77, t0),
            now: t0,
            t0,
            log: Vec::new(),
        };
        sim.drain();
        sim.event(Event::Allocated {
            host: "192.0.2.1".into(),
            port: 20000,
        });
        assert_eq!(
            sim.kinds(),
            ["trying", "allocate", "progress", "start_tone"]
        );
        let Output::Progress { sdp: early } = &sim.outputs()[2] else {
            panic!()
        };
        let Output::StartTone(t) = &sim.outputs()[3] else {
            panic!()
        };
        // The answer in 1 s, then the 10 s tone: the tone is asked for that long (+ margin).
        assert_eq!(
            t.duration,
            Some(Duration::from_secs(11) + MEDIA_SAFETY_MARGIN)
        );
        sim.run_until(MS(1000));
        let Some(Output::Answer { sdp }) = sim.outputs().last().cloned() else {
            panic!("{:?}", sim.kinds())
        };
        assert_eq!(
            &sdp, early,
            "the 200 repeats the 183's answer, same version"
        );
        sim.at(MS(1020), Event::Ack { answer: None });
        assert_eq!(
            sim.kinds()[4..],
            ["answer", "established"],
            "no second StartTone: the tone goes on"
        );
        sim.run_until(MS(12_000));
        assert_eq!(sim.summary().reason, EndReason::ToneFinished);
        assert_eq!(sim.when("bye"), MS(11_020));
        // A CANCEL during early media releases the session (the tone stops with it).
        let mut s2 = settings();
        s2.plans = vec![Plan {
            number: "early".into(),
            tone: s2.default_tone(),
            uri_parameters: false,
            early_media: true,
        }];
        let mut c = CallCore::new(s2, &f, Load::default(), 1, t0);
        c.handle(
            Event::Allocated {
                host: "h".into(),
                port: 2,
            },
            t0,
        );
        c.handle(Event::Cancel, t0 + MS(500));
        let outs: Vec<&'static str> = std::iter::from_fn(|| c.poll_output())
            .map(|o| kind(&o))
            .collect();
        assert_eq!(
            outs,
            [
                "trying",
                "allocate",
                "progress",
                "start_tone",
                "release",
                "finished"
            ]
        );
    }

    #[test]
    fn glob_matches_exact_and_starred_numbers() {
        for (p, t, want) in [
            ("1004", "1004", true),
            ("1004", "10041", false),
            ("100*", "1004", true),
            ("100*", "100", true),
            ("*", "", true),
            ("tone-*", "tone-1000", true),
            ("*-echo", "99-echo", true),
            ("*-echo", "99-echo-x", false),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "axxbyy", false),
            ("", "", true),
            ("", "1", false),
        ] {
            assert_eq!(glob(p, t), want, "{p:?} ~ {t:?}");
        }
    }

    #[test]
    fn the_dialed_number_picks_the_first_matching_plan_and_its_tone() {
        let mut s = settings();
        let tone = |f, l, d| Tone {
            frequency_hz: f,
            level_dbm0: l,
            duration: Duration::from_secs(d),
            shape: Default::default(),
            echo: false,
        };
        s.plans = vec![
            Plan {
                number: "1004".into(),
                tone: tone(1004, 0.0, 3),
                uri_parameters: false,
                early_media: false,
            },
            Plan {
                number: "10*".into(),
                tone: tone(1000, -3.0, 10),
                uri_parameters: false,
                early_media: false,
            },
        ];
        let call = |user: Option<&str>| {
            let body = offer();
            let f = InviteFacts {
                uri_user: user,
                ..facts(&body)
            };
            let mut sim = Sim {
                call: CallCore::new(s.clone(), &f, Load::default(), 77, Instant::now()),
                now: Instant::now(),
                t0: Instant::now(),
                log: Vec::new(),
            };
            sim.t0 = sim.now;
            sim.drain();
            sim.event(Event::Allocated {
                host: "192.0.2.1".into(),
                port: 20000,
            });
            sim.run_until(MS(1000));
            sim.event(Event::Ack { answer: None });
            sim.run_until(MS(60_000));
            let start = sim
                .outputs()
                .into_iter()
                .find_map(|o| match o {
                    Output::StartTone(t) => Some(t),
                    _ => None,
                })
                .expect("a tone");
            (
                start.frequency_hz,
                start.level_dbm0,
                sim.when("bye") - sim.when("established"),
                sim.call.tone().1.map(str::to_string),
            )
        };
        assert_eq!(
            call(Some("1004")),
            (1004, 0.0, Duration::from_secs(3), Some("1004".into()))
        );
        assert_eq!(
            call(Some("1000")),
            (1000, -3.0, Duration::from_secs(10), Some("10*".into()))
        );
        assert_eq!(
            call(Some("2000")),
            (440, -10.0, Duration::from_secs(10), None)
        );
        assert_eq!(call(None), (440, -10.0, Duration::from_secs(10), None));
    }

    #[test]
    fn screening_refuses_each_kind_with_its_code() {
        let body = offer();
        let g729 = offer_with("127.0.0.1", 4000, "18", "sendrecv");
        let cases: Vec<(InviteFacts, Load, RefusalKind, u16)> = vec![
            (
                InviteFacts {
                    has_from_tag: false,
                    ..facts(&body)
                },
                Load::default(),
                RefusalKind::Malformed,
                400,
            ),
            (
                InviteFacts {
                    has_contact: false,
                    ..facts(&body)
                },
                Load::default(),
                RefusalKind::Malformed,
                400,
            ),
            (
                InviteFacts {
                    uri_host_name: Some("elsewhere.test"),
                    ..facts(&body)
                },
                Load::default(),
                RefusalKind::UnknownDomain,
                404,
            ),
            (
                InviteFacts {
                    content_type: Some("text/plain"),
                    ..facts(&body)
                },
                Load::default(),
                RefusalKind::UnsupportedBody,
                415,
            ),
            (
                facts("garbage"),
                Load::default(),
                RefusalKind::Malformed,
                400,
            ),
            (
                facts(&g729),
                Load::default(),
                RefusalKind::NoAcceptableMedia,
                488,
            ),
            (
                facts(&body),
                Load {
                    draining: true,
                    ..Load::default()
                },
                RefusalKind::Draining,
                503,
            ),
            (
                facts(&body),
                Load {
                    media_down: true,
                    ..Load::default()
                },
                RefusalKind::MediaUnavailable,
                503,
            ),
            (
                facts(&body),
                Load {
                    active_calls: 10,
                    ..Load::default()
                },
                RefusalKind::OverCapacity,
                503,
            ),
            (
                // Shed before anything else is looked at (the body here is not even SDP).
                facts("garbage"),
                Load {
                    signals: crate::overload::Signals {
                        calls_in_setup: 100,
                        ..Default::default()
                    },
                    ..Load::default()
                },
                RefusalKind::Overloaded,
                503,
            ),
        ];
        for (f, load, want, code) in cases {
            let t0 = Instant::now();
            let mut call = CallCore::new(settings(), &f, load, 1, t0);
            let Some(Output::Refuse(r)) = call.poll_output() else {
                panic!("{want:?} not refused")
            };
            assert_eq!((r.kind, r.kind.code()), (want, code), "{}", r.reason);
            assert_eq!(r.kind.retry_after().is_some(), code == 503);
            assert!(matches!(
                call.poll_output(),
                Some(Output::Finished(Summary {
                    reason: EndReason::Refused(k),
                    talk: None,
                    ..
                })) if k == want
            ));
            assert_eq!(call.poll_output(), None, "nothing after Finished");
            assert!(call.is_finished());
        }
        let ok = InviteFacts {
            uri_host_name: Some("MILLIWATT.test"),
            ..facts(&body)
        };
        assert!(screen(&settings(), &ok, Load::default()).is_ok());
    }

    #[test]
    fn a_dialog_that_cannot_be_created_is_a_400_and_nothing_is_allocated() {
        let mut sim = Sim::new(settings(), &offer(), Load::default());
        sim.log.clear();
        sim.call.out.clear(); // the shell executes Trying first and fails there
        sim.event(Event::DialogFailed("bad From".into()));
        assert_eq!(sim.kinds(), ["refuse", "finished"]);
        let Output::Refuse(r) = &sim.outputs()[0] else {
            panic!()
        };
        assert_eq!(r.kind.code(), 400);
    }

    #[test]
    fn allocation_failures_map_to_503_or_500() {
        for (f, code, label) in [
            (MediaFailure::PortsExhausted, 503, "rtp_ports_exhausted"),
            (
                MediaFailure::Unavailable("down".into()),
                503,
                "media_unavailable",
            ),
            (MediaFailure::Refused("bad".into()), 500, "media_refused"),
        ] {
            let mut sim = Sim::new(settings(), &offer(), Load::default());
            sim.event(Event::AllocationFailed(f));
            assert_eq!(sim.kinds(), ["trying", "allocate", "refuse", "finished"]);
            let Output::Refuse(r) = &sim.outputs()[2] else {
                panic!()
            };
            assert_eq!((r.kind.code(), r.kind.label()), (code, label));
        }
    }

    #[test]
    fn cancel_while_media_allocates_releases_what_media_returns_later() {
        let mut sim = Sim::new(settings(), &offer(), Load::default());
        sim.at(MS(5), Event::Cancel);
        assert_eq!(sim.kinds(), ["trying", "allocate"], "waits for media");
        sim.at(
            MS(8),
            Event::Allocated {
                host: "192.0.2.1".into(),
                port: 20000,
            },
        );
        assert_eq!(
            sim.kinds(),
            ["trying", "allocate", "release", "finished"],
            "no 180 and no leaked session"
        );
        assert_eq!(sim.summary().reason, EndReason::CallerCancelled);
    }

    #[test]
    fn cancel_during_the_ring_delay_ends_without_answer() {
        let mut sim = Sim::new(settings(), &offer(), Load::default());
        sim.allocated();
        sim.at(MS(500), Event::Cancel);
        sim.run_until(Duration::from_secs(60));
        assert_eq!(
            sim.kinds(),
            ["trying", "allocate", "ringing", "release", "finished"]
        );
        assert_eq!(sim.summary().reason, EndReason::CallerCancelled);
        assert_eq!(sim.summary().talk, None);
    }

    #[test]
    fn a_cancel_that_crosses_the_200_is_ignored_but_a_lost_race_is_a_cancel() {
        let mut sim = Sim::new(settings(), &offer(), Load::default());
        sim.allocated();
        sim.run_until(MS(1000));
        sim.at(MS(1001), Event::Cancel);
        sim.at(MS(1002), Event::Ack { answer: None });
        assert_eq!(sim.kinds().last(), Some(&"start_tone"));

        let mut sim = Sim::new(settings(), &offer(), Load::default());
        sim.allocated();
        sim.run_until(MS(1000));
        sim.event(Event::AnswerRaced);
        assert_eq!(sim.kinds()[3..], ["answer", "release", "finished"]);
        assert_eq!(sim.summary().reason, EndReason::CallerCancelled);
    }

    #[test]
    fn caller_bye_during_the_tone_ends_without_our_bye() {
        let mut sim = Sim::answered();
        sim.at(MS(4000), Event::Bye);
        sim.run_until(Duration::from_secs(60));
        assert_eq!(sim.kinds()[5..], ["start_tone", "release", "finished"]);
        assert_eq!(sim.summary().reason, EndReason::CallerHungUp);
        assert_eq!(sim.summary().talk, Some(MS(3000)));
    }

    #[test]
    fn a_lost_ack_ends_the_call_with_our_bye_and_no_tone() {
        let mut sim = Sim::new(settings(), &offer(), Load::default());
        sim.allocated();
        sim.run_until(MS(1000));
        sim.at(MS(33_000), Event::AckTimeout);
        assert_eq!(sim.kinds()[3..], ["answer", "bye", "release", "finished"]);
        assert_eq!(
            sim.outputs()[4],
            Output::SendBye(EndReason::NoAck),
            "RFC 3261 13.3.1.4: BYE after 64*T1 without ACK"
        );
    }

    #[test]
    fn without_auto_answer_it_rings_until_cancelled() {
        let s = Settings {
            answer_after: None,
            ..settings()
        };
        let mut sim = Sim::new(s, &offer(), Load::default());
        sim.allocated();
        assert_eq!(sim.call.poll_timeout(), None);
        sim.run_until(Duration::from_secs(3600));
        assert_eq!(sim.kinds(), ["trying", "allocate", "ringing"]);
        sim.event(Event::Cancel);
        assert_eq!(sim.summary().reason, EndReason::CallerCancelled);
    }

    #[test]
    fn media_loss_refuses_a_ringing_call_and_hangs_up_an_established_one() {
        let mut sim = Sim::new(settings(), &offer(), Load::default());
        sim.allocated();
        sim.at(MS(300), Event::MediaLost);
        assert_eq!(sim.kinds()[3..], ["refuse", "release", "finished"]);
        let Output::Refuse(r) = &sim.outputs()[3] else {
            panic!()
        };
        assert_eq!((r.kind.code(), r.kind.label()), (503, "media_lost"));

        let mut sim = Sim::answered();
        sim.at(MS(2000), Event::MediaLost);
        assert_eq!(sim.kinds()[6..], ["bye", "release", "finished"]);
        assert_eq!(sim.summary().reason, EndReason::MediaLost);
    }

    #[test]
    fn media_loss_while_waiting_for_the_ack_hangs_up_when_the_ack_comes() {
        let mut sim = Sim::new(settings(), &offer(), Load::default());
        sim.allocated();
        sim.run_until(MS(1000));
        sim.at(MS(1010), Event::MediaLost);
        assert_eq!(sim.kinds().last(), Some(&"answer"), "no BYE before the ACK");
        sim.at(MS(1020), Event::Ack { answer: None });
        assert_eq!(
            sim.kinds()[4..],
            ["established", "bye", "release", "finished"]
        );
        assert_eq!(sim.summary().reason, EndReason::MediaLost);
    }

    #[test]
    fn shutdown_refuses_before_the_answer_and_hangs_up_after() {
        let mut sim = Sim::new(settings(), &offer(), Load::default());
        sim.at(MS(1), Event::Shutdown);
        assert_eq!(sim.kinds(), ["trying", "allocate", "refuse"]);
        sim.event(Event::AllocationFailed(MediaFailure::Unavailable(
            "x".into(),
        )));
        assert_eq!(sim.kinds()[3..], ["finished"]);
        assert_eq!(
            sim.summary().reason,
            EndReason::Refused(RefusalKind::Draining)
        );

        let mut sim = Sim::answered();
        sim.at(MS(5000), Event::Shutdown);
        assert_eq!(sim.outputs()[6], Output::SendBye(EndReason::Shutdown));
    }

    #[test]
    fn events_after_the_end_are_ignored() {
        let mut sim = Sim::answered();
        sim.at(MS(2000), Event::Bye);
        let n = sim.log.len();
        for e in [
            Event::Bye,
            Event::Ack { answer: None },
            Event::MediaLost,
            Event::Timeout,
            Event::ReInvite {
                offer: None,
                timer: TimerFacts::default(),
            },
        ] {
            sim.event(e);
        }
        assert_eq!(sim.log.len(), n);
        assert!(sim.call.is_finished());
        assert_eq!(sim.call.poll_timeout(), None);
    }

    fn refresh_facts(se: Option<&str>) -> TimerFacts {
        TimerFacts::parse(["timer"], se, None).unwrap()
    }

    #[test]
    fn the_caller_refreshes_or_we_end_the_call_before_the_session_expires() {
        // Session-Expires: 90;refresher=uac: our 200 says so; with no refresh, BYE at
        // 90 - min(32, 30) = 60 s after the ACK.
        let mut sim = Sim::with_session_timer("90;refresher=uac");
        let t = sim.call.session_timer().expect("a timer");
        assert_eq!(t.response_header(), "90;refresher=uac");
        assert!(t.caller_supports);
        sim.run_until(Duration::from_secs(200));
        assert_eq!(sim.when("bye"), Duration::from_secs(61));
        assert_eq!(sim.summary().reason, EndReason::SessionExpired);
        // A refresh by UPDATE at 30 s (and by re-INVITE at 80 s) restarts the count.
        let mut sim = Sim::with_session_timer("90");
        sim.at(
            Duration::from_secs(30),
            Event::Update {
                offer: None,
                timer: refresh_facts(Some("90;refresher=uac")),
            },
        );
        sim.at(
            Duration::from_secs(80),
            Event::ReInvite {
                offer: None,
                timer: refresh_facts(None),
            },
        );
        sim.run_until(Duration::from_secs(300));
        assert_eq!(sim.when("bye"), Duration::from_secs(140));
        // A refresh asking for less than 90 s gets 422 and refreshes nothing.
        let mut sim = Sim::with_session_timer("90");
        sim.at(
            Duration::from_secs(30),
            Event::Update {
                offer: None,
                timer: refresh_facts(Some("60")),
            },
        );
        let Some((_, Output::RefuseUpdate(r))) = sim.log.last() else {
            panic!("{:?}", sim.kinds())
        };
        assert_eq!(r.kind.code(), 422);
        sim.run_until(Duration::from_secs(300));
        assert_eq!(sim.when("bye"), Duration::from_secs(61));
    }

    #[test]
    fn as_the_refresher_we_refresh_at_half_and_end_the_call_when_it_fails() {
        let mut sim = Sim::with_session_timer("90;refresher=uas");
        assert_eq!(
            sim.call.session_timer().unwrap().response_header(),
            "90;refresher=uas"
        );
        sim.run_until(Duration::from_secs(46));
        assert_eq!(sim.when("refresh"), Duration::from_secs(46));
        let Some((_, Output::Refresh { sdp })) = sim.log.last() else {
            panic!()
        };
        assert!(sdp.contains("m=audio 2 "), "our current media: {sdp}");
        // The caller's 2xx hands the refreshes over (refresher=uas: the caller) with 120 s.
        sim.event(Event::Refreshed(Ok(Some((120, Some("uas"))))));
        assert_eq!(
            sim.call.session_timer().unwrap().refresher,
            Refresher::Caller
        );
        sim.run_until(Duration::from_secs(300));
        assert_eq!(sim.when("bye"), Duration::from_secs(46 + 88));
        assert_eq!(sim.summary().reason, EndReason::SessionExpired);
        // A failed refresh ends the call.
        let mut sim = Sim::with_session_timer("90;refresher=uas");
        sim.run_until(Duration::from_secs(46));
        sim.event(Event::Refreshed(Err("408".into())));
        assert_eq!(sim.summary().reason, EndReason::RefreshFailed);
        assert!(sim.kinds().contains(&"bye"));
    }

    #[test]
    fn no_prack_for_a_reliable_provisional_refuses_the_call_with_500() {
        let body = offer();
        let mut f = facts(&body);
        f.caller_100rel = true;
        let t0 = Instant::now();
        let mut sim = Sim {
            call: CallCore::new(settings(), &f, Load::default(), 1, t0),
            now: t0,
            t0,
            log: Vec::new(),
        };
        assert!(sim.call.reliable_provisionals());
        sim.drain();
        sim.allocated();
        sim.event(Event::NoPrack);
        let refusal = sim
            .outputs()
            .into_iter()
            .find_map(|o| match o {
                Output::Refuse(r) => Some(r),
                _ => None,
            })
            .expect("refused");
        assert_eq!(
            (refusal.kind.code(), refusal.kind.label()),
            (500, "no_prack")
        );
        assert!(sim.kinds().contains(&"release"), "{:?}", sim.kinds());
        assert!(!Sim::answered().call.reliable_provisionals());
    }

    #[test]
    fn a_session_interval_below_90_s_gets_422_and_a_bad_header_400() {
        for (se, code) in [("89", 422), ("soon", 400)] {
            let body = offer();
            let mut f = facts(&body);
            f.timer = TimerFacts::parse(["timer"], Some(se), None);
            let mut c = CallCore::new(settings(), &f, Load::default(), 1, Instant::now());
            let Some(Output::Refuse(r)) = c.poll_output() else {
                panic!("{se}")
            };
            assert_eq!(r.kind.code(), code, "{se}: {}", r.reason);
        }
        // Without Session-Expires, no timer.
        let sim = Sim::answered();
        assert_eq!(sim.call.session_timer(), None);
    }

    #[test]
    fn reinvite_keeps_the_session_id_and_counts_versions_only_for_changes() {
        let mut sim = Sim::answered();
        let Output::Answer { sdp } = &sim.outputs()[3] else {
            panic!()
        };
        assert_eq!(o_line(sdp), ("77".into(), "1".into()));
        let reinvite = |sim: &mut Sim, at: u64, offer: Option<String>| {
            let n = sim.log.len();
            sim.at(
                MS(at),
                Event::ReInvite {
                    offer,
                    timer: TimerFacts::default(),
                },
            );
            sim.log[n..]
                .iter()
                .map(|(_, o)| o.clone())
                .collect::<Vec<_>>()
        };
        // The same offer again: same answer, same version, no media change.
        let out = reinvite(&mut sim, 2000, Some(offer()));
        let [Output::AcceptReInvite { sdp, send: true }] = &out[..] else {
            panic!("{out:?}")
        };
        assert_eq!(o_line(sdp), ("77".into(), "1".into()));
        // Offerless (refresh): unchanged.
        let out = reinvite(&mut sim, 2500, None);
        let [Output::AcceptReInvite { sdp, .. }] = &out[..] else {
            panic!("{out:?}")
        };
        assert_eq!(o_line(sdp).1, "1");
        // Hold: version 2, the tone stops.
        let out = reinvite(
            &mut sim,
            3000,
            Some(offer_with("127.0.0.1", 4000, "0 8", "sendonly")),
        );
        assert!(
            matches!(
                &out[..],
                [Output::AcceptReInvite { send: false, .. }, Output::StopTone]
            ),
            "{out:?}"
        );
        let Output::AcceptReInvite { sdp, .. } = &out[0] else {
            panic!()
        };
        assert_eq!(o_line(sdp), ("77".into(), "2".into()));
        assert!(sdp.contains("a=recvonly"));
        // Resume: version 3, the tone restarts for the rest of the call only.
        let out = reinvite(&mut sim, 4000, Some(offer()));
        let [Output::AcceptReInvite { sdp, send: true }, Output::StartTone(t)] = &out[..] else {
            panic!("{out:?}")
        };
        assert_eq!(o_line(sdp).1, "3");
        assert_eq!(t.duration, Some(MS(7000) + MEDIA_SAFETY_MARGIN));
        // Codec change: version 4, the tone restarts with PCMA.
        let out = reinvite(
            &mut sim,
            5000,
            Some(offer_with("127.0.0.1", 4000, "8", "sendrecv")),
        );
        let [Output::AcceptReInvite { sdp, .. }, Output::StartTone(t)] = &out[..] else {
            panic!("{out:?}")
        };
        assert_eq!(o_line(sdp).1, "4");
        assert_eq!((t.codec, t.payload_type), (Codec::Pcma, 8));
        // A bad offer is refused; the call and its version go on.
        let out = reinvite(&mut sim, 5500, Some("garbage".into()));
        let [Output::RefuseReInvite(r)] = &out[..] else {
            panic!("{out:?}")
        };
        assert_eq!(r.kind.code(), 400);
        let out = reinvite(
            &mut sim,
            5600,
            Some(offer_with("127.0.0.1", 4000, "18", "sendrecv")),
        );
        assert!(matches!(&out[..], [Output::RefuseReInvite(r)] if r.kind.code() == 488));
        // The hangup time is the ACK's + tone, whatever happened meanwhile.
        sim.run_until(Duration::from_secs(60));
        assert_eq!(sim.when("bye"), MS(11_000));
    }

    #[test]
    fn update_offers_are_answered_like_reinvites_and_a_bodyless_update_is_a_refresh() {
        let mut sim = Sim::answered();
        let update = |sim: &mut Sim, at: u64, offer: Option<String>| {
            let n = sim.log.len();
            sim.at(
                MS(at),
                Event::Update {
                    offer,
                    timer: TimerFacts::default(),
                },
            );
            sim.log[n..]
                .iter()
                .map(|(_, o)| o.clone())
                .collect::<Vec<_>>()
        };
        // No body: 200 without one, nothing changes.
        let out = update(&mut sim, 2000, None);
        assert_eq!(
            out,
            [Output::AcceptUpdate {
                sdp: None,
                send: true
            }]
        );
        // Hold by UPDATE: the answer (version 2, recvonly), then the tone stops.
        let out = update(
            &mut sim,
            3000,
            Some(offer_with("127.0.0.1", 4000, "0", "sendonly")),
        );
        let [Output::AcceptUpdate {
            sdp: Some(sdp),
            send: false,
        }, Output::StopTone] = &out[..]
        else {
            panic!("{out:?}")
        };
        assert_eq!(o_line(sdp), ("77".into(), "2".into()));
        assert!(sdp.contains("a=recvonly"));
        // Resume: the tone restarts for the rest of the call.
        let out = update(&mut sim, 4000, Some(offer()));
        let [Output::AcceptUpdate {
            sdp: Some(_),
            send: true,
        }, Output::StartTone(t)] = &out[..]
        else {
            panic!("{out:?}")
        };
        assert_eq!(t.duration, Some(MS(7000) + MEDIA_SAFETY_MARGIN));
        // No common codec: 488, the media stays.
        let out = update(
            &mut sim,
            5000,
            Some(offer_with("127.0.0.1", 4000, "18", "sendrecv")),
        );
        assert!(matches!(&out[..], [Output::RefuseUpdate(r)] if r.kind.code() == 488));
        sim.run_until(Duration::from_secs(60));
        assert_eq!(sim.when("bye"), MS(11_000));
    }

    #[test]
    fn an_initial_offer_without_a_unicast_destination_gets_488_before_anything() {
        for c in ["0.0.0.0", "224.0.0.1", "255.255.255.255"] {
            let body = offer_with(c, 4000, "0", "sendrecv");
            let mut call = CallCore::new(
                settings(),
                &facts(&body),
                Load::default(),
                1,
                Instant::now(),
            );
            let Some(Output::Refuse(r)) = call.poll_output() else {
                panic!("{c}: not refused")
            };
            assert_eq!(r.kind.code(), 488, "{c}: {}", r.reason);
            assert!(
                matches!(call.poll_output(), Some(Output::Finished(_))),
                "{c}: nothing is allocated or answered"
            );
        }
    }

    #[test]
    fn private_destinations_are_refused_only_when_asked() {
        for (refuse, addr, refused) in [
            (false, "10.0.0.1", false),
            (true, "10.0.0.1", true),
            (true, "192.168.7.7", true),
            (true, "127.0.0.1", false),
            (true, "192.0.2.1", false),
        ] {
            let s = Settings {
                refuse_private_destinations: refuse,
                ..settings()
            };
            let body = offer_with(addr, 4000, "0", "sendrecv");
            let got = screen(&s, &facts(&body), Load::default());
            match got {
                Err(r) if refused => {
                    assert_eq!(r.kind.code(), 488, "{addr}");
                    assert!(
                        r.reason.contains("refuse_private_destinations"),
                        "{}",
                        r.reason
                    );
                }
                Ok(_) if !refused => {}
                other => panic!("{addr} (refuse {refuse}): {other:?}"),
            }
        }
    }

    #[test]
    fn a_reinvite_to_the_unspecified_address_is_hold() {
        let mut sim = Sim::new(settings(), &offer(), Load::default());
        sim.allocated();
        sim.run_until(MS(1000));
        sim.event(Event::Ack { answer: None });
        assert_eq!(sim.kinds().last(), Some(&"start_tone"));
        sim.at(
            MS(2000),
            Event::ReInvite {
                offer: Some(offer_with("0.0.0.0", 4000, "0", "sendrecv")),
                timer: TimerFacts::default(),
            },
        );
        assert_eq!(sim.kinds().last(), Some(&"stop_tone"), "{:?}", sim.kinds());
    }
}
