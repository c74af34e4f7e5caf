//! What the fuzz targets share: the service's call settings from the embedded default
//! configuration, and the SIP request path from a parsed message to our call decision.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use ezk_sip_core::fuzzing::Parsed;
use ezk_sip_types::header::typed::{Contact, ContentType, Require};
use ezk_sip_types::host::Host;
use ezk_sip_types::msg::MessageLine;
use ezk_sip_types::print::AppendCtx;
use ezk_sip_types::Name;
use milliwatt_common::Config;
use milliwatt_signaling_core::call::{CallCore, Event, InviteFacts, Load, Output, Settings};
use milliwatt_signaling_core::dispatch::{
    dispatch, malformed, unsupported_required, Dispatch, RawRequest,
};
use milliwatt_signaling_core::overload::Thresholds;

/// The call settings signaling derives from the embedded default configuration (the mapping
/// of `signaling/src/uas.rs`, `Signaling::bind`), with a fixed domain list.
pub fn settings() -> &'static Settings {
    static SETTINGS: OnceLock<Settings> = OnceLock::new();
    SETTINGS.get_or_init(|| {
        let cfg = Config::from_toml("").expect("the embedded default configuration loads");
        let b = &cfg.behavior;
        Settings {
            answer_after: b
                .auto_answer
                .then(|| Duration::from_millis(b.auto_answer_delay_ms)),
            tone: Duration::from_secs(b.tone_duration_seconds),
            tone_frequency_hz: b.tone_frequency,
            tone_level_dbm0: b.tone_level_dbm0,
            preferred_codecs: cfg.media.preferred_codecs.clone(),
            enable_dtmf: cfg.media.enable_dtmf,
            wait_for_caller_rtp: cfg.media.rtp_start
                == milliwatt_common::config::RtpStart::OnCallerRtp,
            refuse_private_destinations: cfg.media.refuse_private_destinations,
            max_concurrent_calls: b.max_concurrent_calls,
            domains: vec![cfg.sip.domain.clone(), "milliwatt.test".into()],
            // The embedded default has none; a plan only changes the tone's numbers.
            plans: Vec::new(),
            overload: Thresholds {
                max_calls_in_setup: u64::from(cfg.overload.max_calls_in_setup),
                max_pending_allocations: u64::from(cfg.overload.max_pending_allocations),
                max_event_loop_lag: Duration::from_millis(cfg.overload.max_event_loop_lag_ms),
                max_invite_wait: Duration::from_millis(cfg.overload.max_invite_wait_ms),
                max_answer_lateness: Duration::from_millis(cfg.overload.max_answer_lateness_ms),
            },
        }
    })
}

/// What our layer (`UasLayer::receive`, `call_shell::handle_invite`) decides for a request
/// the stack handed it, as far as it goes without a socket: the malformed check, the method
/// dispatch, `Require`, and for a new call the screening and answer of the call core in
/// simulated time (media allocation succeeds at once). Responses are only printed.
///
/// `raw_bytes` is the message as received, for the request-line check; `None` for the messages
/// of a stream after its first (the fuzz target does not know where each begins).
pub fn decide(m: &Parsed, raw_bytes: Option<&[u8]>) {
    let MessageLine::Request(line) = &m.line else {
        // Responses go to client transactions; a server has none open here.
        let _ = m.line.default_print_ctx().to_string();
        return;
    };
    let raw = |name: &Name| {
        m.headers
            .get_raw(name)
            .map(|v| v.as_str())
            .collect::<Vec<_>>()
    };
    let (from, to) = (raw(&Name::FROM), raw(&Name::TO));
    let cseq = raw(&Name::CSEQ);
    // A well-formed request line with the parsed method stands in for the messages whose
    // bytes are unknown.
    let stand_in = format!("{} sip:h SIP/2.0\r\n", line.method);
    let received = RawRequest {
        bytes: raw_bytes.unwrap_or(stand_in.as_bytes()),
        cseq: cseq.first().copied().unwrap_or(""),
        content_lengths: raw(&Name::CONTENT_LENGTH),
        name_addrs: from
            .iter()
            .map(|v| ("From", *v))
            .chain(to.iter().map(|v| ("To", *v)))
            .collect(),
    };
    let method = received.method().to_string();
    if malformed(&received).is_some() {
        return;
    }
    let decision = dispatch(&method, m.base_headers.to.tag.is_some());
    if matches!(decision, Dispatch::NewCall | Dispatch::Options) {
        let required: Vec<Require> = m.headers.get_named().unwrap_or_default();
        if !unsupported_required(required.iter().map(|r| r.0.as_str())).is_empty() {
            return;
        }
    }
    if decision != Dispatch::NewCall {
        return;
    }
    // What call_shell logs and reads from the INVITE.
    let _ = m.base_headers.from.uri.uri.default_print_ctx().to_string();
    let _ = m.base_headers.to.uri.uri.default_print_ctx().to_string();
    let content_type = m
        .headers
        .get_named::<ContentType>()
        .ok()
        .map(|c| c.0.to_string());
    let uri_host_name = match &line.uri.host_port.host {
        Host::Name(n) => Some(n.to_string()),
        _ => None,
    };
    let uri_user = match &line.uri.user_part {
        ezk_sip_types::uri::SipUriUserPart::User(u) => Some(u.to_string()),
        ezk_sip_types::uri::SipUriUserPart::UserPw(up) => Some(up.user.to_string()),
        ezk_sip_types::uri::SipUriUserPart::Empty => None,
    };
    // Session timers and 100rel, read as call_shell reads them.
    let raw = |name: &Name| -> Vec<String> {
        m.headers
            .get_raw(name)
            .map(|v| v.as_str().to_string())
            .collect()
    };
    let tags: Vec<String> = raw(&Name::SUPPORTED)
        .into_iter()
        .chain(raw(&Name::REQUIRE))
        .collect();
    let caller_100rel = milliwatt_signaling_core::session_timer::has_option_tag(
        tags.iter().map(String::as_str),
        "100rel",
    );
    let timer = milliwatt_signaling_core::session_timer::TimerFacts::parse(
        tags.iter().map(String::as_str),
        raw(&Name::SESSION_EXPIRES).first().map(String::as_str),
        raw(&Name::MIN_SE).first().map(String::as_str),
    );
    let facts = InviteFacts {
        has_from_tag: m.base_headers.from.tag.is_some(),
        has_contact: m.headers.get_named::<Contact>().is_ok(),
        uri_host_name: uri_host_name.as_deref(),
        uri_user: uri_user.as_deref(),
        uri_tone: milliwatt_signaling_core::call::UriTone {
            freq: line.uri.uri_params.get_val("freq").map(|v| v.as_str()),
            level: line.uri.uri_params.get_val("level").map(|v| v.as_str()),
            duration: line.uri.uri_params.get_val("duration").map(|v| v.as_str()),
        },
        content_type: content_type.as_deref(),
        body: &m.body,
        timer,
        caller_100rel,
        srtp_key: [7; 30],
    };
    let start = Instant::now();
    let mut core = CallCore::new(settings().clone(), &facts, Load::default(), 1, start);
    run_to_answer(&mut core, start);
}

/// Drives a call the screening accepted until it answers (or ends): allocation succeeds at
/// once and timers fire on time. Bounded: a call answers after a handful of steps.
fn run_to_answer(core: &mut CallCore, start: Instant) {
    let mut now = start;
    for _ in 0..16 {
        let mut event = None;
        while let Some(out) = core.poll_output() {
            match out {
                Output::Allocate { .. } => {
                    event = Some(Event::Allocated {
                        host: "127.0.0.1".into(),
                        port: 40_000,
                    })
                }
                Output::Answer { sdp } => {
                    assert!(
                        sdp.starts_with("v=0\r\n") && sdp.contains("\r\nm=audio 40000 "),
                        "the answer to an accepted offer is not our SDP: {sdp:?}"
                    );
                    return;
                }
                Output::Finished(_) => return,
                _ => {}
            }
        }
        let event = match event {
            Some(e) => e,
            None => match core.poll_timeout() {
                Some(at) => {
                    now = now.max(at);
                    Event::Timeout
                }
                None => return,
            },
        };
        core.handle(event, now);
    }
    panic!("the call neither answered nor ended after 16 steps");
}
