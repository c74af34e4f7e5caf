//! The SIP shell: an ezk endpoint (dialog and invite layers plus ours) that turns INVITEs into
//! calls. Each call runs in its own task, driven by [`CallPolicy`] and [`sdp`]; media is asked
//! over gRPC. See ../../shared/ezk-notes.md for the ezk path used here.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use bytesstr::BytesStr;
use ezk_sip_core::transport::OutgoingResponse;
use ezk_sip_core::{Endpoint, IncomingRequest, Layer, MayTake};
use ezk_sip_types::header::typed::{Accept, Contact, ContentType, FromTo, RetryAfter};
use ezk_sip_types::host::{Host, HostPort};
use ezk_sip_types::print::AppendCtx;
use ezk_sip_types::uri::{NameAddr, SipUri};
use ezk_sip_types::{Method, Name, StatusCode};
use ezk_sip_ua::dialog::{Dialog, DialogLayer};
use ezk_sip_ua::invite::acceptor::InviteAcceptor;
use ezk_sip_ua::invite::session::{InviteSession, InviteSessionEvent};
use ezk_sip_ua::invite::InviteLayer;
use milliwatt_common::{Config, Health};
use rand::Rng;
use std::sync::atomic::AtomicBool;
use tokio::sync::watch;
use tracing::{info, warn, Instrument};

use crate::call::{Action, CallPolicy, EndReason, Event, Timing};
use crate::media_client::{MediaClient, MediaError, Tone};
use crate::sdp::{self, Negotiated, SdpError};
use crate::stats::Stats;

/// Seconds a 503 asks the caller to wait.
const RETRY_AFTER_SECS: u32 = 5;
/// Media stops the tone by itself this long after signaling's own hangup time (safety net).
const MEDIA_SAFETY_MARGIN: Duration = Duration::from_secs(5);

struct Shared {
    cfg: Config,
    media: MediaClient,
    stats: Arc<Stats>,
    /// Host and port for Contact and Via.
    advertised: HostPort,
    health: Health,
    /// Whether the last media check failed (false until a check fails: before the first check,
    /// calls are tried, and allocation tells).
    media_down: AtomicBool,
    /// Whether the last media check succeeded.
    media_up: AtomicBool,
    /// Bumped when media is lost (unreachable or restarted): calls end with BYE.
    media_lost: watch::Sender<u64>,
    /// Set when the drain grace lapses: remaining calls end with BYE.
    hang_up_all: watch::Sender<bool>,
}

/// How often signaling checks media (and renews its lease): a lost media service is noticed,
/// and its calls hung up, within MEDIA_CHECK_EVERY + MEDIA_CHECK_TIMEOUT.
const MEDIA_CHECK_EVERY: Duration = Duration::from_millis(500);
const MEDIA_CHECK_TIMEOUT: Duration = Duration::from_millis(1000);

struct UasLayer {
    shared: Arc<Shared>,
}

fn random_tag() -> BytesStr {
    format!("{:016x}", rand::rng().random::<u64>()).into()
}

fn ensure_to_tag(resp: &mut OutgoingResponse, tag: &BytesStr) {
    let _ = resp.msg.headers.edit(Name::TO, |to: &mut FromTo| {
        if to.tag.is_none() {
            to.tag = Some(tag.clone());
        }
    });
}

fn host_of(s: &str) -> Host {
    match s.parse::<IpAddr>() {
        Ok(ip) => ip.into(),
        Err(_) => Host::Name(BytesStr::from(s)),
    }
}

#[async_trait::async_trait]
impl Layer for UasLayer {
    fn name(&self) -> &'static str {
        "milliwatt-uas"
    }

    async fn receive(&self, endpoint: &Endpoint, request: MayTake<'_, IncomingRequest>) {
        // Only out-of-dialog requests reach this layer: in-dialog ones go to DialogLayer,
        // CANCEL of a ringing call to InviteLayer.
        let method = request.line.method.clone();
        if method == Method::INVITE && request.base_headers.to.tag.is_none() {
            let invite = request.take();
            let shared = self.shared.clone();
            let endpoint = endpoint.clone();
            // A root span per call: its trace id is in every log line of the call and in the
            // media service's spans (gRPC metadata).
            let span = tracing::info_span!(
                parent: None,
                "call",
                call_id = %invite.base_headers.call_id.0,
                trace_id = tracing::field::Empty,
            );
            span.record(
                "trace_id",
                tracing::field::display(milliwatt_common::telemetry::current_trace_id(&span)),
            );
            tokio::spawn(handle_invite(shared, endpoint, invite).instrument(span));
        } else if method == Method::OPTIONS {
            let mut req = request.take();
            let mut resp = endpoint.create_response(&req, StatusCode::OK, None);
            ensure_to_tag(&mut resp, &random_tag());
            resp.msg.headers.insert_named(endpoint.allowed());
            resp.msg
                .headers
                .insert_named(&Accept(BytesStr::from_static("application/sdp")));
            let tsx = endpoint.create_server_tsx(&mut req);
            match tsx.respond(resp).await {
                Ok(()) => self.shared.stats.response(200),
                Err(e) => warn!(error = %e, "sending 200 to OPTIONS failed"),
            }
        } else if method == Method::ACK
            || method == Method::BYE
            || method == Method::CANCEL
            || method == Method::INVITE
        {
            // Stray ACK: nothing to do. BYE, CANCEL and re-INVITE for unknown dialogs or
            // transactions: the endpoint answers 481.
        } else {
            let mut req = request.take();
            let mut resp = endpoint.create_response(&req, StatusCode::METHOD_NOT_ALLOWED, None);
            ensure_to_tag(&mut resp, &random_tag());
            resp.msg.headers.insert_named(endpoint.allowed());
            let tsx = endpoint.create_server_tsx(&mut req);
            match tsx.respond(resp).await {
                Ok(()) => self.shared.stats.response(405),
                Err(e) => warn!(error = %e, "sending 405 failed"),
            }
        }
    }
}

/// Rejects an INVITE before a dialog exists. Waits for the ACK: run it in the call's task.
async fn reject(
    endpoint: &Endpoint,
    mut invite: IncomingRequest,
    code: StatusCode,
    warning: Option<&str>,
    retry_after: bool,
) {
    let mut resp = endpoint.create_response(&invite, code, None);
    ensure_to_tag(&mut resp, &random_tag());
    if retry_after {
        resp.msg
            .headers
            .insert_named(&RetryAfter::new(RETRY_AFTER_SECS));
    }
    if let Some(w) = warning {
        let text = w.replace('"', "'");
        resp.msg
            .headers
            .insert(Name::WARNING, format!("399 milliwatt \"{text}\""));
    }
    let tsx = endpoint.create_server_inv_tsx(&mut invite);
    if let Err(e) = tsx.respond_failure(resp).await {
        tracing::debug!(error = %e, "no ACK for the final response");
    }
}

/// Why an INVITE is refused before the call starts, and with what.
struct Refusal {
    code: StatusCode,
    reason: String,
    retry_after: bool,
    /// The metrics label of this failure.
    label: &'static str,
}

fn refuse(code: StatusCode, reason: impl Into<String>) -> Refusal {
    let reason = reason.into();
    let label = match code.into_u16() {
        400 => "malformed",
        404 => "unknown_domain",
        415 => "unsupported_body",
        488 => "no_acceptable_media",
        503 if reason.contains("shutting down") => "draining",
        503 if reason.contains("media") => "media_unavailable",
        503 => "over_capacity",
        _ => "refused",
    };
    Refusal {
        code,
        reason,
        retry_after: code == StatusCode::SERVICE_UNAVAILABLE,
        label,
    }
}

/// The checks that need no dialog: Request-URI, capacity, SDP offer.
fn screen(shared: &Shared, invite: &IncomingRequest) -> Result<Negotiated, Refusal> {
    if invite.base_headers.from.tag.is_none() {
        return Err(refuse(StatusCode::BAD_REQUEST, "From header has no tag"));
    }
    if invite.headers.get_named::<Contact>().is_err() {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            "missing or invalid Contact header",
        ));
    }
    if let Host::Name(name) = &invite.line.uri.host_port.host {
        let ours = name.eq_ignore_ascii_case(&shared.cfg.sip.domain)
            || name.eq_ignore_ascii_case(&shared.cfg.sip_advertised_host());
        if !ours {
            return Err(refuse(
                StatusCode::NOT_FOUND,
                format!("domain {name} is not served here"),
            ));
        }
    }
    let is_sdp = invite
        .headers
        .get_named::<ContentType>()
        .map(|c| c.0.as_str().eq_ignore_ascii_case("application/sdp"))
        .unwrap_or(false);
    if invite.body.is_empty() {
        return Err(refuse(
            StatusCode::NOT_ACCEPTABLE_HERE,
            "INVITE without SDP offer is not supported",
        ));
    }
    if !is_sdp {
        return Err(refuse(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "body is not application/sdp",
        ));
    }
    let body = std::str::from_utf8(&invite.body)
        .map_err(|_| refuse(StatusCode::BAD_REQUEST, "SDP is not UTF-8"))?;
    let negotiated = sdp::negotiate(
        body,
        &shared.cfg.media.preferred_codecs,
        shared.cfg.media.enable_dtmf,
    )
    .map_err(|e| match e {
        SdpError::Unparseable(r) => {
            refuse(StatusCode::BAD_REQUEST, format!("unparseable SDP: {r}"))
        }
        SdpError::NotAcceptable(r) => refuse(StatusCode::NOT_ACCEPTABLE_HERE, r),
    })?;
    if shared.health.is_draining() {
        return Err(refuse(StatusCode::SERVICE_UNAVAILABLE, "shutting down"));
    }
    if shared.media_down.load(Relaxed) {
        return Err(refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "media service unavailable",
        ));
    }
    let active = shared.stats.active.load(Relaxed);
    if active >= u64::from(shared.cfg.behavior.max_concurrent_calls) {
        return Err(refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{active} calls in progress, max_concurrent_calls reached"),
        ));
    }
    Ok(negotiated)
}

/// Decrements the active-call count when the call task ends, whatever the path.
struct ActiveGuard<'a>(&'a Stats);

impl Drop for ActiveGuard<'_> {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Relaxed);
    }
}

async fn handle_invite(shared: Arc<Shared>, endpoint: Endpoint, invite: IncomingRequest) {
    let from = invite
        .base_headers
        .from
        .uri
        .uri
        .default_print_ctx()
        .to_string();
    let to = invite
        .base_headers
        .to
        .uri
        .uri
        .default_print_ctx()
        .to_string();
    let source = invite.tp_info.source;
    let transport = if invite.tp_info.transport.is_udp() {
        "UDP"
    } else {
        "TCP"
    };
    let invite_received = Instant::now();
    info!(%from, %to, %source, transport, "incoming INVITE");
    shared.stats.total.fetch_add(1, Relaxed);

    let negotiated = match screen(&shared, &invite) {
        Ok(n) => n,
        Err(r) => {
            if r.code == StatusCode::BAD_REQUEST {
                shared.stats.rejected_malformed.fetch_add(1, Relaxed);
            }
            shared.stats.fail(r.label);
            shared.stats.response(r.code.into_u16());
            info!(status = r.code.into_u16(), reason = %r.reason, "call rejected");
            reject(&endpoint, invite, r.code, Some(&r.reason), r.retry_after).await;
            return;
        }
    };
    shared.stats.active.fetch_add(1, Relaxed);
    let _active = ActiveGuard(&shared.stats);

    let mut contact_uri = SipUri::new(shared.advertised.clone());
    if !invite.tp_info.transport.is_udp() {
        contact_uri = contact_uri.uri_param_value("transport", "tcp");
    }
    let dialog = match Dialog::new_server(
        endpoint.clone(),
        &invite,
        Contact::new(NameAddr::uri(contact_uri)),
    ) {
        Ok(d) => d,
        Err(e) => {
            shared.stats.fail("malformed");
            shared.stats.response(400);
            shared.stats.rejected_malformed.fetch_add(1, Relaxed);
            info!(status = 400, reason = %e, "call rejected");
            reject(
                &endpoint,
                invite,
                StatusCode::BAD_REQUEST,
                Some(&e.to_string()),
                false,
            )
            .await;
            return;
        }
    };
    dialog.target_tp_info.lock().await.via_host_port = Some(shared.advertised.clone());
    let call_id = dialog.call_id.0.to_string();
    let mut acceptor = InviteAcceptor::new(dialog, invite);

    // 100 Trying at once (ezk sends none), through the transaction.
    if let Err(e) = provisional(&mut acceptor, StatusCode::TRYING).await {
        warn!(error = %e, "sending 100 Trying failed");
        shared.stats.fail("transport");
        return;
    }
    shared.stats.response(100);

    let allocation = tokio::select! {
        a = shared.media.allocate(&call_id).instrument(tracing::info_span!("sip.invite")) => a,
        _ = acceptor.cancelled() => {
            shared.stats.cancelled.fetch_add(1, Relaxed);
            info!(hangup_by = "caller", reason = %EndReason::CallerCancelled, "call ended before media was allocated");
            return;
        }
    };
    let allocation = match allocation {
        Ok(a) => a,
        Err(e) => {
            shared.stats.fail(match e {
                MediaError::PortsExhausted => "rtp_ports_exhausted",
                MediaError::Unavailable(_) => "media_unavailable",
                _ => "media_refused",
            });
            let (code, retry) = match e {
                MediaError::PortsExhausted | MediaError::Unavailable(_) => {
                    (StatusCode::SERVICE_UNAVAILABLE, true)
                }
                _ => (StatusCode::SERVER_INTERNAL_ERROR, false),
            };
            info!(status = code.into_u16(), reason = %e, "call rejected");
            shared.stats.response(code.into_u16());
            if let Ok(mut resp) = acceptor.create_response(code, None).await {
                if retry {
                    resp.msg
                        .headers
                        .insert_named(&RetryAfter::new(RETRY_AFTER_SECS));
                }
                resp.msg
                    .headers
                    .insert(Name::WARNING, format!("399 milliwatt \"{e}\""));
                let _ = acceptor.respond_failure(resp).await;
            }
            return;
        }
    };
    let session_id = allocation.session_id.clone();
    info!(
        local_rtp = %format!("{}:{}", allocation.host, allocation.port),
        remote_rtp = %negotiated.remote.map(|r| r.to_string()).unwrap_or_else(|| "none (hold)".into()),
        codec = ?negotiated.codec,
        payload_type = negotiated.payload_type,
        dtmf_payload_type = ?negotiated.dtmf_payload_type,
        media_session = %session_id,
        "media allocated"
    );

    let outcome = run_call(&shared, acceptor, &negotiated, &allocation, invite_received).await;
    let reason = outcome.reason;
    match shared
        .media
        .release(&session_id, &reason.to_string())
        .instrument(tracing::info_span!("call.release"))
        .await
    {
        Ok(m) => info!(
            hangup_by = reason.who_hung_up(),
            reason = %reason,
            talk_seconds = format!("{:.1}", outcome.talk.as_secs_f64()),
            call_seconds = format!("{:.1}", outcome.age.as_secs_f64()),
            rtp_packets_sent = m.packets_sent,
            rtp_packets_received = m.packets_received,
            loss_percent = format!("{:.2}", m.loss_percent),
            jitter_ms = format!("{:.2}", m.jitter_ms),
            mos = format!("{:.2}", m.mos),
            dtmf = %m.dtmf_digits,
            "call ended"
        ),
        Err(e) => info!(
            hangup_by = reason.who_hung_up(),
            reason = %reason,
            talk_seconds = format!("{:.1}", outcome.talk.as_secs_f64()),
            release_error = %e,
            "call ended"
        ),
    }
}

struct Outcome {
    reason: EndReason,
    talk: Duration,
    age: Duration,
}

/// Sends a provisional response through the INVITE transaction, so that INVITE
/// retransmissions are answered with it (vendored ezk-sip-core patch). The dialog adds the
/// To-tag to everything but 100 (vendored ezk-sip-ua patch).
async fn provisional(
    acceptor: &mut InviteAcceptor,
    code: StatusCode,
) -> Result<(), ezk_sip_ua::invite::acceptor::Error> {
    let resp = acceptor.create_response(code, None).await?;
    acceptor.respond_provisional(resp).await
}

async fn run_call(
    shared: &Shared,
    mut acceptor: InviteAcceptor,
    negotiated: &Negotiated,
    allocation: &crate::media_client::Allocation,
    invite_received: Instant,
) -> Outcome {
    let b = &shared.cfg.behavior;
    let timing = Timing {
        answer_after: b
            .auto_answer
            .then(|| Duration::from_millis(b.auto_answer_delay_ms)),
        tone: Duration::from_secs(b.tone_duration_seconds),
    };
    let end = |policy: &CallPolicy, reason| Outcome {
        reason,
        talk: policy.talk_time(Instant::now()).unwrap_or_default(),
        age: policy.age(Instant::now()),
    };
    match provisional(&mut acceptor, StatusCode::RINGING).await {
        Ok(()) => shared.stats.response(180),
        Err(e) => warn!(error = %e, "sending 180 Ringing failed"),
    }
    let mut policy = CallPolicy::ringing(timing, Instant::now());
    info!(answer_in_ms = ?timing.answer_after.map(|d| d.as_millis()), "ringing");
    let mut media_lost = shared.media_lost.subscribe();
    let mut hang_up_all = shared.hang_up_all.subscribe();

    // Ringing: wait for the answer time, a CANCEL, or the loss of media.
    loop {
        let deadline = policy.deadline();
        let action = tokio::select! {
            _ = acceptor.cancelled() => policy.on_event(Event::Cancel, Instant::now()),
            _ = sleep_until(deadline) => policy.on_timeout(Instant::now()),
            Ok(()) = media_lost.changed() => policy.on_event(Event::MediaLost, Instant::now()),
            Ok(()) = hang_up_all.changed() => policy.on_event(Event::Shutdown, Instant::now()),
        };
        match action {
            Some(Action::Answer) => break,
            Some(Action::End(EndReason::CallerCancelled)) => {
                shared.stats.cancelled.fetch_add(1, Relaxed);
                shared.stats.response(487);
                return end(&policy, EndReason::CallerCancelled);
            }
            Some(Action::End(reason)) => {
                // Not answered yet: refuse instead of BYE.
                shared.stats.fail(if reason == EndReason::MediaLost {
                    "media_lost"
                } else {
                    "draining"
                });
                shared.stats.response(503);
                if let Ok(mut resp) = acceptor
                    .create_response(StatusCode::SERVICE_UNAVAILABLE, None)
                    .await
                {
                    resp.msg
                        .headers
                        .insert_named(&RetryAfter::new(RETRY_AFTER_SECS));
                    let _ = acceptor.respond_failure(resp).await;
                }
                return end(&policy, reason);
            }
            _ => {}
        }
    }

    // Answer.
    let session_version = 1u64;
    let sdp_session_id = rand::rng().random::<u32>() as u64;
    let answer = sdp::answer(
        negotiated,
        &allocation.host,
        allocation.port,
        sdp_session_id,
        session_version,
    );
    let mut ok = match acceptor.create_response(StatusCode::OK, None).await {
        Ok(r) => r,
        Err(_) => {
            // CANCEL won the race with our answer.
            shared.stats.cancelled.fetch_add(1, Relaxed);
            return end(&policy, EndReason::CallerCancelled);
        }
    };
    ok.msg
        .headers
        .insert_named(&ContentType(BytesStr::from_static("application/sdp")));
    ok.msg.body = Bytes::from(answer);
    info!("answering");
    shared.stats.response(200);
    shared
        .stats
        .answer_latency
        .observe(invite_received.elapsed().as_secs_f64());
    let answer_span = tracing::info_span!("sip.answer");
    let mut session = match acceptor
        .respond_success(ok)
        .instrument(answer_span.clone())
        .await
    {
        // The ACK holds a transaction registration: drop it now, not at the end of the call.
        Ok((session, _ack)) => session,
        Err(e) => {
            shared.stats.fail("no_ack");
            warn!(error = ?e, "no ACK for 200 OK");
            policy.on_event(Event::AckTimeout, Instant::now());
            return end(&policy, EndReason::NoAck);
        }
    };
    policy.on_event(Event::Ack, Instant::now());
    shared.stats.answered.fetch_add(1, Relaxed);
    info!("answered (ACK received)");

    let mut current = negotiated.clone();
    start_or_stop_tone(shared, allocation, &current, timing.tone)
        .instrument(answer_span)
        .await;

    let reason = loop {
        let deadline = policy.deadline();
        let action = tokio::select! {
            _ = sleep_until(deadline) => policy.on_timeout(Instant::now()),
            Ok(()) = media_lost.changed() => policy.on_event(Event::MediaLost, Instant::now()),
            Ok(()) = hang_up_all.changed() => policy.on_event(Event::Shutdown, Instant::now()),
            event = session.run() => match event {
                Ok(InviteSessionEvent::Bye(bye)) => {
                    match session.handle_bye(bye).await {
                        Ok(()) => shared.stats.response(200),
                        Err(e) => warn!(error = %e, "answering BYE failed"),
                    }
                    policy.on_event(Event::Bye, Instant::now())
                }
                Ok(InviteSessionEvent::ReInviteReceived(reinvite)) => {
                    if let Some(n) = handle_reinvite(shared, &mut session, reinvite, allocation, &current).await {
                        current = n;
                        start_or_stop_tone(shared, allocation, &current, policy.deadline().map(|d| d.saturating_duration_since(Instant::now())).unwrap_or(timing.tone)).await;
                    }
                    None
                }
                Ok(InviteSessionEvent::RefreshNeeded) | Ok(InviteSessionEvent::Notify(_)) => None,
                Ok(InviteSessionEvent::Terminated) => policy.on_event(Event::Bye, Instant::now()),
                Err(e) => {
                    warn!(error = %e, "dialog error");
                    policy.on_event(Event::Bye, Instant::now())
                }
            },
        };
        if let Some(Action::End(reason)) = action {
            break reason;
        }
    };
    if reason.we_send_bye() {
        match session
            .terminate()
            .instrument(tracing::info_span!("sip.bye"))
            .await
        {
            Ok(_) => info!(reason = %reason, "BYE sent"),
            Err(e) => warn!(error = %e, "sending BYE failed"),
        }
    }
    end(&policy, reason)
}

async fn start_or_stop_tone(
    shared: &Shared,
    allocation: &crate::media_client::Allocation,
    n: &Negotiated,
    remaining: Duration,
) {
    let b = &shared.cfg.behavior;
    match n.remote.filter(|_| n.send) {
        Some(remote) => {
            let tone = Tone {
                remote,
                codec: n.codec,
                payload_type: n.payload_type,
                frequency_hz: b.tone_frequency,
                level_dbm0: b.tone_level_dbm0,
                duration: remaining + MEDIA_SAFETY_MARGIN,
                dtmf_payload_type: n.dtmf_payload_type,
            };
            match shared.media.start_tone(&allocation.session_id, &tone).await {
                Ok(ssrc) => info!(
                    remote_rtp = %remote,
                    codec = ?n.codec,
                    frequency_hz = b.tone_frequency,
                    ssrc = format!("{ssrc:08x}"),
                    "tone started"
                ),
                Err(e) => warn!(error = %e, "starting the tone failed"),
            }
        }
        None => match shared.media.stop_tone(&allocation.session_id).await {
            Ok(()) => info!(
                direction = n.direction.as_str(),
                "no tone: the caller does not receive (hold)"
            ),
            Err(e) => warn!(error = %e, "stopping the tone failed"),
        },
    }
}

async fn handle_reinvite(
    shared: &Shared,
    session: &mut InviteSession,
    reinvite: ezk_sip_ua::invite::session::ReInviteReceived,
    allocation: &crate::media_client::Allocation,
    current: &Negotiated,
) -> Option<Negotiated> {
    let body = std::str::from_utf8(&reinvite.invite.body).unwrap_or("");
    let negotiated = if body.is_empty() {
        // An offerless re-INVITE (session refresh): answer with the current media.
        Ok(current.clone())
    } else {
        sdp::negotiate(
            body,
            &shared.cfg.media.preferred_codecs,
            shared.cfg.media.enable_dtmf,
        )
    };
    match negotiated {
        Ok(n) => {
            let answer = sdp::answer(&n, &allocation.host, allocation.port, 1, 2);
            let mut resp =
                match session
                    .dialog
                    .create_response(&reinvite.invite, StatusCode::OK, None)
                {
                    Ok(r) => r,
                    Err(e) => {
                        warn!(error = %e, "building the re-INVITE answer failed");
                        return None;
                    }
                };
            resp.msg
                .headers
                .insert_named(&ContentType(BytesStr::from_static("application/sdp")));
            resp.msg.body = Bytes::from(answer);
            info!(send = n.send, remote_rtp = ?n.remote, "re-INVITE answered");
            if let Err(e) = session.handle_reinvite_success(reinvite, resp).await {
                warn!(error = ?e, "no ACK for the re-INVITE answer");
            }
            Some(n)
        }
        Err(e) => {
            let code = match e {
                SdpError::Unparseable(_) => StatusCode::BAD_REQUEST,
                SdpError::NotAcceptable(_) => StatusCode::NOT_ACCEPTABLE_HERE,
            };
            info!(status = code.into_u16(), reason = %e, "re-INVITE rejected; the call goes on");
            if let Ok(mut resp) = session.dialog.create_response(&reinvite.invite, code, None) {
                resp.msg.headers.insert(
                    Name::WARNING,
                    format!("399 milliwatt \"{}\"", e.to_string().replace('"', "'")),
                );
                let _ = reinvite.transaction.respond_failure(resp).await;
            }
            None
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}

/// A bound SIP endpoint.
pub struct Signaling {
    _endpoint: Endpoint,
    shared: Arc<Shared>,
    pub udp: Option<SocketAddr>,
    pub tcp: Option<SocketAddr>,
}

impl Signaling {
    pub async fn bind(
        cfg: Config,
        media: MediaClient,
        health: Health,
    ) -> anyhow::Result<Signaling> {
        let addr = SocketAddr::new(cfg.sip.bind_address, cfg.sip.port);
        let advertised = HostPort {
            host: host_of(&cfg.sip_advertised_host()),
            port: Some(cfg.sip.port),
        };
        let shared = Arc::new(Shared {
            cfg,
            media,
            stats: Arc::default(),
            advertised,
            health,
            media_up: AtomicBool::new(false),
            media_down: AtomicBool::new(false),
            media_lost: watch::channel(0).0,
            hang_up_all: watch::channel(false).0,
        });
        shared.health.set("sip_bound", false);
        shared.health.set("media_reachable", false);
        let mut builder = Endpoint::builder();
        builder.add_layer(DialogLayer::default());
        builder.add_layer(InviteLayer::default());
        builder.add_layer(UasLayer {
            shared: shared.clone(),
        });
        builder.add_allow(Method::OPTIONS);
        builder.add_allow(Method::BYE);
        builder.add_allow(Method::CANCEL);
        builder.add_allow(Method::ACK);
        builder.user_agent(concat!("milliwatt/", env!("CARGO_PKG_VERSION")));
        let t = shared.cfg.sip.transport;
        let mut udp = None;
        let mut tcp = None;
        if t.udp() {
            builder
                .bind_udp(addr)
                .await
                .with_context(|| format!("binding SIP UDP {addr} (sip.bind_address, sip.port)"))?;
            udp = Some(addr);
        }
        if t.tcp() {
            builder.listen_tcp(addr).await.with_context(|| {
                format!("listening SIP TCP {addr} (sip.bind_address, sip.port)")
            })?;
            tcp = Some(addr);
        }
        let endpoint = builder.build();
        shared.health.set("sip_bound", true);
        info!(
            udp = ?udp,
            tcp = ?tcp,
            advertised = %shared.advertised.host,
            domain = %shared.cfg.sip.domain,
            media = %shared.cfg.media.endpoint,
            "SIP endpoint bound"
        );
        Ok(Signaling {
            _endpoint: endpoint,
            shared,
            udp,
            tcp,
        })
    }

    /// Adds the signaling metrics to `/metrics`.
    pub fn register_metrics(
        &self,
        metrics: &mut milliwatt_common::prometheus_client::registry::Registry,
    ) {
        metrics.register_collector(Box::new(crate::stats::StatsCollector(
            self.shared.stats.clone(),
        )));
        metrics.register(
            "milliwatt_answer_latency_seconds",
            "Time from the INVITE to our 200 OK (includes auto_answer_delay_ms)",
            self.shared.stats.answer_latency.clone(),
        );
        metrics.register(
            "milliwatt_media_grpc_latency_seconds",
            "Latency of signaling's gRPC calls to media, by method",
            self.shared.media.latency(),
        );
    }

    /// Watches media (and renews the lease), logs statistics every 30 s, and on `shutdown`
    /// drains: readiness false, new INVITEs 503, calls in progress get `grace` to finish, then
    /// the rest are hung up with BYE.
    pub async fn serve(
        self,
        shutdown: impl Future<Output = ()>,
        grace: Duration,
    ) -> anyhow::Result<()> {
        let shared = self.shared.clone();
        let watcher = tokio::spawn(watch_media(shared.clone()));
        let stats = tokio::spawn({
            let shared = shared.clone();
            async move {
                let every = Duration::from_secs(shared.cfg.log.stats_interval_seconds);
                let mut tick = tokio::time::interval(every);
                tick.tick().await;
                loop {
                    tick.tick().await;
                    info!(stats = %shared.stats.line(), "statistics");
                }
            }
        });
        shutdown.await;
        shared.health.start_draining();
        let active = shared.stats.active.load(Relaxed);
        info!(
            active_calls = active,
            grace_seconds = grace.as_secs(),
            "draining: new calls get 503"
        );
        let deadline = Instant::now() + grace;
        while shared.stats.active.load(Relaxed) > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let left = shared.stats.active.load(Relaxed);
        if left > 0 {
            warn!(
                calls = left,
                "drain grace lapsed: hanging up the remaining calls"
            );
            let _ = shared.hang_up_all.send(true);
            let deadline = Instant::now() + Duration::from_secs(5);
            while shared.stats.active.load(Relaxed) > 0 && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        info!(stats = %shared.stats.line(), "signaling stopping");
        watcher.abort();
        stats.abort();
        Ok(())
    }
}

/// Checks media every MEDIA_CHECK_EVERY (renewing this instance's lease). When media becomes
/// unreachable or restarts (its instance id changes), calls are told to end with BYE and new
/// INVITEs get 503 until it answers again.
async fn watch_media(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(MEDIA_CHECK_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut instance: Option<String> = None;
    loop {
        tick.tick().await;
        match shared.media.renew(MEDIA_CHECK_TIMEOUT).await {
            Ok(id) => {
                if instance.as_ref().is_some_and(|old| *old != id) {
                    warn!("media service restarted: its sessions are gone");
                    shared.media_lost.send_modify(|n| *n += 1);
                }
                instance = Some(id);
                shared.media_down.store(false, Relaxed);
                if !shared.media_up.swap(true, Relaxed) {
                    info!(media = %shared.cfg.media.endpoint, "media service reachable");
                    shared.health.set("media_reachable", true);
                }
            }
            Err(e) => {
                shared.media_down.store(true, Relaxed);
                if shared.media_up.swap(false, Relaxed) {
                    warn!(error = %e, "media service lost: ending calls, new calls get 503");
                    shared.health.set("media_reachable", false);
                    shared.media_lost.send_modify(|n| *n += 1);
                } else if instance.is_none() {
                    // Never reached yet (startup).
                    tracing::debug!(error = %e, "media service not reachable yet");
                }
            }
        }
    }
}
