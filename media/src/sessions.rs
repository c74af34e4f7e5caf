//! The session registry: the shell around the pure [`SessionTable`]. It binds each session's
//! RTP/RTCP sockets outside any lock, runs its receive task, drives the pacing threads with
//! fire-and-forget commands (no gRPC handler ever waits on a pacing thread), and publishes the
//! events `WatchSessions` streams. Every lock is held for a few map operations only.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant, SystemTime};

use rand::Rng;
use tokio::sync::broadcast;

use crate::engine::{Engine, Finished, SessionCounters, Stream, StreamRtp};
use crate::receiver::{Receiver, RxEvent, RxParams, RxSetup};
use milliwatt_media_core::rtp::RtpSender;
use milliwatt_media_core::table::{Counts, Entry, SessionTable, TableConfig, ToneStart};
use milliwatt_media_core::tone::{ToneKey, ToneTable};
use milliwatt_media_core::SessionId;

pub use milliwatt_media_core::session::{
    Event, EventKind, MediaError, Snapshot, State, ToneRequest,
};
pub use milliwatt_media_core::table::expiry_reason;

pub struct Allocated {
    pub id: SessionId,
    pub host: String,
    pub port: u16,
    pub lease: Duration,
}

#[derive(Debug, Clone)]
pub struct RegistryConfig {
    pub bind: IpAddr,
    pub advertised_host: String,
    pub ports: Vec<u16>,
    pub default_lease: Duration,
    pub grace: Duration,
    /// Pacing threads at SCHED_FIFO where permitted.
    pub realtime_pacing: bool,
    /// Packet times a pacing thread still sends after a stall (`media.pacing_catch_up_ms` / 20).
    pub pacing_catch_up: u32,
}

/// A session's I/O: its sockets, counters and receive task.
struct SessionIo {
    socket: Arc<UdpSocket>,
    /// The RTCP port (+1), unless RTCP is multiplexed on the RTP port (RFC 5761).
    _rtcp: Option<Arc<UdpSocket>>,
    counters: Arc<SessionCounters>,
    receiver: Option<Receiver>,
}

struct Inner {
    table: SessionTable,
    io: HashMap<u64, SessionIo>,
    tables: HashMap<ToneKey, Weak<ToneTable>>,
}

/// What the registry's owner must feed back into it (see [`Registry::tone_finished`] and
/// [`Registry::on_rx_event`]).
pub struct RegistryInputs {
    pub finished: tokio::sync::mpsc::UnboundedReceiver<Finished>,
    pub rx_events: tokio::sync::mpsc::UnboundedReceiver<RxEvent>,
}

pub struct Registry {
    cfg: RegistryConfig,
    instance: String,
    rx_events: tokio::sync::mpsc::UnboundedSender<RxEvent>,
    inner: Mutex<Inner>,
    engine: Engine,
    events: broadcast::Sender<Event>,
    /// The number of sessions, published on every change (the drain waits on it).
    count: tokio::sync::watch::Sender<usize>,
}

impl Registry {
    pub fn new(cfg: RegistryConfig, pacing_threads: usize) -> (Arc<Registry>, RegistryInputs) {
        let (finished_tx, finished_rx) = tokio::sync::mpsc::unbounded_channel();
        let (rx_tx, rx_rx) = tokio::sync::mpsc::unbounded_channel();
        let engine = Engine::start(
            pacing_threads,
            cfg.realtime_pacing,
            cfg.pacing_catch_up,
            finished_tx,
        );
        let (events, _) = broadcast::channel(4096);
        let inner = Inner {
            table: SessionTable::new(TableConfig {
                ports: cfg.ports.clone(),
                default_lease: cfg.default_lease,
                grace: cfg.grace,
            }),
            io: HashMap::new(),
            tables: HashMap::new(),
        };
        let registry = Arc::new(Registry {
            cfg,
            instance: format!("{:016x}", rand::rng().random::<u64>()),
            rx_events: rx_tx,
            inner: Mutex::new(inner),
            engine,
            events,
            count: tokio::sync::watch::channel(0).0,
        });
        (
            registry,
            RegistryInputs {
                finished: finished_rx,
                rx_events: rx_rx,
            },
        )
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock is a bug; the data stays usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Random per process start (see RenewLeaseResponse.media_instance).
    pub fn instance(&self) -> &str {
        &self.instance
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The number of sessions, as it changes.
    pub fn session_count(&self) -> tokio::sync::watch::Receiver<usize> {
        self.count.subscribe()
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    fn emit(&self, kind: EventKind, session: Snapshot, reason: &str) {
        self.emit_event(Event {
            kind,
            session,
            reason: reason.to_string(),
            at: SystemTime::now(),
            digit: None,
        });
    }

    fn emit_event(&self, e: Event) {
        // No subscribers is fine.
        let _ = self.events.send(e);
    }

    fn snapshot(&self, id: &SessionId, e: &Entry, io: Option<&SessionIo>) -> Snapshot {
        let c = io.map(|io| &*io.counters);
        Snapshot {
            id: id.clone(),
            call_id: e.call_id.clone(),
            owner: e.owner.clone(),
            state: e.state,
            tone: e.tone.clone(),
            local_host: self.cfg.advertised_host.clone(),
            local_port: e.port,
            ssrc: e.ssrc.unwrap_or(0),
            packets_sent: c.map_or(0, |c| c.packets_sent.load(Relaxed)),
            bytes_sent: c.map_or(0, |c| c.bytes_sent.load(Relaxed)),
            packets_skipped: c.map_or(0, |c| c.packets_skipped.load(Relaxed)),
            created_at: e.created_at,
            age: e.created.elapsed(),
            quality: io
                .and_then(|io| io.receiver.as_ref())
                .map(Receiver::quality),
        }
    }

    fn snapshot_of(&self, inner: &Inner, id: &SessionId) -> Result<Snapshot, MediaError> {
        let e = inner.table.get(id)?;
        Ok(self.snapshot(id, e, inner.io.get(&e.key)))
    }

    /// Reserves an RTP/RTCP port pair (bound outside the lock) and records the session.
    pub fn allocate(
        &self,
        call_id: &str,
        owner: &str,
        lease: Option<Duration>,
        rtcp_mux: bool,
        now: Instant,
    ) -> Result<Allocated, MediaError> {
        // Try each free port once; ports that someone else holds go to the back.
        let tries = self.lock().table.free_ports();
        let mut bound = None;
        for _ in 0..tries {
            let Some(port) = self.lock().table.take_port() else {
                break;
            };
            match bind_pair(self.cfg.bind, port, rtcp_mux) {
                Ok(pair) => {
                    bound = Some((port, pair));
                    break;
                }
                // EMFILE/ENFILE: no port will bind now; say so at once instead of walking
                // the whole free list.
                Err(e) if matches!(e.raw_os_error(), Some(23 | 24)) => {
                    self.lock().table.port_untried(port);
                    tracing::warn!(error = %e, "open-file limit reached: session refused");
                    return Err(MediaError::OutOfDescriptors);
                }
                Err(e) => {
                    tracing::debug!(port, error = %e, "RTP port busy, trying the next");
                    self.lock().table.port_busy(port);
                }
            }
        }
        let Some((port, (rtp, rtcp))) = bound else {
            return Err(MediaError::PortsExhausted);
        };
        let (rtp, rtcp) = (Arc::new(rtp), rtcp.map(Arc::new));
        let id = SessionId::from_random(rand::rng().random());
        let counters: Arc<SessionCounters> = Arc::default();
        let mut inner = self.lock();
        let (key, lease) = inner.table.insert(
            id.clone(),
            call_id,
            owner,
            lease,
            port,
            now,
            SystemTime::now(),
        );
        // The receive task needs a runtime (the gRPC server's); unit tests have none.
        let receiver = if tokio::runtime::Handle::try_current().is_ok() {
            match Receiver::spawn(
                &rtp,
                rtcp.as_ref(),
                RxSetup {
                    key,
                    counters: counters.clone(),
                    engine: self.engine.counters.clone(),
                    engine_epoch: self.engine.epoch,
                    cname: format!("milliwatt-{id}@{}", self.cfg.advertised_host),
                    events: self.rx_events.clone(),
                },
            ) {
                Ok(r) => Some(r),
                Err(e) => {
                    tracing::warn!(error = %e, port, "cannot receive on the RTP port; no quality statistics");
                    None
                }
            }
        } else {
            None
        };
        inner.io.insert(
            key,
            SessionIo {
                socket: rtp,
                _rtcp: rtcp,
                counters,
                receiver,
            },
        );
        self.count.send_replace(inner.table.len());
        let snap = self.snapshot_of(&inner, &id)?;
        drop(inner);
        tracing::debug!(session = %id, call_id, port, "session allocated");
        self.emit(EventKind::Allocated, snap, "");
        Ok(Allocated {
            id,
            host: self.cfg.advertised_host.clone(),
            port,
            lease,
        })
    }

    fn table(inner: &mut Inner, key: ToneKey) -> Arc<ToneTable> {
        if let Some(t) = inner.tables.get(&key).and_then(Weak::upgrade) {
            return t;
        }
        inner.tables.retain(|_, w| w.strong_count() > 0);
        let t = Arc::new(ToneTable::new(key.clone()));
        inner.tables.insert(key, Arc::downgrade(&t));
        t
    }

    /// Starts (or restarts, after hold or with new parameters) the tone, or, when it waits for
    /// the caller's RTP, sets the receive task up to tell when that arrives. Returns the SSRC.
    pub fn start_tone(&self, id: &SessionId, req: ToneRequest) -> Result<u32, MediaError> {
        let mut inner = self.lock();
        let start = inner
            .table
            .start_tone(id, req.clone(), rand::rng().random())?;
        let io = inner.io.get(&start.key).expect("every session has its I/O");
        io.counters.ssrc.store(start.ssrc, Relaxed);
        if let Some(r) = &io.receiver {
            r.set_params(RxParams {
                sdp_remote: req.remote,
                payload_type: req.payload_type,
                dtmf_payload_type: req.dtmf_payload_type,
                srtp: req.srtp.clone(),
            });
        }
        if start.waiting {
            if io.receiver.is_none() {
                // Fail closed: starting anyway would defeat what the wait is for.
                tracing::warn!(session = %id, "the tone waits for the caller's RTP, but this session cannot receive (see above): nothing will be sent");
            }
            drop(inner);
            tracing::debug!(session = %id, remote = %req.remote, "tone waits for the caller's first RTP packet");
            return Ok(start.ssrc);
        }
        self.launch(&mut inner, start, &req, req.remote);
        let snap = self.snapshot_of(&inner, id)?;
        drop(inner);
        tracing::debug!(session = %id, remote = %req.remote, codec = req.codec.name(), ssrc = start.ssrc, "tone started");
        self.emit(EventKind::ToneStarted, snap, "");
        Ok(start.ssrc)
    }

    /// Hands the stream of `start` to the pacing engine, sending to `remote`; an echo test's
    /// to the receive task, which sends each of the caller's packets back as it arrives.
    fn launch(&self, inner: &mut Inner, start: ToneStart, req: &ToneRequest, remote: SocketAddr) {
        if req.echo {
            let io = inner.io.get(&start.key).expect("every session has its I/O");
            match &io.receiver {
                Some(rx) => rx.start_echo(start.ssrc, start.resume),
                None => tracing::warn!(
                    "an echo test needs the session's receive task, which could not start: nothing is echoed"
                ),
            }
            return;
        }
        let mut rng = rand::rng();
        let tone = Self::table(
            inner,
            ToneKey::shaped(req.codec, req.frequency_hz, req.level_dbm0, &req.shape),
        );
        let io = inner.io.get(&start.key).expect("every session has its I/O");
        let rtp = if start.resume {
            StreamRtp::Continue
        } else {
            StreamRtp::New(RtpSender::new(
                start.ssrc,
                req.payload_type,
                rng.random(),
                rng.random(),
            ))
        };
        self.engine.start_stream(
            start.key,
            Stream {
                socket: io.socket.clone(),
                remote,
                table: tone,
                duration: req.duration,
                counters: io.counters.clone(),
                srtp: req.srtp.clone(),
            },
            rtp,
        );
    }

    pub fn stop_tone(&self, id: &SessionId, now: Instant) -> Result<(), MediaError> {
        let mut inner = self.lock();
        if let Some(key) = inner.table.stop_tone(id, now)? {
            self.engine.stop_stream(key);
            if let Some(rx) = inner.io.get(&key).and_then(|io| io.receiver.as_ref()) {
                rx.stop_echo();
            }
            let snap = self.snapshot_of(&inner, id)?;
            drop(inner);
            self.emit(EventKind::ToneStopped, snap, "stopped by owner");
        }
        Ok(())
    }

    /// A stream's duration elapsed on its pacing thread.
    pub fn tone_finished(&self, f: Finished, now: Instant) {
        let mut inner = self.lock();
        let Some(id) = inner.table.tone_finished(f.key, now) else {
            return;
        };
        let Ok(snap) = self.snapshot_of(&inner, &id) else {
            return;
        };
        drop(inner);
        self.emit(EventKind::ToneStopped, snap, "tone duration elapsed");
    }

    pub fn release(&self, id: &SessionId, reason: &str) -> Result<Snapshot, MediaError> {
        let mut inner = self.lock();
        let entry = inner.table.release(id)?;
        let io = inner.io.remove(&entry.key);
        self.engine.forget(entry.key);
        self.count.send_replace(inner.table.len());
        drop(inner);
        let snap = self.snapshot(id, &entry, io.as_ref());
        drop(io); // stops the receive task and closes the sockets
        let q = snap.quality.clone().unwrap_or_default();
        tracing::info!(
            session = %id,
            call_id = %snap.call_id,
            reason,
            rtp_sent = snap.packets_sent,
            rtp_received = q.packets_received,
            lost = q.packets_lost,
            loss_percent = format!("{:.2}", q.loss_percent),
            jitter_ms = format!("{:.2}", q.jitter_ms),
            mos = format!("{:.2}", q.mos),
            dtmf = %q.dtmf_digits,
            "media session released"
        );
        if q.echoed_packets > 0 {
            tracing::info!(
                session = %id,
                call_id = %snap.call_id,
                echoed = q.echoed_packets,
                turnaround_avg_ms = format!("{:.3}", q.echo_turnaround_avg_ms),
                turnaround_max_ms = format!("{:.3}", q.echo_turnaround_max_ms),
                rtt_ms = format!("{:.1}", q.rtt_ms),
                "echo test: the caller's packets sent back"
            );
        }
        self.emit(EventKind::Released, snap.clone(), reason);
        Ok(snap)
    }

    /// A DTMF digit the caller sent by SIP INFO (signaling read it): recorded and streamed like
    /// one from its RTP (RFC 4733).
    pub fn report_dtmf(
        &self,
        id: &SessionId,
        digit: char,
        duration: Duration,
    ) -> Result<(), MediaError> {
        let inner = self.lock();
        let e = inner.table.get(id)?;
        if let Some(rx) = inner.io.get(&e.key).and_then(|io| io.receiver.as_ref()) {
            rx.add_dtmf_digit(digit);
        }
        let snap = self.snapshot_of(&inner, id)?;
        drop(inner);
        self.dtmf_digit(snap, digit, duration, "SIP INFO");
        Ok(())
    }

    /// Logs and streams (KIND_DTMF) a digit the caller sent `via` RTP or SIP INFO.
    fn dtmf_digit(&self, snap: Snapshot, digit: char, duration: Duration, via: &str) {
        tracing::info!(session = %snap.id, call_id = %snap.call_id, %digit, duration_ms = duration.as_millis() as u64, via, "DTMF digit");
        self.emit_event(Event {
            kind: EventKind::Dtmf,
            session: snap,
            reason: String::new(),
            at: SystemTime::now(),
            digit: Some((digit, duration)),
        });
    }

    /// What a session's receive task found: a DTMF digit, or the caller's real RTP source.
    pub fn on_rx_event(&self, e: RxEvent) {
        let key = match &e {
            RxEvent::Dtmf { key, .. }
            | RxEvent::Latched { key, .. }
            | RxEvent::CallerRtp { key, .. } => *key,
        };
        let mut inner = self.lock();
        if let RxEvent::CallerRtp { from, .. } = e {
            // A tone that waited for the caller starts now, toward where its RTP comes from.
            let Some((id, start)) = inner.table.caller_rtp(key) else {
                return;
            };
            let Some(req) = inner.table.get(&id).ok().and_then(|e| e.tone.clone()) else {
                return;
            };
            self.launch(&mut inner, start, &req, from);
            let Ok(snap) = self.snapshot_of(&inner, &id) else {
                return;
            };
            drop(inner);
            tracing::info!(session = %id, call_id = %snap.call_id, %from, "the caller's first RTP packet arrived: tone started");
            self.emit(
                EventKind::ToneStarted,
                snap,
                &format!("after the caller's first RTP packet, from {from}"),
            );
            return;
        }
        let Some(id) = inner.table.id_of(key).cloned() else {
            return;
        };
        let Ok(snap) = self.snapshot_of(&inner, &id) else {
            return;
        };
        match e {
            RxEvent::Dtmf {
                digit, duration, ..
            } => {
                drop(inner);
                self.dtmf_digit(snap, digit, duration, "RTP");
            }
            RxEvent::CallerRtp { .. } => {} // handled above
            RxEvent::Latched { from, sdp, .. } => {
                if snap.state == State::Sending {
                    self.engine.retarget(key, from);
                }
                drop(inner);
                tracing::info!(
                    session = %id,
                    call_id = %snap.call_id,
                    sdp = %sdp,
                    actual = %from,
                    "symmetric RTP: the caller sends from another address than its SDP; sending there"
                );
                self.emit(
                    EventKind::RtpSourceLatched,
                    snap,
                    &format!("RTP comes from {from}, SDP said {sdp}"),
                );
            }
        }
    }

    /// Streams the receive quality of every session that has received RTP (WatchSessions).
    pub fn emit_quality(&self) {
        let snaps: Vec<Snapshot> = self
            .list()
            .into_iter()
            .filter(|s| s.quality.as_ref().is_some_and(|q| q.packets_received > 0))
            .collect();
        for snap in snaps {
            self.emit(EventKind::Quality, snap, "");
        }
    }

    /// Renews the owner's lease; returns how many sessions it holds.
    pub fn renew(&self, owner: &str, now: Instant) -> u32 {
        self.lock().table.renew(owner, now)
    }

    /// Releases sessions whose owner's lease lapsed or whose tone ended more than the grace ago.
    pub fn sweep(&self, now: Instant) -> usize {
        let expired = self.lock().table.sweep(now);
        for (id, reason) in &expired {
            if let Ok(snap) = self.release(id, reason) {
                tracing::info!(session = %id, call_id = %snap.call_id, reason, "media session expired");
            }
        }
        expired.len()
    }

    pub fn get(&self, id: &SessionId) -> Result<Snapshot, MediaError> {
        let inner = self.lock();
        self.snapshot_of(&inner, id)
    }

    pub fn list(&self) -> Vec<Snapshot> {
        let inner = self.lock();
        let mut v: Vec<Snapshot> = inner
            .table
            .iter()
            .map(|(id, e)| self.snapshot(id, e, inner.io.get(&e.key)))
            .collect();
        v.sort_by_key(|s| s.created_at);
        v
    }

    /// (active sessions, sending sessions, free ports, total allocated, expired)
    pub fn counts(&self) -> Counts {
        self.lock().table.counts()
    }
}

/// The RTP socket and, unless RTCP is multiplexed on it, the RTCP socket (port + 1). Without
/// multiplexing both ports must bind, so a half-free pair counts as busy.
fn bind_pair(
    ip: IpAddr,
    port: u16,
    rtcp_mux: bool,
) -> std::io::Result<(UdpSocket, Option<UdpSocket>)> {
    let rtp = UdpSocket::bind(SocketAddr::new(ip, port))?;
    rtp.set_nonblocking(true)?;
    if rtcp_mux {
        return Ok((rtp, None));
    }
    let rtcp = UdpSocket::bind(SocketAddr::new(ip, port + 1))?;
    rtcp.set_nonblocking(true)?;
    Ok((rtp, Some(rtcp)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry(ports: Vec<u16>) -> Arc<Registry> {
        Registry::new(
            RegistryConfig {
                bind: "127.0.0.1".parse().unwrap(),
                advertised_host: "127.0.0.1".into(),
                ports,
                default_lease: Duration::from_secs(30),
                grace: Duration::from_secs(5),
                realtime_pacing: false,
                pacing_catch_up: 0,
            },
            1,
        )
        .0
    }

    /// Finds `n` free even ports (with their odd neighbour) on loopback. One counter for the
    /// whole test binary: tests running at once never probe (and get) the same ports.
    fn free_ports(n: usize) -> Vec<u16> {
        use std::sync::atomic::{AtomicU16, Ordering::SeqCst};
        static NEXT: AtomicU16 = AtomicU16::new(0);
        let base = 40_000 + (std::process::id() % 1000) as u16 * 16;
        let mut out = Vec::new();
        while out.len() < n {
            let p = base + NEXT.fetch_add(2, SeqCst);
            if bind_pair("127.0.0.1".parse().unwrap(), p, false).is_ok() {
                out.push(p);
            }
        }
        out
    }

    #[test]
    fn ports_are_reserved_and_returned_and_exhaustion_is_an_error() {
        let ports = free_ports(2);
        let r = registry(ports.clone());
        let now = Instant::now();
        let a = r.allocate("c1", "o", None, false, now).unwrap();
        let b = r.allocate("c2", "o", None, false, now).unwrap();
        assert_eq!(
            r.allocate("c3", "o", None, false, now).err(),
            Some(MediaError::PortsExhausted)
        );
        assert_ne!(a.port, b.port);
        assert!(ports.contains(&a.port) && ports.contains(&b.port));
        r.release(&a.id, "test").unwrap();
        assert!(matches!(
            r.release(&a.id, "again"),
            Err(MediaError::NotFound(_))
        ));
        let c = r.allocate("c3", "o", None, false, now).unwrap();
        assert_eq!(c.port, a.port);
    }

    #[test]
    fn lapsed_owner_sessions_are_swept() {
        let r = registry(free_ports(2));
        let t0 = Instant::now();
        let a = r
            .allocate("c1", "gone", Some(Duration::from_secs(2)), false, t0)
            .unwrap();
        let b = r
            .allocate("c2", "alive", Some(Duration::from_secs(2)), false, t0)
            .unwrap();
        assert_eq!(r.sweep(t0 + Duration::from_secs(1)), 0);
        assert_eq!(r.renew("alive", t0 + Duration::from_secs(2)), 1);
        assert_eq!(r.sweep(t0 + Duration::from_secs(3)), 1);
        assert!(r.get(&a.id).is_err());
        assert!(r.get(&b.id).is_ok());
    }
}
