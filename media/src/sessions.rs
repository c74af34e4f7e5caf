//! The session registry: port reservation, session state, leases, and the events that
//! `WatchSessions` streams. Calls are short and synchronous (a mutex, no await inside).

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant, SystemTime};

use rand::Rng;
use tokio::sync::broadcast;

use crate::engine::{Engine, Finished, SessionCounters, Stream};
use crate::receiver::{Receiver, RxEvent, RxParams, RxSetup};
use milliwatt_media_core::rtp::RtpSender;
use milliwatt_media_core::tone::{ToneKey, ToneTable};
use milliwatt_media_core::SessionId;

pub use milliwatt_media_core::session::{
    Event, EventKind, MediaError, Snapshot, State, ToneRequest,
};

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
}

struct Session {
    key: u64,
    call_id: String,
    owner: String,
    state: State,
    tone: Option<ToneRequest>,
    port: u16,
    socket: Arc<UdpSocket>,
    /// Holds the RTCP port (+1) so nobody else takes it.
    _rtcp: UdpSocket,
    /// RTP state kept across hold/resume.
    sender: Option<RtpSender>,
    counters: Arc<SessionCounters>,
    created: Instant,
    created_at: SystemTime,
    /// When the tone finished or was stopped (for the grace period).
    idle_since: Option<Instant>,
    receiver: Option<Receiver>,
}

struct Inner {
    sessions: HashMap<SessionId, Session>,
    keys: HashMap<u64, SessionId>,
    free_ports: VecDeque<u16>,
    owners: HashMap<String, (Instant, Duration)>,
    tables: HashMap<ToneKey, Weak<ToneTable>>,
    next_key: u64,
    total: u64,
    expired: u64,
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

/// Why a session should be released now, if it should: its owner's lease lapsed, or its tone
/// ended more than `grace` ago.
pub fn expiry_reason(
    now: Instant,
    owner_renewed: Option<(Instant, Duration)>,
    idle_since: Option<Instant>,
    grace: Duration,
) -> Option<&'static str> {
    match owner_renewed {
        Some((at, lease)) if now.saturating_duration_since(at) <= lease => {}
        _ => return Some("lease expired"),
    }
    match idle_since {
        Some(t) if now.saturating_duration_since(t) > grace => Some("tone finished"),
        _ => None,
    }
}

impl Registry {
    pub fn new(cfg: RegistryConfig, pacing_threads: usize) -> (Arc<Registry>, RegistryInputs) {
        let (finished_tx, finished_rx) = tokio::sync::mpsc::unbounded_channel();
        let (rx_tx, rx_rx) = tokio::sync::mpsc::unbounded_channel();
        let engine = Engine::start(pacing_threads, finished_tx);
        let (events, _) = broadcast::channel(4096);
        let inner = Inner {
            sessions: HashMap::new(),
            keys: HashMap::new(),
            free_ports: cfg.ports.iter().copied().collect(),
            owners: HashMap::new(),
            tables: HashMap::new(),
            next_key: 1,
            total: 0,
            expired: 0,
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

    fn snapshot(&self, id: &SessionId, s: &Session) -> Snapshot {
        Snapshot {
            id: id.clone(),
            call_id: s.call_id.clone(),
            owner: s.owner.clone(),
            state: s.state,
            tone: s.tone.clone(),
            local_host: self.cfg.advertised_host.clone(),
            local_port: s.port,
            ssrc: s.sender.as_ref().map(|r| r.ssrc()).unwrap_or(0),
            packets_sent: s.counters.packets_sent.load(Relaxed),
            bytes_sent: s.counters.bytes_sent.load(Relaxed),
            packets_skipped: s.counters.packets_skipped.load(Relaxed),
            created_at: s.created_at,
            age: s.created.elapsed(),
            quality: s.receiver.as_ref().map(Receiver::quality),
        }
    }

    pub fn allocate(
        &self,
        call_id: &str,
        owner: &str,
        lease: Option<Duration>,
        now: Instant,
    ) -> Result<Allocated, MediaError> {
        let lease = lease.unwrap_or(self.cfg.default_lease);
        let mut inner = self.lock();
        // Try each free port once; ports that someone else holds go to the back.
        let mut bound = None;
        for _ in 0..inner.free_ports.len() {
            let port = inner.free_ports.pop_front().expect("counted above");
            match bind_pair(self.cfg.bind, port) {
                Ok(pair) => {
                    bound = Some((port, pair));
                    break;
                }
                Err(e) => {
                    tracing::debug!(port, error = %e, "RTP port busy, trying the next");
                    inner.free_ports.push_back(port);
                }
            }
        }
        let Some((port, (rtp, rtcp))) = bound else {
            return Err(MediaError::PortsExhausted);
        };
        let id = SessionId::from_random(rand::rng().random());
        let counters: Arc<SessionCounters> = Arc::default();
        let key = inner.next_key;
        inner.next_key += 1;
        inner.total += 1;
        inner.owners.insert(owner.to_string(), (now, lease));
        inner.keys.insert(key, id.clone());
        // The receive task needs a runtime (the gRPC server's); unit tests have none.
        let receiver = if tokio::runtime::Handle::try_current().is_ok() {
            match Receiver::spawn(
                &rtp,
                &rtcp,
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
        let session = Session {
            key,
            call_id: call_id.to_string(),
            owner: owner.to_string(),
            state: State::Allocated,
            tone: None,
            port,
            socket: Arc::new(rtp),
            _rtcp: rtcp,
            sender: None,
            counters,
            created: now,
            created_at: SystemTime::now(),
            idle_since: None,
            receiver,
        };
        let snap = self.snapshot(&id, &session);
        inner.sessions.insert(id.clone(), session);
        self.count.send_replace(inner.sessions.len());
        drop(inner);
        tracing::debug!(session = %id, call_id = call_id, port, "session allocated");
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
        let t = Arc::new(ToneTable::new(key));
        inner.tables.insert(key, Arc::downgrade(&t));
        t
    }

    /// Starts (or restarts, after hold or with new parameters) the tone. Returns the SSRC.
    pub fn start_tone(&self, id: &SessionId, req: ToneRequest) -> Result<u32, MediaError> {
        let mut inner = self.lock();
        let table = Self::table(
            &mut inner,
            ToneKey::new(req.codec, req.frequency_hz, req.level_dbm0),
        );
        let s = inner
            .sessions
            .get_mut(id)
            .ok_or_else(|| MediaError::NotFound(id.to_string()))?;
        let mut sender = match s.sender.take() {
            // Same stream resumed: same SSRC, sequence continues, marker set.
            Some(mut old) if s.tone.as_ref().map(|t| t.payload_type) == Some(req.payload_type) => {
                old.resume();
                old
            }
            _ => {
                let mut rng = rand::rng();
                RtpSender::new(rng.random(), req.payload_type, rng.random(), rng.random())
            }
        };
        if s.state == State::Sending {
            if let Some(running) = self.engine.stop_stream(s.key) {
                sender = running;
                sender.resume();
            }
        }
        let ssrc = sender.ssrc();
        s.counters.ssrc.store(ssrc, Relaxed);
        if let Some(r) = &s.receiver {
            r.set_params(RxParams {
                sdp_remote: req.remote,
                payload_type: req.payload_type,
                dtmf_payload_type: req.dtmf_payload_type,
            });
        }
        s.sender = Some(sender.clone());
        s.state = State::Sending;
        s.idle_since = None;
        s.tone = Some(req.clone());
        self.engine.start_stream(
            s.key,
            Stream {
                socket: s.socket.clone(),
                remote: req.remote,
                table,
                sender,
                duration: req.duration,
                counters: s.counters.clone(),
            },
        );
        let snap = self.snapshot(id, s);
        drop(inner);
        tracing::debug!(session = %id, remote = %req.remote, codec = req.codec.name(), ssrc, "tone started");
        self.emit(EventKind::ToneStarted, snap, "");
        Ok(ssrc)
    }

    pub fn stop_tone(&self, id: &SessionId, now: Instant) -> Result<(), MediaError> {
        let mut inner = self.lock();
        let s = inner
            .sessions
            .get_mut(id)
            .ok_or_else(|| MediaError::NotFound(id.to_string()))?;
        if s.state == State::Sending {
            if let Some(sender) = self.engine.stop_stream(s.key) {
                s.sender = Some(sender);
            }
            s.state = State::Stopped;
            s.idle_since = Some(now);
            let snap = self.snapshot(id, s);
            drop(inner);
            self.emit(EventKind::ToneStopped, snap, "stopped by owner");
        }
        Ok(())
    }

    /// A stream's duration elapsed on its pacing thread.
    pub fn tone_finished(&self, f: Finished, now: Instant) {
        let mut inner = self.lock();
        let Some(id) = inner.keys.get(&f.key).cloned() else {
            return;
        };
        let Some(s) = inner.sessions.get_mut(&id) else {
            return;
        };
        s.sender = Some(f.sender);
        s.state = State::Stopped;
        s.idle_since = Some(now);
        let snap = self.snapshot(&id, s);
        drop(inner);
        self.emit(EventKind::ToneStopped, snap, "tone duration elapsed");
    }

    pub fn release(&self, id: &SessionId, reason: &str) -> Result<Snapshot, MediaError> {
        let mut inner = self.lock();
        let mut s = inner
            .sessions
            .remove(id)
            .ok_or_else(|| MediaError::NotFound(id.to_string()))?;
        inner.keys.remove(&s.key);
        if s.state == State::Sending {
            self.engine.stop_stream(s.key);
        }
        inner.free_ports.push_back(s.port);
        self.count.send_replace(inner.sessions.len());
        s.state = State::Released;
        let snap = self.snapshot(id, &s);
        drop(inner);
        drop(s); // stops the receive task
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
        self.emit(EventKind::Released, snap.clone(), reason);
        Ok(snap)
    }

    /// What a session's receive task found: a DTMF digit, or the caller's real RTP source.
    pub fn on_rx_event(&self, e: RxEvent) {
        let key = match &e {
            RxEvent::Dtmf { key, .. } | RxEvent::Latched { key, .. } => *key,
        };
        let inner = self.lock();
        let Some(id) = inner.keys.get(&key).cloned() else {
            return;
        };
        let Some(s) = inner.sessions.get(&id) else {
            return;
        };
        let snap = self.snapshot(&id, s);
        match e {
            RxEvent::Dtmf {
                digit, duration, ..
            } => {
                drop(inner);
                tracing::info!(session = %id, call_id = %snap.call_id, %digit, duration_ms = duration.as_millis() as u64, "DTMF digit");
                self.emit_event(Event {
                    kind: EventKind::Dtmf,
                    session: snap,
                    reason: String::new(),
                    at: SystemTime::now(),
                    digit: Some((digit, duration)),
                });
            }
            RxEvent::Latched { from, sdp, .. } => {
                if s.state == State::Sending {
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
        let snaps: Vec<Snapshot> = {
            let inner = self.lock();
            inner
                .sessions
                .iter()
                .map(|(id, s)| self.snapshot(id, s))
                .filter(|s| s.quality.as_ref().is_some_and(|q| q.packets_received > 0))
                .collect()
        };
        for snap in snaps {
            self.emit(EventKind::Quality, snap, "");
        }
    }

    /// Renews the owner's lease; returns how many sessions it holds.
    pub fn renew(&self, owner: &str, now: Instant) -> u32 {
        let mut inner = self.lock();
        let lease = inner
            .owners
            .get(owner)
            .map(|(_, l)| *l)
            .unwrap_or(self.cfg.default_lease);
        inner.owners.insert(owner.to_string(), (now, lease));
        inner.sessions.values().filter(|s| s.owner == owner).count() as u32
    }

    /// Releases sessions whose owner's lease lapsed or whose tone ended more than the grace ago.
    pub fn sweep(&self, now: Instant) -> usize {
        let expired: Vec<(SessionId, &'static str)> = {
            let inner = self.lock();
            inner
                .sessions
                .iter()
                .filter_map(|(id, s)| {
                    expiry_reason(
                        now,
                        inner.owners.get(&s.owner).copied(),
                        s.idle_since,
                        self.cfg.grace,
                    )
                    .map(|r| (id.clone(), r))
                })
                .collect()
        };
        for (id, reason) in &expired {
            if let Ok(snap) = self.release(id, reason) {
                tracing::info!(session = %id, call_id = %snap.call_id, reason, "media session expired");
            }
        }
        let mut inner = self.lock();
        inner.expired += expired.len() as u64;
        // Owners with no sessions and a lapsed lease are forgotten.
        let owners_in_use: std::collections::HashSet<String> =
            inner.sessions.values().map(|s| s.owner.clone()).collect();
        inner.owners.retain(|o, (at, lease)| {
            owners_in_use.contains(o) || now.saturating_duration_since(*at) <= *lease
        });
        expired.len()
    }

    pub fn get(&self, id: &SessionId) -> Result<Snapshot, MediaError> {
        let inner = self.lock();
        let s = inner
            .sessions
            .get(id)
            .ok_or_else(|| MediaError::NotFound(id.to_string()))?;
        Ok(self.snapshot(id, s))
    }

    pub fn list(&self) -> Vec<Snapshot> {
        let inner = self.lock();
        let mut v: Vec<Snapshot> = inner
            .sessions
            .iter()
            .map(|(id, s)| self.snapshot(id, s))
            .collect();
        v.sort_by_key(|s| s.created_at);
        v
    }

    /// (active sessions, sending sessions, free ports, total allocated, expired)
    pub fn counts(&self) -> (u32, u32, u32, u64, u64) {
        let inner = self.lock();
        let sending = inner
            .sessions
            .values()
            .filter(|s| s.state == State::Sending)
            .count();
        (
            inner.sessions.len() as u32,
            sending as u32,
            inner.free_ports.len() as u32,
            inner.total,
            inner.expired,
        )
    }
}

fn bind_pair(ip: IpAddr, port: u16) -> std::io::Result<(UdpSocket, UdpSocket)> {
    let rtp = UdpSocket::bind(SocketAddr::new(ip, port))?;
    let rtcp = UdpSocket::bind(SocketAddr::new(ip, port + 1))?;
    rtp.set_nonblocking(true)?;
    Ok((rtp, rtcp))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_follows_lease_and_grace() {
        let t0 = Instant::now();
        let lease = Duration::from_secs(30);
        let grace = Duration::from_secs(5);
        let s = Duration::from_secs;
        assert_eq!(
            expiry_reason(t0 + s(10), Some((t0, lease)), None, grace),
            None
        );
        assert_eq!(
            expiry_reason(t0 + s(31), Some((t0, lease)), None, grace),
            Some("lease expired")
        );
        assert_eq!(expiry_reason(t0, None, None, grace), Some("lease expired"));
        assert_eq!(
            expiry_reason(t0 + s(4), Some((t0, lease)), Some(t0), grace),
            None
        );
        assert_eq!(
            expiry_reason(t0 + s(6), Some((t0, lease)), Some(t0), grace),
            Some("tone finished")
        );
    }

    fn registry(ports: Vec<u16>) -> Arc<Registry> {
        Registry::new(
            RegistryConfig {
                bind: "127.0.0.1".parse().unwrap(),
                advertised_host: "127.0.0.1".into(),
                ports,
                default_lease: Duration::from_secs(30),
                grace: Duration::from_secs(5),
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
            if bind_pair("127.0.0.1".parse().unwrap(), p).is_ok() {
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
        let a = r.allocate("c1", "o", None, now).unwrap();
        let b = r.allocate("c2", "o", None, now).unwrap();
        assert_eq!(
            r.allocate("c3", "o", None, now).err(),
            Some(MediaError::PortsExhausted)
        );
        assert_ne!(a.port, b.port);
        assert!(ports.contains(&a.port) && ports.contains(&b.port));
        r.release(&a.id, "test").unwrap();
        assert!(matches!(
            r.release(&a.id, "again"),
            Err(MediaError::NotFound(_))
        ));
        let c = r.allocate("c3", "o", None, now).unwrap();
        assert_eq!(c.port, a.port);
    }

    #[test]
    fn lapsed_owner_sessions_are_swept() {
        let r = registry(free_ports(2));
        let t0 = Instant::now();
        let a = r
            .allocate("c1", "gone", Some(Duration::from_secs(2)), t0)
            .unwrap();
        let b = r
            .allocate("c2", "alive", Some(Duration::from_secs(2)), t0)
            .unwrap();
        assert_eq!(r.sweep(t0 + Duration::from_secs(1)), 0);
        assert_eq!(r.renew("alive", t0 + Duration::from_secs(2)), 1);
        assert_eq!(r.sweep(t0 + Duration::from_secs(3)), 1);
        assert!(r.get(&a.id).is_err());
        assert!(r.get(&b.id).is_ok());
    }
}
