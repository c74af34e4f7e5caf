//! The I/O of one call: reads the INVITE into [`InviteFacts`], feeds what happens on the wire
//! and in media into a [`CallCore`], and executes its outputs with ezk and the media client.
//! It decides nothing: every branch here is "the core said so" or "the wire said so".

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use bytesstr::BytesStr;
use ezk_sip_core::transport::OutgoingResponse;
use ezk_sip_core::{Endpoint, IncomingRequest};
use ezk_sip_types::header::typed::{Contact, ContentType, RetryAfter};
use ezk_sip_types::host::Host;
use ezk_sip_types::print::AppendCtx;
use ezk_sip_types::uri::{NameAddr, SipUri};
use ezk_sip_types::{Name, StatusCode};
use ezk_sip_ua::dialog::Dialog;
use ezk_sip_ua::invite::acceptor::InviteAcceptor;
use ezk_sip_ua::invite::session::{
    InfoEvent, InviteSession, InviteSessionEvent, ReInviteReceived, UpdateEvent,
};
use milliwatt_media_core::session::Figures;
use milliwatt_signaling_core::call::{
    CallCore, EndReason, Event, InviteFacts, Load, Output, Refusal, RefusalKind, Summary,
};
use milliwatt_signaling_core::info::{self, InfoAnswer};
use milliwatt_signaling_core::overload::{Signals, LATE_ANSWERS};
use milliwatt_signaling_core::rtp_stat::{self, RtpStat};
use milliwatt_signaling_core::session_timer::{self, BadTimerHeader, SessionTimer, TimerFacts};
use milliwatt_signaling_core::vq_report::{self, VqReport};
use rand::Rng;
use tracing::{info, warn, Instrument};

use crate::media_client::MediaError;
use crate::media_pool::Allocation;
use crate::stats::{AnswerDue, Held};
use crate::uas::{ensure_to_tag, random_tag, Shared, SourceSlot};

type AllocationFuture = Pin<Box<dyn Future<Output = Result<Allocation, MediaError>> + Send>>;
/// Our session refresh (RFC 4028): the 2xx's `Session-Expires`, or why it failed.
type RefreshFuture = Pin<Box<dyn Future<Output = RefreshResult> + Send>>;
type RefreshResult = Result<Option<(u32, Option<&'static str>)>, String>;

/// Decrements the active-call count when the call task ends, whatever the path.
struct ActiveGuard(Arc<Shared>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.stats.active.fetch_sub(1, Relaxed);
    }
}

/// Everything the shell holds for one call: the SIP objects in the order the call needs them.
struct CallIo {
    shared: Arc<Shared>,
    endpoint: Endpoint,
    /// The INVITE, until the dialog takes it. Boxed, like the re-INVITE and UPDATE below: each
    /// is over a kilobyte and the call's task would carry the room for all three for the whole
    /// call (memory per call).
    invite: Option<Box<IncomingRequest>>,
    acceptor: Option<InviteAcceptor>,
    session: Option<InviteSession>,
    /// A re-INVITE waiting for the core's answer.
    reinvite: Option<Box<ReInviteReceived>>,
    /// An UPDATE waiting for the core's answer.
    update: Option<Box<UpdateEvent>>,
    allocating: Option<AllocationFuture>,
    allocation: Option<Allocation>,
    /// Changes when the media instance holding this call's session is lost or restarts.
    media_lost: Option<tokio::sync::watch::Receiver<u64>>,
    cancel_seen: bool,
    hang_up_seen: bool,
    call_id: String,
    /// The `sip.answer` span, parent of the first StartTone.
    answer_span: Option<tracing::Span>,
    /// Boxed: 192 bytes that only the call's last moments use.
    figures: Option<Box<Result<Figures, MediaError>>>,
    /// The codec of the tone last started, and when the ACK came: for `X-RTP-Stat`.
    codec: Option<String>,
    acked_at: Option<Instant>,
    received: Instant,
    _active: Option<ActiveGuard>,
    /// Counted in `in_setup` from the 100 Trying to the ACK (or the end).
    in_setup: Option<Held>,
    /// In the answer queue (overload.max_answer_lateness_ms) from the 100 Trying to the 200 OK.
    answer_due: Option<AnswerDue>,
    /// The caller's INVITE allowed UPDATE: our session refreshes are UPDATEs (else re-INVITEs).
    refresh_by_update: bool,
    /// Our session refresh in flight.
    refreshing: Option<RefreshFuture>,
    /// For the RFC 6035 report: our URI and the caller's (as printed), the caller's tag and
    /// ours, our stream (SSRC, payload type), and when the call was answered (wall clock).
    local_id: String,
    remote_id: String,
    from_tag: String,
    to_tag: String,
    stream: Option<(u32, u8)>,
    acked_wall: Option<std::time::SystemTime>,
    /// Frees the caller's per-source slot when the call ends.
    _source_slot: SourceSlot,
}

/// One out-of-dialog INVITE: reads it and returns the future that runs the call to its end.
/// `received` and `signals` are what admission measured when the INVITE was dispatched; `slot`
/// is freed when the call ends.
pub(crate) fn handle_invite(
    shared: Arc<Shared>,
    endpoint: Endpoint,
    invite: IncomingRequest,
    received: Instant,
    signals: Signals,
    slot: SourceSlot,
) -> impl Future<Output = ()> + Send + 'static {
    let print = |u: &SipUri| u.default_print_ctx().to_string();
    let from = print(&invite.base_headers.from.uri.uri);
    let to = print(&invite.base_headers.to.uri.uri);
    let source = invite.tp_info.source;
    let transport = if invite.tp_info.transport.is_udp() {
        "UDP"
    } else if invite.tp_info.transport.is_secure() {
        "TLS"
    } else {
        "TCP"
    };
    // How long the INVITE waited between reaching the host (the kernel's receive time over
    // UDP) and its admission: what `overload.max_invite_wait_ms` compared.
    let waited_ms = signals.invite_wait.as_secs_f64() * 1e3;
    info!(%from, %to, %source, transport, waited_ms = format_args!("{waited_ms:.1}"), "incoming INVITE");
    let from_tag = invite.base_headers.from.tag.as_ref().map(|t| t.to_string());
    shared.stats.total.fetch_add(1, Relaxed);

    let content_type = invite
        .headers
        .get_named::<ContentType>()
        .ok()
        .map(|c| c.0.to_string());
    let uri_host_name = match &invite.line.uri.host_port.host {
        Host::Name(n) => Some(n.to_string()),
        _ => None,
    };
    let uri_user = match &invite.line.uri.user_part {
        ezk_sip_types::uri::SipUriUserPart::User(u) => Some(u.to_string()),
        ezk_sip_types::uri::SipUriUserPart::UserPw(up) => Some(up.user.to_string()),
        ezk_sip_types::uri::SipUriUserPart::Empty => None,
    };
    let params = &invite.line.uri.uri_params;
    let (freq, level, duration) = (
        params.get_val("freq").map(|v| v.to_string()),
        params.get_val("level").map(|v| v.to_string()),
        params.get_val("duration").map(|v| v.to_string()),
    );
    let (timer, caller_100rel) = extension_facts(&invite);
    let allow = raw_values(&invite, &Name::ALLOW);
    let refresh_by_update =
        session_timer::refresh_with_update(&allow.iter().map(String::as_str).collect::<Vec<_>>());
    let facts = InviteFacts {
        has_from_tag: invite.base_headers.from.tag.is_some(),
        has_contact: invite.headers.get_named::<Contact>().is_ok(),
        uri_host_name: uri_host_name.as_deref(),
        uri_user: uri_user.as_deref(),
        uri_tone: milliwatt_signaling_core::call::UriTone {
            freq: freq.as_deref(),
            level: level.as_deref(),
            duration: duration.as_deref(),
        },
        content_type: content_type.as_deref(),
        body: &invite.body,
        timer,
        caller_100rel,
        // SDES keys (used when the offer is RTP/SAVP): ThreadRng is a CSPRNG seeded by the OS.
        srtp_key: rand::rng().random(),
    };
    let load = Load {
        draining: shared.health.is_draining(),
        media_down: shared.media.is_down(),
        active_calls: shared.stats.active.load(Relaxed),
        signals,
    };
    let core = CallCore::new(
        shared.call_settings.clone(),
        &facts,
        load,
        u64::from(rand::rng().random::<u32>()),
        received,
    );
    let call_id = invite.base_headers.call_id.0.to_string();
    let io = CallIo {
        shared,
        endpoint,
        invite: Some(Box::new(invite)),
        acceptor: None,
        session: None,
        reinvite: None,
        update: None,
        allocating: None,
        allocation: None,
        media_lost: None,
        cancel_seen: false,
        hang_up_seen: false,
        call_id,
        answer_span: None,
        figures: None,
        codec: None,
        acked_at: None,
        received,
        _active: None,
        in_setup: None,
        answer_due: None,
        refresh_by_update,
        refreshing: None,
        local_id: format!("<{to}>"),
        remote_id: format!("<{from}>"),
        from_tag: from_tag.unwrap_or_default(),
        to_tag: String::new(),
        stream: None,
        acked_wall: None,
        _source_slot: slot,
    };
    io.run(core)
}

/// What admission looks at (`[overload]`), measured at `now` for a new INVITE that waited
/// `invite_wait` to be read; the wait is also kept for `/metrics`.
pub(crate) fn signals(shared: &Shared, now: Instant, invite_wait: Duration) -> Signals {
    shared.stats.invite_wait_us.store(
        u64::try_from(invite_wait.as_micros()).unwrap_or(u64::MAX),
        Relaxed,
    );
    Signals {
        calls_in_setup: shared.stats.in_setup.load(Relaxed),
        pending_allocations: shared.stats.pending_allocations.load(Relaxed),
        event_loop_lag: Duration::from_micros(shared.stats.event_loop_lag_us.load(Relaxed)),
        answer_lateness: shared.stats.answer_queue_lateness(now, LATE_ANSWERS),
        invite_wait,
    }
}

/// Why a new call is refused before it starts, with 503 and Retry-After.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shed {
    /// Measured load (`[overload]`).
    Overload,
    /// A per-source limit (`[sources]`).
    SourceLimit,
}

/// A new INVITE refused by measured load (`overload::admit` said so before any call state was
/// made) or a source limit: 503 with Retry-After, sent statelessly (RFC 3261 8.2.7) — no
/// transaction, no task, no retransmission timer; the caller's ACK is absorbed and a
/// retransmitted INVITE is judged again. Under overload this is all the work a shed call costs,
/// so the answer path keeps its CPU.
pub(crate) async fn shed(
    shared: &Shared,
    endpoint: &Endpoint,
    invite: IncomingRequest,
    why: String,
    kind: Shed,
) {
    let code = count_shed(
        shared,
        invite.base_headers.call_id.0.as_str(),
        invite.tp_info.source,
        &why,
        kind,
    );
    let mut resp = endpoint.create_response(&invite, StatusCode::from(code), None);
    // Stateless (no INVITE server transaction kept for a call never taken): a retransmitted
    // INVITE gets the same To-tag again.
    ensure_to_tag(&mut resp, &crate::uas::stateless_tag(&invite));
    refusal_headers(&mut resp, RefusalKind::Overloaded, &why);
    if let Err(e) = endpoint.send_outgoing_response(&mut resp).await {
        warn!(error = %e, "sending 503 to a shed INVITE failed");
    }
}

/// A shed call's counters and log line (its answer is sent by the caller: [`shed`], or the
/// early shed on the datagram's bytes); the status code to answer with.
pub(crate) fn count_shed(
    shared: &Shared,
    call_id: &str,
    source: std::net::SocketAddr,
    why: &str,
    kind: Shed,
) -> u16 {
    shared.stats.total.fetch_add(1, Relaxed);
    let (counter, label, what) = match kind {
        Shed::Overload => (
            &shared.stats.shed,
            RefusalKind::Overloaded.label(),
            "call shed",
        ),
        Shed::SourceLimit => (
            &shared.stats.source_limited,
            "source_limit",
            "call refused by a source limit",
        ),
    };
    counter.fetch_add(1, Relaxed);
    shared.stats.fail(label);
    let code = RefusalKind::Overloaded.code();
    shared.stats.response(code);
    info!(
        call_id = %call_id,
        source = %source,
        status = code,
        reason = %why,
        "{what}"
    );
    code
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}

/// Resolves when the acceptor sees a CANCEL (never without an acceptor).
async fn cancelled(acceptor: Option<&mut InviteAcceptor>) {
    match acceptor {
        Some(a) => a.cancelled().await,
        None => std::future::pending().await,
    }
}

/// Resolves when the media instance holding the session is lost (never before allocation).
async fn media_lost(lost: Option<&mut tokio::sync::watch::Receiver<u64>>) {
    match lost {
        Some(l) => {
            if l.changed().await.is_err() {
                std::future::pending::<()>().await
            }
        }
        None => std::future::pending().await,
    }
}

async fn allocated(f: Option<&mut AllocationFuture>) -> Result<Allocation, MediaError> {
    match f {
        Some(f) => f.await,
        None => std::future::pending().await,
    }
}

async fn refreshed(f: Option<&mut RefreshFuture>) -> RefreshResult {
    match f {
        Some(f) => f.await,
        None => std::future::pending().await,
    }
}

/// Every value of header `name`, as written.
fn raw_values(request: &IncomingRequest, name: &Name) -> Vec<String> {
    request
        .headers
        .get_raw(name)
        .map(|v| v.as_str().to_string())
        .collect()
}

/// What a request says of session timers (RFC 4028) and whether it supports or requires 100rel.
fn extension_facts(request: &IncomingRequest) -> (Result<TimerFacts, BadTimerHeader>, bool) {
    let raw = |name: &Name| raw_values(request, name);
    let tags: Vec<String> = raw(&Name::SUPPORTED)
        .into_iter()
        .chain(raw(&Name::REQUIRE))
        .collect();
    let timer = TimerFacts::parse(
        tags.iter().map(String::as_str),
        raw(&Name::SESSION_EXPIRES).first().map(String::as_str),
        raw(&Name::MIN_SE).first().map(String::as_str),
    );
    let caller_100rel = session_timer::has_option_tag(tags.iter().map(String::as_str), "100rel");
    (timer, caller_100rel)
}

/// The session timer facts of an in-dialog request (a caller's refresh); a malformed header
/// counts as none (the request itself is answered on its offer).
fn timer_facts(request: &IncomingRequest) -> TimerFacts {
    extension_facts(request).0.unwrap_or_else(|e| {
        warn!(error = %e, "ignoring a malformed session timer header");
        TimerFacts::default()
    })
}

/// `Session-Expires` (and `Require: timer` when the caller supports it) in a 2xx (RFC 4028 §9).
fn timer_headers(resp: &mut OutgoingResponse, timer: Option<SessionTimer>) {
    if let Some(t) = timer {
        resp.msg
            .headers
            .insert(Name::SESSION_EXPIRES, t.response_header());
        if t.caller_supports {
            resp.msg.headers.insert(Name::REQUIRE, "timer");
        }
    }
}

/// Sends our session refresh (RFC 4028 §7.4): UPDATE without a body, or a re-INVITE offering
/// `sdp` (our current media) and its ACK; the 2xx's `Session-Expires`, or why it failed.
fn refresh(
    session: &InviteSession,
    timer: SessionTimer,
    by_update: bool,
    sdp: String,
) -> RefreshFuture {
    let endpoint = session.endpoint.clone();
    let dialog = session.dialog.clone();
    Box::pin(
        async move {
            let method = if by_update {
                ezk_sip_types::Method::UPDATE
            } else {
                ezk_sip_types::Method::INVITE
            };
            let mut req = dialog.create_request(method.clone(), None);
            req.headers
                .insert(Name::SESSION_EXPIRES, timer.request_header());
            req.headers.insert(Name::SUPPORTED, "timer");
            if !by_update {
                req.headers
                    .insert_named(&ContentType(BytesStr::from_static("application/sdp")));
                req.body = Bytes::from(sdp);
            }
            let response = {
                let mut target = dialog.target_tp_info.lock().await;
                if by_update {
                    let mut tsx = endpoint
                        .send_request(req, &mut target)
                        .await
                        .map_err(|e| e.to_string())?;
                    drop(target);
                    tsx.receive_final().await.map_err(|e| e.to_string())?
                } else {
                    let mut tsx = endpoint
                        .send_invite(req, &mut target)
                        .await
                        .map_err(|e| e.to_string())?;
                    drop(target);
                    let mut success = None;
                    while let Some(r) = tsx.receive().await.map_err(|e| e.to_string())? {
                        match r.line.code.into_u16() {
                            100..=199 => {}
                            200..=299 => {
                                let mut ack = ezk_sip_ua::invite::create_ack(
                                    &dialog,
                                    r.base_headers.cseq.cseq,
                                )
                                .await
                                .map_err(|e| e.to_string())?;
                                endpoint
                                    .send_outgoing_request(&mut ack)
                                    .await
                                    .map_err(|e| e.to_string())?;
                                success = Some(r);
                                break;
                            }
                            _ => {
                                success = Some(r);
                                break;
                            }
                        }
                    }
                    success.ok_or("no final response")?
                }
            };
            let code = response.line.code.into_u16();
            if !(200..300).contains(&code) {
                return Err(format!("{method} answered {code}"));
            }
            let se = response
                .headers
                .get_raw(&Name::SESSION_EXPIRES)
                .next()
                .map(|v| v.as_str().to_string());
            let se = TimerFacts::parse([], se.as_deref(), None)
                .map_err(|e| format!("the {method} 2xx: {e}"))?
                .session_expires;
            info!(%method, status = code, "session refreshed");
            Ok(se)
        }
        .in_current_span(),
    )
}

/// Sends an RFC 6035 report to the collector by PUBLISH (Event: vq-rtcpxr) and logs the answer.
async fn publish_report(
    endpoint: Endpoint,
    advertised: ezk_sip_types::host::HostPort,
    collector: SipUri,
    body: String,
) {
    let local = NameAddr::uri(SipUri::new(advertised.clone()));
    let contact = Contact::new(NameAddr::uri(SipUri::new(advertised.clone())));
    let mut builder =
        ezk_sip_ua::dialog::ClientDialogBuilder::new(endpoint.clone(), local, contact, collector);
    builder.target_tp_info.via_host_port = Some(advertised);
    let mut req = builder.create_request(ezk_sip_types::Method::PUBLISH, None);
    req.headers.insert(Name::EVENT, vq_report::EVENT);
    req.headers
        .insert_named(&ContentType(BytesStr::from_static(vq_report::CONTENT_TYPE)));
    req.body = Bytes::from(body);
    let result = async {
        let mut tsx = endpoint
            .send_request(req, &mut builder.target_tp_info)
            .await?;
        tsx.receive_final().await
    }
    .await;
    match result {
        Ok(r) if (200..300).contains(&r.line.code.into_u16()) => {
            info!(
                status = r.line.code.into_u16(),
                "quality report published (RFC 6035)"
            )
        }
        Ok(r) => warn!(
            status = r.line.code.into_u16(),
            "the quality collector refused the report"
        ),
        Err(e) => warn!(error = %e, "publishing the quality report failed"),
    }
}

/// Boxed: an event is 1.3 KB (a re-INVITE or UPDATE inside), and the call's task would keep
/// room for one in its select's output for the whole call.
async fn dialog_event(
    session: Option<&mut InviteSession>,
) -> Box<Result<InviteSessionEvent, ezk_sip_core::Error>> {
    match session {
        Some(s) => Box::new(s.run().await),
        None => std::future::pending().await,
    }
}

/// `Warning: 399 milliwatt "<text>"` (RFC 3261 20.43): why we answered as we did.
pub(crate) fn warning(resp: &mut OutgoingResponse, text: &str) {
    resp.msg.headers.insert(
        Name::WARNING,
        format!("399 milliwatt \"{}\"", text.replace('"', "'")),
    );
}

/// What every refusal of a call carries: Retry-After when it is about our state, `Min-SE` with
/// a 422 (RFC 4028 §9), and the reason.
fn refusal_headers(resp: &mut OutgoingResponse, kind: RefusalKind, reason: &str) {
    if let Some(s) = kind.retry_after() {
        resp.msg.headers.insert_named(&RetryAfter::new(s));
    }
    if kind == RefusalKind::SessionIntervalTooSmall {
        resp.msg
            .headers
            .insert(Name::MIN_SE, session_timer::MIN_SE_SECS.to_string());
    }
    warning(resp, reason);
}

impl CallIo {
    /// The call, to its end. Not an `async fn`: one moves its arguments into its future and
    /// then into locals of the future's body, so the call's state (CallIo and CallCore, 1.7 KB)
    /// would take twice its room for the whole call (rust-lang/rust#62958). The block below
    /// keeps them where it captured them.
    #[allow(clippy::manual_async_fn)] // on purpose: see above
    fn run(mut self, mut core: CallCore) -> impl Future<Output = ()> + Send + 'static {
        async move { self.drive(&mut core).await }
    }

    async fn drive(&mut self, core: &mut CallCore) {
        let hang_up_all = self.shared.hang_up_all.clone();
        loop {
            while let Some(output) = core.poll_output() {
                // Boxed: the call's task would otherwise hold the largest of these futures (an
                // answer, a BYE, a release) for the whole call; boxed, each lives only while it
                // runs (memory per call).
                if let Some(event) = Box::pin(self.execute(output, core)).await {
                    core.handle(event, Instant::now());
                }
            }
            if core.is_finished() {
                return;
            }
            let Some(event) = self.next_event(core, &hang_up_all).await else {
                continue;
            };
            core.handle(event, Instant::now());
        }
    }

    /// What happens next to the call: a timer, media, the caller, or the service.
    async fn next_event(
        &mut self,
        core: &CallCore,
        hang_up_all: &tokio_util::sync::CancellationToken,
    ) -> Option<Event> {
        Some(tokio::select! {
            _ = sleep_until(core.poll_timeout()) => Event::Timeout,
            a = allocated(self.allocating.as_mut()) => {
                self.allocating = None;
                match a {
                    Ok(a) => {
                        let e = Event::Allocated {
                            host: a.reserved.host.clone(),
                            port: a.reserved.port,
                        };
                        self.media_lost = Some(a.placed.member.lost());
                        self.allocation = Some(a);
                        e
                    }
                    Err(e) => Event::AllocationFailed(e),
                }
            }
            _ = cancelled(self.acceptor.as_mut()), if !self.cancel_seen => {
                self.cancel_seen = true;
                Event::Cancel
            }
            r = refreshed(self.refreshing.as_mut()) => {
                self.refreshing = None;
                if let Err(e) = &r {
                    warn!(error = %e, "our session refresh failed");
                }
                Event::Refreshed(r)
            }
            _ = media_lost(self.media_lost.as_mut()) => {
                self.media_lost = None;
                Event::MediaLost
            }
            _ = hang_up_all.cancelled(), if !self.hang_up_seen => {
                self.hang_up_seen = true;
                Event::Shutdown
            }
            // Boxed: ezk's session future (a BYE, a refresh inside) would otherwise sit in
            // this task's state for the whole call. With the three boxed requests above, the
            // boxed event and `run` not an async fn, the call's future went from 19.3 to 2.4 KB.
            e = Box::pin(dialog_event(self.session.as_mut())) => match Box::pin(self.dialog_event(e)).await {
                Some(e) => e,
                None => return None,
            },
        })
    }

    async fn dialog_event(
        &mut self,
        e: Box<Result<InviteSessionEvent, ezk_sip_core::Error>>,
    ) -> Option<Event> {
        Some(match *e {
            Ok(InviteSessionEvent::Bye(bye)) => {
                // Media first: the 200 carries the final figures.
                self.release_early(EndReason::CallerHungUp).await;
                let stat = self.rtp_stat();
                let session = self.session.as_mut().expect("polled only with a session");
                let add = |r: &mut OutgoingResponse| {
                    if let Some(v) = stat {
                        r.msg
                            .headers
                            .insert(Name::unknown(rtp_stat::HEADER.into()), v);
                    }
                };
                match session.handle_bye_with(bye, add).await {
                    Ok(()) => self.shared.stats.response(200),
                    Err(e) => warn!(error = %e, "answering BYE failed"),
                }
                Event::Bye
            }
            Ok(InviteSessionEvent::ReInviteReceived(r)) => {
                let body = String::from_utf8_lossy(&r.invite.body).into_owned();
                let timer = timer_facts(&r.invite);
                self.reinvite = Some(Box::new(r));
                Event::ReInvite {
                    offer: (!body.trim().is_empty()).then_some(body),
                    timer,
                }
            }
            Ok(InviteSessionEvent::Update(u)) => {
                let body = String::from_utf8_lossy(&u.update.body).into_owned();
                let timer = timer_facts(&u.update);
                self.update = Some(Box::new(u));
                Event::Update {
                    offer: (!body.trim().is_empty()).then_some(body),
                    timer,
                }
            }
            Ok(InviteSessionEvent::Info(info)) => {
                self.answer_info(info).await;
                return None;
            }
            // ezk's own session timer is off (vendor patch 0028: the core runs RFC 4028), and
            // NOTIFY is not this product's business.
            Ok(InviteSessionEvent::RefreshNeeded) | Ok(InviteSessionEvent::Notify(_)) => {
                return None
            }
            Ok(InviteSessionEvent::Terminated) => Event::DialogEnded,
            Err(e) => {
                warn!(error = %e, "dialog error");
                Event::DialogEnded
            }
        })
    }

    /// While a reliable provisional response waits for the caller's PRACK, this call's answer
    /// waits on the caller, not on us: it leaves the answer queue (which
    /// `overload.max_answer_lateness_ms` judges), lest a caller that never PRACKs make the
    /// service shed everyone else for 32 s.
    fn pause_answer_due(&mut self, reliable: bool) -> Option<Instant> {
        if reliable {
            self.answer_due.take().map(|d| d.due())
        } else {
            None
        }
    }

    /// Back in the answer queue after the PRACK, due no earlier than now.
    fn resume_answer_due(&mut self, paused: Option<Instant>) {
        if let Some(due) = paused {
            self.answer_due = Some(AnswerDue::new(
                self.shared.stats.clone(),
                due.max(Instant::now()),
            ));
        }
    }

    /// Releases the media session, once, keeping its final figures: the core's `Release`, or
    /// earlier, before a BYE we send or our 200 to the caller's BYE, so that either carries
    /// them (`X-RTP-Stat`).
    async fn release_early(&mut self, reason: EndReason) {
        if self.figures.is_some() {
            return;
        }
        let Some(a) = self.allocation.as_ref() else {
            return;
        };
        let (id, media) = (&a.reserved.session_id, &a.placed.member.client);
        self.figures = Some(Box::new(
            media
                .release(id, &reason.to_string())
                .instrument(tracing::info_span!("call.release"))
                .await,
        ));
    }

    /// The `X-RTP-Stat` value from the released session's figures, when there are any.
    /// The call's RFC 6035 report, from media's final figures.
    fn vq_report(&self) -> Option<String> {
        let Some(Ok(f)) = self.figures.as_deref() else {
            return None;
        };
        let q = &f.quality;
        let a = self.allocation.as_ref()?;
        let (ssrc, payload_type) = self.stream.unwrap_or((0, 0));
        let start = self.acked_wall?;
        Some(vq_report::body(&VqReport {
            call_id: self.call_id.clone(),
            local_id: self.local_id.clone(),
            remote_id: self.remote_id.clone(),
            local_host: a.reserved.host.clone(),
            local_port: a.reserved.port,
            local_ssrc: ssrc,
            remote_addr: q.rtp_source.filter(|_| q.packets_received > 0),
            remote_ssrc: (q.packets_received > 0).then_some(q.rtp_ssrc),
            start,
            stop: std::time::SystemTime::now(),
            payload_type,
            codec: self.codec.clone().unwrap_or_else(|| "-".into()),
            loss_percent: q.loss_percent,
            jitter_ms: q.jitter_ms,
            rtt_ms: (q.rtt_ms > 0.0).then_some(q.rtt_ms),
            mos: (q.packets_received > 0).then_some(q.mos),
            to_tag: self.to_tag.clone(),
            from_tag: self.from_tag.clone(),
        }))
    }

    fn rtp_stat(&self) -> Option<String> {
        let Some(Ok(f)) = self.figures.as_deref() else {
            return None;
        };
        let q = &f.quality;
        Some(rtp_stat::value(&RtpStat {
            packets_sent: f.packets_sent,
            packets_received: q.packets_received,
            bytes_received: q.bytes_received,
            packets_lost: q.packets_lost,
            loss_percent: q.loss_percent,
            jitter_ms: q.jitter_ms,
            rtt_ms: q.rtt_ms,
            mos: q.mos,
            codec: self.codec.clone().unwrap_or_else(|| "-".into()),
            talk_seconds: self.acked_at.map_or(0, |t| t.elapsed().as_secs()),
        }))
    }

    /// An INFO inside the call (RFC 6086): a DTMF digit is reported to media with the RTP ones
    /// (the session's digits, the `dtmf=` of "call ended", KIND_DTMF events) and answered 200;
    /// an empty INFO 200; another body 415 with Accept; a DTMF body we cannot read 400.
    async fn answer_info(&mut self, info: InfoEvent) {
        let content_type = info
            .info
            .headers
            .get_named::<ContentType>()
            .ok()
            .map(|c| c.0.to_string());
        let answer = info::answer_info(content_type.as_deref(), &info.info.body);
        let code = match &answer {
            InfoAnswer::Digit(d) => {
                if let Some(a) = &self.allocation {
                    let (id, media) = (&a.reserved.session_id, &a.placed.member.client);
                    let duration = d.duration_ms.unwrap_or(0);
                    if let Err(e) = media.report_dtmf(id, d.digit, duration).await {
                        warn!(error = %e, digit = %d.digit, "reporting an INFO DTMF digit to media failed");
                    }
                }
                info!(digit = %d.digit, duration_ms = d.duration_ms, "DTMF digit by SIP INFO");
                StatusCode::OK
            }
            InfoAnswer::Empty => StatusCode::OK,
            InfoAnswer::UnsupportedType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            InfoAnswer::Malformed(_) => StatusCode::BAD_REQUEST,
        };
        let session = self.session.as_ref().expect("INFO comes from the session");
        let mut resp = match session.dialog.create_response(&info.info, code, None) {
            Ok(r) => r,
            Err(e) => {
                warn!(error = %e, "answering INFO failed");
                return;
            }
        };
        match &answer {
            InfoAnswer::UnsupportedType(_) => {
                resp.msg
                    .headers
                    .insert(Name::ACCEPT, info::ACCEPTED_INFO_TYPES);
                warning(&mut resp, &answer.to_string());
                info!(%answer, "INFO refused");
            }
            InfoAnswer::Malformed(why) => {
                warning(&mut resp, why);
                info!(%answer, "INFO refused");
            }
            _ => {}
        }
        match info.respond(resp).await {
            Ok(()) => self.shared.stats.response(code.into_u16()),
            Err(e) => warn!(error = %e, "answering INFO failed"),
        }
    }

    /// Executes one output; returns what the wire answered when the core must hear it at once.
    async fn execute(&mut self, output: Output, core: &CallCore) -> Option<Event> {
        let shared = self.shared.clone();
        match output {
            Output::Trying => return self.trying().await,
            Output::Allocate { rtcp_mux } => {
                let call_id = self.call_id.clone();
                let media = shared.media.clone();
                // Counted as pending until media answers (or the call task ends).
                let pending = Held::new(shared.stats.clone(), |s| &s.pending_allocations);
                self.allocating = Some(Box::pin(
                    async move {
                        let result = media.allocate(&call_id, rtcp_mux).await;
                        drop(pending);
                        result
                    }
                    .instrument(tracing::info_span!("sip.invite")),
                ));
            }
            Output::Ringing => {
                let a = self.allocation.as_ref().expect("ringing after allocation");
                match core.negotiated() {
                    Some(n) => info!(
                        local_rtp = %format!("{}:{}", a.reserved.host, a.reserved.port),
                        remote_rtp = %n.remote.map(|r| r.to_string()).unwrap_or_else(|| "none (hold)".into()),
                        codec = %n.codec,
                        payload_type = n.payload_type,
                        dtmf_payload_type = ?n.dtmf_payload_type,
                        srtp = n.srtp.as_ref().map_or("none", |s| s.suite.name()),
                        media_session = %a.reserved.session_id,
                        media = %a.placed.member.addr,
                        "media allocated"
                    ),
                    None => info!(
                        local_rtp = %format!("{}:{}", a.reserved.host, a.reserved.port),
                        media_session = %a.reserved.session_id,
                        media = %a.placed.member.addr,
                        "media allocated (late offer: our offer goes in the 200 OK, the answer comes in the ACK)"
                    ),
                }
                let reliable = core.reliable_provisionals();
                let paused = self.pause_answer_due(reliable);
                let acceptor = self.acceptor.as_mut().expect("ringing with a dialog");
                let resp = acceptor.create_response(StatusCode::RINGING, None).await;
                let sent = send_provisional(acceptor, resp, reliable).await;
                self.resume_answer_due(paused);
                match sent {
                    Ok(()) => shared.stats.response(180),
                    Err(e) if reliable => {
                        warn!(error = %e, "no PRACK for our reliable 180 Ringing");
                        return Some(Event::NoPrack);
                    }
                    Err(e) => warn!(error = %e, "sending 180 Ringing failed"),
                }
                info!(answer_in_ms = ?core.poll_timeout().map(|t| t.saturating_duration_since(Instant::now()).as_millis()), "ringing");
            }
            Output::Progress { sdp } => {
                let reliable = core.reliable_provisionals();
                let paused = self.pause_answer_due(reliable);
                let acceptor = self.acceptor.as_mut().expect("progress with a dialog");
                let resp = acceptor
                    .create_response(StatusCode::SESSION_PROGRESS, None)
                    .await
                    .map(|mut resp| {
                        resp.msg
                            .headers
                            .insert_named(&ContentType(BytesStr::from_static("application/sdp")));
                        resp.msg.body = Bytes::from(sdp);
                        resp
                    });
                let sent = send_provisional(acceptor, resp, reliable).await;
                self.resume_answer_due(paused);
                match sent {
                    Ok(()) => {
                        shared.stats.response(183);
                        info!(
                            plan = core.tone().1.unwrap_or("default"),
                            "early media: 183 Session Progress with SDP"
                        );
                    }
                    Err(e) if reliable => {
                        warn!(error = %e, "no PRACK for our reliable 183 Session Progress");
                        return Some(Event::NoPrack);
                    }
                    Err(e) => warn!(error = %e, "sending 183 Session Progress failed"),
                }
            }
            Output::Refuse(r) => self.refuse(r),
            Output::Answer { sdp } => return self.answer(sdp, core.session_timer()).await,
            Output::Established => {
                self.acked_at = Some(Instant::now());
                self.acked_wall = Some(std::time::SystemTime::now());
                self.in_setup = None;
                shared.stats.answered.fetch_add(1, Relaxed);
                info!("answered (ACK received)");
            }
            Output::StartTone(tone) => {
                self.codec = Some(tone.codec.to_string());
                let a = self.allocation.as_ref().expect("allocated");
                let (id, media) = (&a.reserved.session_id, &a.placed.member.client);
                // The first tone belongs to the answer's span (one trace: INVITE, answer,
                // StartTone, BYE); a re-INVITE's restart to a span of its own.
                let span = self
                    .answer_span
                    .take()
                    .unwrap_or_else(|| tracing::info_span!("sip.reinvite"));
                let started = media.start_tone(id, &tone).instrument(span).await;
                if let Ok(ssrc) = &started {
                    self.stream = Some((*ssrc, tone.payload_type));
                }
                match started {
                    Ok(ssrc) => info!(
                        remote_rtp = %tone.remote,
                        codec = %tone.codec,
                        plan = core.tone().1.unwrap_or("default"),
                        frequency_hz = tone.frequency_hz,
                        level_dbm0 = tone.level_dbm0,
                        shape = %tone.shape,
                        echo = tone.echo,
                        ssrc = format!("{ssrc:08x}"),
                        "tone started"
                    ),
                    Err(e) => warn!(error = %e, "starting the tone failed"),
                }
            }
            Output::StopTone => {
                let a = self.allocation.as_ref().expect("allocated");
                let (id, media) = (&a.reserved.session_id, &a.placed.member.client);
                match media.stop_tone(id).await {
                    Ok(()) => info!("tone stopped: the caller does not receive (hold)"),
                    Err(e) => warn!(error = %e, "stopping the tone failed"),
                }
            }
            Output::AcceptReInvite { sdp, send } => {
                return self.accept_reinvite(sdp, send, core.session_timer()).await
            }
            Output::RefuseReInvite(r) => {
                let reinvite = *self.reinvite.take()?;
                info!(status = r.kind.code(), reason = %r.reason, "re-INVITE rejected; the call goes on");
                let session = self.session.as_ref().expect("re-INVITE in a session");
                let code = StatusCode::from(r.kind.code());
                if let Ok(mut resp) = session.dialog.create_response(&reinvite.invite, code, None) {
                    refusal_headers(&mut resp, r.kind, &r.reason);
                    let _ = reinvite.transaction.respond_failure(resp).await;
                }
            }
            Output::AcceptUpdate { sdp, send } => {
                let update = *self.update.take()?;
                let session = self.session.as_ref().expect("UPDATE in a session");
                match session
                    .dialog
                    .create_response(&update.update, StatusCode::OK, None)
                {
                    Ok(mut resp) => {
                        timer_headers(&mut resp, core.session_timer());
                        if let Some(sdp) = sdp {
                            resp.msg
                                .headers
                                .insert_named(&ContentType(BytesStr::from_static(
                                    "application/sdp",
                                )));
                            resp.msg.body = Bytes::from(sdp);
                            info!(send, "UPDATE answered");
                        } else {
                            info!("UPDATE without an offer answered (a refresh)");
                        }
                        match update.respond(resp).await {
                            Ok(()) => shared.stats.response(200),
                            Err(e) => warn!(error = %e, "answering UPDATE failed"),
                        }
                    }
                    Err(e) => warn!(error = %e, "building the UPDATE answer failed"),
                }
            }
            Output::RefuseUpdate(r) => {
                let update = *self.update.take()?;
                info!(status = r.kind.code(), reason = %r.reason, "UPDATE rejected; the call goes on");
                let session = self.session.as_ref().expect("UPDATE in a session");
                let code = StatusCode::from(r.kind.code());
                if let Ok(mut resp) = session.dialog.create_response(&update.update, code, None) {
                    refusal_headers(&mut resp, r.kind, &r.reason);
                    match update.respond(resp).await {
                        Ok(()) => shared.stats.response(r.kind.code()),
                        Err(e) => warn!(error = %e, "answering UPDATE failed"),
                    }
                }
            }
            Output::SendBye(reason) => {
                // Media first, so the BYE carries the final figures; not when media is lost,
                // lest the BYE wait for an instance that does not answer.
                if reason != EndReason::MediaLost {
                    self.release_early(reason).await;
                }
                let stat = self.rtp_stat();
                match self.session.as_mut() {
                    Some(session) => match session
                        .terminate_with(|r| {
                            if let Some(v) = stat {
                                r.headers.insert(Name::unknown(rtp_stat::HEADER.into()), v);
                            }
                        })
                        .instrument(tracing::info_span!("sip.bye"))
                        .await
                    {
                        Ok(_) => info!(reason = %reason, "BYE sent"),
                        Err(e) => warn!(error = %e, "sending BYE failed"),
                    },
                    None => warn!(reason = %reason, "no dialog to send BYE in"),
                }
            }
            Output::Refresh { sdp } => {
                let timer = core.session_timer().expect("a refresh needs a timer");
                let session = self.session.as_ref().expect("a refresh in a session");
                let method = if self.refresh_by_update {
                    "UPDATE"
                } else {
                    "re-INVITE"
                };
                info!(method, session_expires = %timer.request_header(), "refreshing the session");
                self.refreshing = Some(refresh(session, timer, self.refresh_by_update, sdp));
            }
            Output::Release(reason) => self.release_early(reason).await,
            Output::Finished(summary) => self.finished(summary),
        }
        None
    }

    /// Creates the dialog (Contact and Via carry our advertised address) and sends 100.
    async fn trying(&mut self) -> Option<Event> {
        let shared = self.shared.clone();
        let invite = self.invite.as_ref().expect("Trying comes first");
        // Over TLS: our TLS port, `sips:` when the caller dialed a sips: URI (RFC 3261 8.1.1.8),
        // else `transport=tls`, so that the caller's in-dialog requests come over TLS too.
        let secure = invite.tp_info.transport.is_secure();
        let local = if secure {
            ezk_sip_types::host::HostPort {
                host: shared.advertised.host.clone(),
                port: Some(shared.cfg.sip.tls_port),
            }
        } else {
            shared.advertised.clone()
        };
        let mut contact_uri = SipUri::new(local.clone());
        if secure && invite.line.uri.sips {
            contact_uri = contact_uri.sips(true);
        } else if secure {
            contact_uri = contact_uri.uri_param_value("transport", "tls");
        } else if !invite.tp_info.transport.is_udp() {
            contact_uri = contact_uri.uri_param_value("transport", "tcp");
        }
        let dialog = match Dialog::new_server(
            self.endpoint.clone(),
            invite,
            Contact::new(NameAddr::uri(contact_uri)),
        ) {
            Ok(d) => d,
            Err(e) => return Some(Event::DialogFailed(e.to_string())),
        };
        shared.stats.active.fetch_add(1, Relaxed);
        self._active = Some(ActiveGuard(shared.clone()));
        self.in_setup = Some(Held::new(shared.stats.clone(), |s| &s.in_setup));
        if let Some(delay) = shared.call_settings.answer_after {
            self.answer_due = Some(AnswerDue::new(shared.stats.clone(), self.received + delay));
        }
        dialog.target_tp_info.lock().await.via_host_port = Some(local);
        self.to_tag = dialog
            .local_fromto
            .tag
            .as_ref()
            .map(|t| t.to_string())
            .unwrap_or_default();
        let invite = *self.invite.take().expect("checked above");
        let mut acceptor = InviteAcceptor::new(dialog, invite);
        // 100 Trying at once (ezk sends none), through the transaction.
        match provisional(&mut acceptor, StatusCode::TRYING).await {
            Ok(()) => shared.stats.response(100),
            Err(e) => warn!(error = %e, "sending 100 Trying failed"),
        }
        self.acceptor = Some(acceptor);
        None
    }

    /// A final non-2xx response to the INVITE. It waits for the ACK, so it runs on its own.
    fn refuse(&mut self, r: Refusal) {
        self.answer_due = None;
        let shared = &self.shared;
        let code = r.kind.code();
        if r.kind == RefusalKind::Malformed {
            shared.stats.rejected_malformed.fetch_add(1, Relaxed);
        }
        shared.stats.response(code);
        info!(status = code, reason = %r.reason, "call rejected");
        let status = StatusCode::from(code);
        let finish = move |mut resp: OutgoingResponse| {
            refusal_headers(&mut resp, r.kind, &r.reason);
            resp
        };
        if let Some(acceptor) = self.acceptor.take() {
            tokio::spawn(
                async move {
                    if let Ok(resp) = acceptor.create_response(status, None).await {
                        let _ = acceptor.respond_failure(finish(resp)).await;
                    }
                }
                .in_current_span(),
            );
        } else if let Some(invite) = self.invite.take() {
            let mut invite = *invite;
            let endpoint = self.endpoint.clone();
            tokio::spawn(
                async move {
                    let mut resp = endpoint.create_response(&invite, status, None);
                    ensure_to_tag(&mut resp, &random_tag());
                    let tsx = endpoint.create_server_inv_tsx(&mut invite);
                    if let Err(e) = tsx.respond_failure(finish(resp)).await {
                        tracing::debug!(error = %e, "no ACK for the final response");
                    }
                }
                .in_current_span(),
            );
        }
    }

    /// Sends 200 OK and waits for the ACK (the stack retransmits the 200 from T1 to T2 until
    /// 64*T1, vendor patch 0003; without an ACK it hands back the session, patch 0004).
    async fn answer(&mut self, sdp: String, timer: Option<SessionTimer>) -> Option<Event> {
        let shared = self.shared.clone();
        let acceptor = self.acceptor.take().expect("answer with a dialog");
        self.answer_due = None;
        let mut ok = match acceptor.create_response(StatusCode::OK, None).await {
            Ok(r) => r,
            // CANCEL won the race with our answer.
            Err(_) => return Some(Event::AnswerRaced),
        };
        ok.msg
            .headers
            .insert_named(&ContentType(BytesStr::from_static("application/sdp")));
        ok.msg.body = Bytes::from(sdp);
        timer_headers(&mut ok, timer);
        match timer {
            Some(t) => info!(session_expires = %t.response_header(), "answering"),
            None => info!("answering"),
        }
        shared.stats.response(200);
        shared
            .stats
            .answer_latency
            .observe(self.received.elapsed().as_secs_f64());
        let span = tracing::info_span!("sip.answer");
        self.answer_span = Some(span.clone());
        let result = acceptor.respond_success(ok).instrument(span).await;
        match result {
            // The ACK holds a transaction registration: drop it now, not at the end.
            Ok((session, ack)) => {
                self.session = Some(session);
                let answer =
                    (!ack.body.is_empty()).then(|| String::from_utf8_lossy(&ack.body).into_owned());
                Some(Event::Ack { answer })
            }
            // RFC 3261 13.3.1.4: the dialog is confirmed; the core decides the BYE.
            Err(ezk_sip_ua::invite::acceptor::Error::NoAck(no_ack)) => {
                warn!("no ACK for 200 OK within 64*T1");
                self.session = Some(no_ack.session);
                Some(Event::AckTimeout)
            }
            Err(e) => {
                warn!(error = ?e, "answering failed");
                Some(Event::DialogEnded)
            }
        }
    }

    /// Answers the re-INVITE 200 and waits for its ACK (whose body answers our offer when the
    /// re-INVITE had none).
    async fn accept_reinvite(
        &mut self,
        sdp: String,
        send: bool,
        timer: Option<SessionTimer>,
    ) -> Option<Event> {
        let reinvite = *self.reinvite.take()?;
        let session = self.session.as_mut().expect("re-INVITE in a session");
        let mut resp = match session
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
        resp.msg.body = Bytes::from(sdp);
        timer_headers(&mut resp, timer);
        info!(send, "re-INVITE answered");
        match session.handle_reinvite_success(reinvite, resp).await {
            Ok(ack) => {
                let answer =
                    (!ack.body.is_empty()).then(|| String::from_utf8_lossy(&ack.body).into_owned());
                Some(Event::ReInviteAck { answer })
            }
            Err(e) => {
                warn!(error = ?e, "no ACK for the re-INVITE answer");
                None
            }
        }
    }

    fn finished(&mut self, s: Summary) {
        let stats = &self.shared.stats;
        match s.reason {
            EndReason::CallerCancelled => {
                stats.cancelled.fetch_add(1, Relaxed);
                stats.response(487);
            }
            EndReason::Refused(kind) => {
                if kind == RefusalKind::Overloaded {
                    stats.shed.fetch_add(1, Relaxed);
                }
                stats.fail(kind.label())
            }
            EndReason::NoAck => stats.fail("no_ack"),
            _ => {}
        }
        let talk = format!("{:.1}", s.talk.unwrap_or_default().as_secs_f64());
        let age = format!("{:.1}", s.age.as_secs_f64());
        let reason = s.reason;
        if let (Some(collector), Some(_)) = (&self.shared.quality_collector, s.talk) {
            match self.vq_report() {
                Some(body) => {
                    let endpoint = self.endpoint.clone();
                    let advertised = self.shared.advertised.clone();
                    // Not the call's task: it ends now; the report follows on its own.
                    tokio::spawn(
                        publish_report(endpoint, advertised, collector.clone(), body)
                            .in_current_span(),
                    );
                }
                None => warn!("no quality report: media gave no figures for this call"),
            }
        }
        match self.figures.take().map(|f| *f) {
            Some(Ok(f)) => {
                let q = f.quality;
                info!(
                    hangup_by = reason.who_hung_up(),
                    reason = %reason,
                    talk_seconds = talk,
                    call_seconds = age,
                    rtp_packets_sent = f.packets_sent,
                    rtp_packets_received = q.packets_received,
                    loss_percent = format!("{:.2}", q.loss_percent),
                    jitter_ms = format!("{:.2}", q.jitter_ms),
                    mos = format!("{:.2}", q.mos),
                    dtmf = %q.dtmf_digits,
                    "call ended"
                );
                if self.shared.call_settings.wait_for_caller_rtp
                    && s.talk.is_some()
                    && q.packets_received == 0
                {
                    warn!(
                        "the caller sent no RTP, so no tone was sent \
                         (media.rtp_start = \"on_caller_rtp\")"
                    );
                }
            }
            Some(Err(e)) => info!(
                hangup_by = reason.who_hung_up(),
                reason = %reason,
                talk_seconds = talk,
                release_error = %e,
                "call ended"
            ),
            None if matches!(reason, EndReason::Refused(_)) => {}
            None => info!(
                hangup_by = reason.who_hung_up(),
                reason = %reason,
                talk_seconds = talk,
                call_seconds = age,
                "call ended"
            ),
        }
    }
}

/// Sends a provisional response through the INVITE transaction, so that INVITE
/// retransmissions are answered with it (vendored ezk-sip-core patch). The dialog adds the
/// To-tag to everything but 100 (vendored ezk-sip-ua patch).
async fn provisional(
    acceptor: &mut InviteAcceptor,
    code: StatusCode,
) -> Result<(), ezk_sip_ua::invite::acceptor::Error> {
    let resp = acceptor.create_response(code, None).await;
    send_provisional(acceptor, resp, false).await
}

/// Sends a provisional response; `reliable` (RFC 3262): with `Require: 100rel` and `RSeq`,
/// retransmitted until the caller's PRACK (answered 200 by the stack), an error when none came
/// within 64*T1 (vendor patch 0029).
async fn send_provisional(
    acceptor: &mut InviteAcceptor,
    resp: Result<OutgoingResponse, ezk_sip_ua::invite::acceptor::Error>,
    reliable: bool,
) -> Result<(), ezk_sip_ua::invite::acceptor::Error> {
    let resp = resp?;
    if !reliable {
        return acceptor.respond_provisional(resp).await;
    }
    let code = resp.msg.line.code.into_u16();
    let prack = acceptor.respond_provisional_reliable(resp).await?;
    if prack.body.is_empty() {
        info!(
            status = code,
            "PRACK received for our reliable provisional response"
        );
    } else {
        // RFC 3262 lets a PRACK carry an offer or answer; we never need one (our 18x answers
        // the INVITE's offer, and a late offer gets ours only in the 200).
        warn!(
            status = code,
            "PRACK received with a body: ignored (offer/answer in PRACK is not supported)"
        );
    }
    Ok(())
}
