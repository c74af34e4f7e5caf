//! The SIP shell: an ezk endpoint (dialog and invite layers plus ours) that turns INVITEs into
//! calls. Each call runs in its own task, driven by [`CallPolicy`] and [`sdp`]; media is asked
//! over gRPC. See ../../shared/ezk-notes.md for the ezk path used here.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytesstr::BytesStr;
use ezk_sip_core::transport::OutgoingResponse;
use ezk_sip_core::{
    DatagramScreen, Endpoint, EndpointBuilder, IncomingRequest, Layer, MayTake, MessageLimits,
    Screened,
};
use ezk_sip_types::header::typed::{Accept, FromTo, Require};
use ezk_sip_types::host::{Host, HostPort};
use ezk_sip_types::{Method, Name, StatusCode};
use ezk_sip_ua::dialog::DialogLayer;
use ezk_sip_ua::invite::InviteLayer;
use milliwatt_common::config::RefusedAction;
use milliwatt_common::{Config, Health};
use rand::Rng;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn, Instrument};

use crate::call_shell::{self, Shed};
use crate::media_pool::MediaPool;
use crate::stats::Stats;
use milliwatt_signaling_core::call::RefusalKind;
use milliwatt_signaling_core::call::Settings;
use milliwatt_signaling_core::dispatch::{
    dispatch, malformed, unsupported_required, Dispatch, RawRequest, SUPPORTED_EXTENSIONS,
};
use milliwatt_signaling_core::early::{self, Peek};
use milliwatt_signaling_core::overload::{self, Thresholds};
use milliwatt_signaling_core::sources::{Policy, Sources};

pub(crate) struct Shared {
    pub(crate) cfg: Config,
    pub(crate) call_settings: Arc<Settings>,
    /// The media instances (one or a pool) and their health.
    pub(crate) media: MediaPool,
    pub(crate) stats: Arc<Stats>,
    /// Host and port for Contact and Via.
    pub(crate) advertised: HostPort,
    pub(crate) health: Health,
    /// Cancelled when the drain grace lapses: remaining calls end with BYE.
    pub(crate) hang_up_all: CancellationToken,
    /// Every call task, so that the drain waits for them (no polling).
    pub(crate) calls: TaskTracker,
    /// Per-source limits (`[sources]`).
    pub(crate) sources: Mutex<Sources>,
    /// Where each answered call's RFC 6035 report goes (`sip.quality_collector`).
    pub(crate) quality_collector: Option<ezk_sip_types::uri::SipUri>,
}

impl Shared {
    /// `sources.allowed_networks` lets `ip` in.
    pub(crate) fn source_allowed(&self, ip: IpAddr) -> bool {
        self.sources
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .policy()
            .allows(ip)
    }
}

/// A call admitted under the per-source limits; its end frees the slot.
pub(crate) struct SourceSlot {
    shared: Arc<Shared>,
    ip: IpAddr,
}

impl Drop for SourceSlot {
    fn drop(&mut self) {
        self.shared
            .sources
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .ended(self.ip);
    }
}

/// After the drain grace, how long the hung-up calls get to send BYE and release.
const HANG_UP_TIMEOUT: Duration = Duration::from_secs(5);

struct UasLayer {
    shared: Arc<Shared>,
}

/// The To-tag of a response sent without a transaction (RFC 3261 8.2.7): the same for every
/// retransmission of the request (from its Call-ID, From-tag and CSeq number, keyed per
/// process), so that a retransmitted request gets the same answer, and the ACK of a refused
/// INVITE carries it back with the same three fields (17.1.1.3; not always the INVITE's branch:
/// SIPp scenarios often give the ACK a new one), which is how [`EarlyShed`] knows it.
pub(crate) fn stateless_tag(req: &IncomingRequest) -> BytesStr {
    let b = &req.base_headers;
    stateless_tag_of(
        b.call_id.0.as_str(),
        b.from.tag.as_ref().map(|t| t.as_str()),
        b.cseq.cseq,
    )
    .into()
}

/// [`stateless_tag`] from the fields themselves (the early shed reads them off the bytes: see
/// [`EarlyShed`]); both paths give a retransmission the same tag.
fn stateless_tag_of(call_id: &str, from_tag: Option<&str>, cseq: u32) -> String {
    format!("{:016x}", stateless_tag_hash(call_id, from_tag, cseq))
}

/// The number a stateless To-tag writes in 16 hex digits.
fn stateless_tag_hash(call_id: &str, from_tag: Option<&str>, cseq: u32) -> u64 {
    use std::hash::{BuildHasher, Hash, Hasher};
    static KEY: std::sync::OnceLock<std::collections::hash_map::RandomState> =
        std::sync::OnceLock::new();
    let mut h = KEY.get_or_init(Default::default).build_hasher();
    call_id.hash(&mut h);
    from_tag.hash(&mut h);
    cseq.hash(&mut h);
    h.finish()
}

/// The overload check on a new INVITE's bytes, before the SIP stack parses it (vendor patch
/// 0033): a new call that `overload::admit` refuses gets its 503 built from the datagram
/// ([`early`]) and sent at once, and the ACK of such a stateless answer (its To-tag is ours:
/// same Call-ID, From-tag and CSeq number) is dropped unparsed. Under a
/// burst this is most of signaling's work, and it costs a scan and a send instead of the
/// parse, a task and the layers (README, Benchmark). What the scan does not take (a source
/// outside `sources.allowed_networks`, an INVITE of a live transaction, anything unusual) goes
/// the usual way, where the same check runs again.
struct EarlyShed {
    shared: Arc<Shared>,
}

impl DatagramScreen for EarlyShed {
    fn screen(
        &self,
        endpoint: &Endpoint,
        datagram: &[u8],
        source: SocketAddr,
        received: SystemTime,
    ) -> Screened {
        match early::peek(datagram) {
            Peek::Other => Screened::Parse,
            Peek::Ack(head) => {
                // Every ACK of an answered call passes here: compared as a number, no allocation.
                let ours = head
                    .to_tag
                    .filter(|t| {
                        t.len() == 16 && t.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
                    })
                    .and_then(|t| u64::from_str_radix(t, 16).ok())
                    .is_some_and(|t| {
                        t == stateless_tag_hash(head.call_id, Some(head.from_tag), head.cseq_number)
                    });
                if ours {
                    Screened::Drop
                } else {
                    Screened::Parse
                }
            }
            Peek::NewInvite(head) => {
                let shared = &self.shared;
                if !shared.source_allowed(source.ip()) {
                    return Screened::Parse;
                }
                let waited = SystemTime::now()
                    .duration_since(received)
                    .unwrap_or_default();
                let signals = call_shell::signals(shared, Instant::now(), waited);
                let Err(why) = overload::admit(&shared.call_settings.overload, &signals) else {
                    return Screened::Parse;
                };
                // A retransmission of an INVITE being answered belongs to its transaction.
                if endpoint.has_invite_server_transaction(head.branch) {
                    return Screened::Parse;
                }
                let tag = stateless_tag_of(head.call_id, Some(head.from_tag), head.cseq_number);
                let code =
                    call_shell::count_shed(shared, head.call_id, source, &why, Shed::Overload);
                Screened::Answer(early::answer(
                    &head,
                    source,
                    code,
                    "Service Unavailable",
                    &tag,
                    RefusalKind::Overloaded.retry_after(),
                    &why,
                ))
            }
        }
    }
}

/// Sends `resp` to `req` without a server transaction (RFC 3261 8.2.7): what this layer answers
/// to non-INVITE requests (OPTIONS, 405, 420, 403, 400), so that a flood of them leaves no
/// state behind (a non-INVITE server transaction lives 64*T1 = 32 s); a retransmission gets the
/// same answer again. Counts `code` when sent.
pub(crate) async fn respond_stateless(
    shared: &Shared,
    endpoint: &Endpoint,
    req: &IncomingRequest,
    mut resp: OutgoingResponse,
    code: u16,
) {
    ensure_to_tag(&mut resp, &stateless_tag(req));
    match endpoint.send_outgoing_response(&mut resp).await {
        Ok(()) => shared.stats.response(code),
        Err(e) => warn!(error = %e, status = code, "sending a response failed"),
    }
}

pub(crate) fn random_tag() -> BytesStr {
    format!("{:016x}", rand::rng().random::<u64>()).into()
}

pub(crate) fn ensure_to_tag(resp: &mut OutgoingResponse, tag: &BytesStr) {
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

impl UasLayer {
    /// A request from outside `sources.allowed_networks`: 403 Forbidden (never to an ACK) or
    /// nothing, as `sources.refused_action` says; counted either way.
    async fn refuse_source(&self, endpoint: &Endpoint, mut req: IncomingRequest) {
        self.shared.stats.source_refused.fetch_add(1, Relaxed);
        let method = req.line.method.to_string();
        tracing::debug!(
            method = %method,
            call_id = %req.base_headers.call_id.0,
            source = %req.tp_info.source,
            "request from outside sources.allowed_networks refused"
        );
        if self.shared.cfg.sources.refused_action == RefusedAction::Silence || method == "ACK" {
            return;
        }
        let mut resp = endpoint.create_response(&req, StatusCode::FORBIDDEN, None);
        call_shell::warning(&mut resp, "source address not allowed");
        if method == "INVITE" {
            ensure_to_tag(&mut resp, &random_tag());
            self.shared.stats.response(403);
            let tsx = endpoint.create_server_inv_tsx(&mut req);
            tokio::spawn(async move {
                if let Err(e) = tsx.respond_failure(resp).await {
                    tracing::debug!(error = %e, "no ACK for the 403");
                }
            });
        } else {
            respond_stateless(&self.shared, endpoint, &req, resp, 403).await;
        }
    }
}

/// 420 (Bad Extension) with `Unsupported` listing what the request requires and we lack
/// (RFC 3261 8.2.2.3). An INVITE's 420 goes through an INVITE server transaction (it is
/// retransmitted until the ACK), on a task of its own; others are answered statelessly.
async fn bad_extension(
    shared: &Shared,
    endpoint: &Endpoint,
    mut req: IncomingRequest,
    tags: &[String],
) {
    let method = req.line.method.to_string();
    info!(
        method = %method,
        call_id = %req.base_headers.call_id.0,
        source = %req.tp_info.source,
        unsupported = %tags.join(", "),
        status = 420,
        "request requires an extension we do not support"
    );
    let mut resp = endpoint.create_response(&req, StatusCode::BAD_EXTENSION, None);
    resp.msg.headers.insert(Name::UNSUPPORTED, tags.join(", "));
    if method == "INVITE" {
        ensure_to_tag(&mut resp, &random_tag());
        shared.stats.response(420);
        let tsx = endpoint.create_server_inv_tsx(&mut req);
        tokio::spawn(async move {
            if let Err(e) = tsx.respond_failure(resp).await {
                tracing::debug!(error = %e, "no ACK for the 420");
            }
        });
    } else {
        respond_stateless(shared, endpoint, &req, resp, 420).await;
    }
}

/// `Require` on every request but ACK and CANCEL, in a dialog or not (RFC 3261 8.2.2.3): one
/// that requires an extension we do not support gets 420. Added before the dialog layer, which
/// would otherwise take in-dialog requests (a BYE or re-INVITE with `Require: foo`) unchecked.
struct RequireLayer {
    shared: Arc<Shared>,
}

#[async_trait::async_trait]
impl Layer for RequireLayer {
    fn name(&self) -> &'static str {
        "milliwatt-require"
    }

    async fn receive(&self, endpoint: &Endpoint, request: MayTake<'_, IncomingRequest>) {
        if matches!(request.line.method, Method::ACK | Method::CANCEL) {
            return;
        }
        // A source outside the allow-list gets nothing from here (the UAS layer refuses it).
        if !self.shared.source_allowed(request.tp_info.source.ip()) {
            return;
        }
        let required: Vec<Require> = request.headers.get_named().unwrap_or_default();
        let unsupported = unsupported_required(required.iter().map(|r| r.0.as_str()));
        if !unsupported.is_empty() {
            bad_extension(&self.shared, endpoint, request.take(), &unsupported).await;
        }
    }
}

#[async_trait::async_trait]
impl Layer for UasLayer {
    fn name(&self) -> &'static str {
        "milliwatt-uas"
    }

    /// What `Allow` and `Supported` say: what we answer and implement. Runs after the invite
    /// layer's `init`, which advertises UPDATE, PRACK, `100rel` and `timer`: UPDATE inside a
    /// call we answer (RFC 3311, vendor patch 0026), PRACK and `100rel` too (RFC 3262, vendor
    /// patch 0029) and `timer` we run (RFC 4028, the call core). A tag missing from
    /// `SUPPORTED_EXTENSIONS` would be taken back (vendor patch 0015), lest a caller rely on it.
    fn init(&mut self, endpoint: &mut EndpointBuilder) {
        for m in [
            Method::INVITE,
            Method::ACK,
            Method::BYE,
            Method::CANCEL,
            Method::OPTIONS,
            Method::INFO,
            Method::UPDATE,
            Method::PRACK,
        ] {
            endpoint.add_allow(m);
        }
        for tag in ["100rel", "timer"] {
            if !SUPPORTED_EXTENSIONS.contains(&tag) {
                endpoint.remove_supported(tag);
            }
        }
    }

    async fn receive(&self, endpoint: &Endpoint, request: MayTake<'_, IncomingRequest>) {
        // Only out-of-dialog requests reach this layer: in-dialog ones go to DialogLayer,
        // CANCEL of a ringing call to InviteLayer.
        let source_ip = request.tp_info.source.ip();
        if !self.shared.source_allowed(source_ip) {
            self.refuse_source(endpoint, request.take()).await;
            return;
        }
        let raw = |name: &Name| {
            request
                .headers
                .get_raw(name)
                .map(|v| v.as_str())
                .collect::<Vec<_>>()
        };
        let (from, to) = (raw(&Name::FROM), raw(&Name::TO));
        let cseq = raw(&Name::CSEQ);
        let received = RawRequest {
            bytes: &request.tp_info.buffer,
            cseq: cseq.first().copied().unwrap_or(""),
            content_lengths: raw(&Name::CONTENT_LENGTH),
            name_addrs: from
                .iter()
                .map(|v| ("From", *v))
                .chain(to.iter().map(|v| ("To", *v)))
                .collect(),
        };
        // As written: `invite` is an extension method (RFC 3261 7.1), not INVITE.
        let method = received.method().to_string();
        let problem = malformed(&received);
        if let Some(why) = problem {
            let req = request.take();
            self.shared.stats.rejected_malformed.fetch_add(1, Relaxed);
            info!(
                method = %method,
                call_id = %req.base_headers.call_id.0,
                source = %req.tp_info.source,
                reason = %why,
                "malformed request"
            );
            if method != "ACK" {
                // Stateless (RFC 3261 8.2.7): which transaction it belongs to is the question.
                let mut resp = endpoint.create_response(&req, StatusCode::BAD_REQUEST, None);
                call_shell::warning(&mut resp, &why);
                respond_stateless(&self.shared, endpoint, &req, resp, 400).await;
            }
            return;
        }
        let decision = dispatch(&method, request.base_headers.to.tag.is_some());
        match decision {
            Dispatch::NewCall => {
                let received = Instant::now();
                let waited = SystemTime::now()
                    .duration_since(request.tp_info.timestamp)
                    .unwrap_or_default();
                let signals = call_shell::signals(&self.shared, received, waited);
                if let Err(why) = overload::admit(&self.shared.call_settings.overload, &signals) {
                    call_shell::shed(&self.shared, endpoint, request.take(), why, Shed::Overload)
                        .await;
                    return;
                }
                let by_source = self
                    .shared
                    .sources
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .admit(source_ip, received);
                if let Err(why) = by_source {
                    call_shell::shed(
                        &self.shared,
                        endpoint,
                        request.take(),
                        why,
                        Shed::SourceLimit,
                    )
                    .await;
                    return;
                }
                let slot = SourceSlot {
                    shared: self.shared.clone(),
                    ip: source_ip,
                };
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
                // The call's setup (and its "incoming INVITE" line) runs here, in the call's
                // span; the task is the call's future alone (no async block around it that would
                // hold its room twice: memory per call).
                let call = span.in_scope(|| {
                    call_shell::handle_invite(
                        shared.clone(),
                        endpoint,
                        invite,
                        received,
                        signals,
                        slot,
                    )
                });
                shared.calls.spawn(call.instrument(span));
            }
            Dispatch::Options => {
                let req = request.take();
                let mut resp = endpoint.create_response(&req, StatusCode::OK, None);
                resp.msg.headers.insert_named(endpoint.allowed());
                resp.msg
                    .headers
                    .insert_named(&Accept(BytesStr::from_static("application/sdp")));
                respond_stateless(&self.shared, endpoint, &req, resp, 200).await;
            }
            Dispatch::Stack => {}
            Dispatch::MethodNotAllowed => {
                let req = request.take();
                let mut resp = endpoint.create_response(&req, StatusCode::METHOD_NOT_ALLOWED, None);
                resp.msg.headers.insert_named(endpoint.allowed());
                respond_stateless(&self.shared, endpoint, &req, resp, 405).await;
            }
        }
    }
}

/// Why the SIP endpoint could not be bound.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    #[error("binding SIP UDP {addr} (sip.bind_address, sip.port): {source}")]
    Udp {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("listening SIP TCP {addr} (sip.bind_address, sip.port): {source}")]
    Tcp {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("sip.quality_collector: {0:?} is not a SIP URI the SIP stack can send to")]
    QualityCollector(String),
    #[error(transparent)]
    TlsFiles(#[from] crate::sip_tls::TlsFileError),
    #[error("listening SIP TLS {addr} (sip.bind_address, sip.tls_port): {source}")]
    Tls {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// A bound SIP endpoint.
pub struct Signaling {
    _endpoint: Endpoint,
    shared: Arc<Shared>,
    /// Resolves `media.endpoint` again and again (the members check themselves).
    pool_task: tokio::task::JoinHandle<()>,
    pub udp: Option<SocketAddr>,
    pub tcp: Option<SocketAddr>,
    pub tls: Option<SocketAddr>,
    /// Reloads the TLS certificate when its files change.
    _tls_reloader: Option<AbortOnDrop>,
}

/// Aborts its task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Signaling {
    pub async fn bind(
        cfg: Config,
        media: MediaPool,
        health: Health,
    ) -> Result<Signaling, BindError> {
        // Members resolved (and tried before their first check) before the first INVITE.
        let pool_task = media.start().await;
        let addr = SocketAddr::new(cfg.sip.bind_address, cfg.sip.port);
        let advertised = HostPort {
            host: host_of(&cfg.sip_advertised_host()),
            port: Some(cfg.sip_advertised_port()),
        };
        let b = &cfg.behavior;
        let call_settings = Settings {
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
            domains: vec![cfg.sip.domain.clone(), cfg.sip_advertised_host()],
            plans: b
                .plans
                .iter()
                .map(|p| milliwatt_signaling_core::call::Plan {
                    number: p.number.clone(),
                    tone: milliwatt_signaling_core::call::Tone {
                        frequency_hz: p.frequency.unwrap_or(b.tone_frequency),
                        level_dbm0: p.level_dbm0.unwrap_or(b.tone_level_dbm0),
                        duration: Duration::from_secs(
                            p.duration_seconds.unwrap_or(b.tone_duration_seconds),
                        ),
                        shape: p.shape(p.level_dbm0.unwrap_or(b.tone_level_dbm0)),
                        echo: p.echo,
                    },
                    uri_parameters: p.uri_parameters,
                    early_media: p.early_media,
                })
                .collect(),
            overload: Thresholds {
                max_calls_in_setup: u64::from(cfg.overload.max_calls_in_setup),
                max_pending_allocations: u64::from(cfg.overload.max_pending_allocations),
                max_event_loop_lag: Duration::from_millis(cfg.overload.max_event_loop_lag_ms),
                max_answer_lateness: Duration::from_millis(cfg.overload.max_answer_lateness_ms),
                max_invite_wait: Duration::from_millis(cfg.overload.max_invite_wait_ms),
            },
        };
        let cfg_sources = cfg.sources.clone();
        let quality_collector = match cfg.sip.quality_collector.as_str() {
            "" => None,
            uri => Some(
                uri.parse::<ezk_sip_types::uri::SipUri>()
                    .map_err(|_| BindError::QualityCollector(uri.to_string()))?,
            ),
        };
        let shared = Arc::new(Shared {
            call_settings: Arc::new(call_settings),
            cfg,
            media,
            stats: Arc::default(),
            advertised,
            health,
            hang_up_all: CancellationToken::new(),
            calls: TaskTracker::new(),
            sources: Mutex::new(Sources::new(Policy {
                allowed: cfg_sources.networks(),
                max_new_calls_per_second: cfg_sources.max_new_calls_per_second,
                max_concurrent_calls: cfg_sources.max_concurrent_calls,
            })),
            quality_collector,
        });
        shared.health.set("sip_bound", false);
        let mut builder = Endpoint::builder();
        builder.add_layer(RequireLayer {
            shared: shared.clone(),
        });
        builder.add_layer(DialogLayer::default());
        builder.add_layer(InviteLayer::default());
        builder.add_layer(UasLayer {
            shared: shared.clone(),
        });
        builder.user_agent(concat!("milliwatt/", env!("CARGO_PKG_VERSION")));
        builder.set_datagram_screen(Arc::new(EarlyShed {
            shared: shared.clone(),
        }));
        let sip = &shared.cfg.sip;
        builder.set_message_limits(MessageLimits {
            max_message_bytes: sip.max_message_bytes as usize,
            max_connections: sip.tcp_max_connections as usize,
            idle_timeout: Duration::from_secs(sip.tcp_idle_timeout_seconds),
            message_timeout: Duration::from_secs(sip.tcp_message_timeout_seconds),
        });
        let t = shared.cfg.sip.transport;
        let mut udp = None;
        let mut tcp = None;
        if t.udp() {
            let socket = sip_udp_socket(addr).map_err(|source| BindError::Udp { addr, source })?;
            builder
                .add_udp_socket(socket)
                .map_err(|source| BindError::Udp { addr, source })?;
            udp = Some(addr);
        }
        if t.tcp() {
            builder
                .listen_tcp(addr)
                .await
                .map_err(|source| BindError::Tcp { addr, source })?;
            tcp = Some(addr);
        }
        let mut tls = None;
        let mut tls_reloader = None;
        if !sip.tls_certificate_file.is_empty() {
            let t = crate::sip_tls::start(&sip.tls_certificate_file, &sip.tls_key_file)?;
            let tls_addr = SocketAddr::new(sip.bind_address, sip.tls_port);
            builder
                .listen_rustls(tls_addr, t.acceptor)
                .await
                .map_err(|source| BindError::Tls {
                    addr: tls_addr,
                    source,
                })?;
            tls = Some(tls_addr);
            tls_reloader = Some(AbortOnDrop(t.reloader));
        }
        let endpoint = builder.build();
        shared.health.set("sip_bound", true);
        info!(
            udp = ?udp,
            tcp = ?tcp,
            tls = ?tls,
            advertised = %format!("{}:{}", shared.advertised.host, shared.advertised.port.unwrap_or(0)),
            domain = %shared.cfg.sip.domain,
            media = %shared.cfg.media.endpoint.join(", "),
            "SIP endpoint bound"
        );
        Ok(Signaling {
            _endpoint: endpoint,
            pool_task,
            shared,
            udp,
            tcp,
            tls,
            _tls_reloader: tls_reloader,
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
        metrics.register_collector(Box::new(crate::media_pool::PoolCollector(
            self.shared.media.clone(),
        )));
        metrics.register(
            "milliwatt_media_grpc_latency_seconds",
            "Latency of signaling's gRPC calls to media, by method",
            self.shared.media.latency(),
        );
    }

    /// Watches media (and renews the lease), logs statistics every 30 s, and on `shutdown`
    /// drains: readiness false, new INVITEs 503, calls in progress get `grace` to finish, then
    /// the rest are hung up with BYE.
    pub async fn serve(self, shutdown: impl Future<Output = ()>, grace: Duration) {
        let shared = self.shared.clone();
        let lag = tokio::spawn(measure_lag(shared.clone()));
        let stats = tokio::spawn({
            let shared = shared.clone();
            async move {
                let every = Duration::from_secs(shared.cfg.log.stats_interval_seconds);
                let mut tick = tokio::time::interval(every);
                tick.tick().await;
                loop {
                    tick.tick().await;
                    info!(stats = %shared.stats.line(), media = %shared.media.line(), "statistics");
                }
            }
        });
        shutdown.await;
        shared.health.start_draining();
        info!(
            active_calls = shared.stats.active.load(Relaxed),
            grace_seconds = grace.as_secs(),
            "draining: new calls get 503"
        );
        // New INVITEs still get their 503 from a tracked task; `wait` ends when none is left.
        shared.calls.close();
        if tokio::time::timeout(grace, shared.calls.wait())
            .await
            .is_err()
        {
            warn!(
                calls = shared.stats.active.load(Relaxed),
                "drain grace lapsed: hanging up the remaining calls"
            );
            shared.hang_up_all.cancel();
            if tokio::time::timeout(HANG_UP_TIMEOUT, shared.calls.wait())
                .await
                .is_err()
            {
                warn!(
                    calls = shared.calls.len(),
                    "calls still ending after BYE; stopping anyway"
                );
            }
        }
        info!(stats = %shared.stats.line(), media = %shared.media.line(), "signaling stopping");
        self.pool_task.abort();
        shared.media.stop();
        lag.abort();
        stats.abort();
    }
}

/// Receive buffer asked for on the SIP UDP socket. The kernel default (212 KB, about a hundred
/// INVITEs on loopback) overflowed in a 3,000 calls/s burst while the process waited for the CPU
/// for tens of ms: dropped INVITEs are answered only after the caller's retransmission, 0.5 s
/// or more later. 4 MiB holds a second or more of such a burst.
const SIP_UDP_RECEIVE_BUFFER: usize = 4 << 20;

/// The SIP UDP socket, with its receive buffer sized (vendor patch 0007 lets ezk serve it).
/// Beyond `net.core.rmem_max` the kernel grants less unless the process may force it
/// (CAP_NET_ADMIN); what it granted is logged, with the sysctl to raise when it is short.
fn sip_udp_socket(addr: SocketAddr) -> std::io::Result<tokio::net::UdpSocket> {
    use nix::sys::socket::{getsockopt, setsockopt, sockopt};
    let socket = std::net::UdpSocket::bind(addr)?;
    if setsockopt(&socket, sockopt::RcvBufForce, &SIP_UDP_RECEIVE_BUFFER).is_err() {
        setsockopt(&socket, sockopt::RcvBuf, &SIP_UDP_RECEIVE_BUFFER)
            .map_err(std::io::Error::from)?;
    }
    // Linux reports twice the size asked for (its bookkeeping overhead included).
    let granted = getsockopt(&socket, sockopt::RcvBuf).map_err(std::io::Error::from)? / 2;
    if granted < SIP_UDP_RECEIVE_BUFFER {
        warn!(
            granted_bytes = granted,
            wanted_bytes = SIP_UDP_RECEIVE_BUFFER,
            "SIP UDP receive buffer is smaller than wanted: a burst of INVITEs may be dropped \
             (raise net.core.rmem_max, or grant CAP_NET_ADMIN)"
        );
    } else {
        info!(bytes = granted, "SIP UDP receive buffer");
    }
    socket.set_nonblocking(true)?;
    tokio::net::UdpSocket::from_std(socket)
}

/// How late the event loop runs: a 10 ms timer's overshoot, published for admission
/// (`overload.max_event_loop_lag_ms`) and `/metrics`.
async fn measure_lag(shared: Arc<Shared>) {
    const EVERY: Duration = Duration::from_millis(10);
    loop {
        let start = tokio::time::Instant::now();
        tokio::time::sleep(EVERY).await;
        let late = start.elapsed().saturating_sub(EVERY);
        shared
            .stats
            .event_loop_lag_us
            .store(late.as_micros() as u64, Relaxed);
    }
}
