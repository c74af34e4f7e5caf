//! The receive shell of one session: a task that reads the caller's RTP and RTCP, keeps RFC 3550
//! receiver statistics, detects RFC 4733 DTMF, latches to the caller's real RTP source
//! (symmetric RTP), and sends RTCP reports every 5 s. The logic lives in the pure modules
//! [`milliwatt_media_core::rtp_in`], [`milliwatt_media_core::quality`], [`milliwatt_media_core::rtcp`] and [`milliwatt_media_core::dtmf`].

use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::sync::{mpsc, watch};

use crate::engine::{EngineCounters, SessionCounters};
use milliwatt_media_core::dtmf::DtmfDetector;
use milliwatt_media_core::quality::{ReceiverStats, G711_CLOCK_RATE};
use milliwatt_media_core::rtcp::{self, Outgoing, Packet, ReportBlock, SenderInfo};
use milliwatt_media_core::rtp::EchoStream;
use milliwatt_media_core::rtp_in::{self, PacketKind};
use milliwatt_media_core::srtp::{SrtpKeys, SrtpReceiver, SrtpSender};

/// RFC 3550 6.2: at least 5 s between reports for a session this small.
const RTCP_INTERVAL: Duration = Duration::from_secs(5);
/// One-way delay assumed for the MOS estimate when RTCP gives no round trip.
const DEFAULT_ONE_WAY_DELAY_MS: f64 = 20.0;

/// What the receiver must know of the call (from StartTone).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RxParams {
    /// Where the caller's SDP says it receives RTP.
    pub sdp_remote: SocketAddr,
    pub payload_type: u8,
    pub dtmf_payload_type: Option<u8>,
    /// SRTP: the caller's packets are checked and decrypted, our RTCP (and an echo) protected.
    pub srtp: Option<SrtpKeys>,
}

pub use milliwatt_media_core::session::Quality;

/// What the receive task tells the registry.
#[derive(Debug, Clone)]
pub enum RxEvent {
    Dtmf {
        key: u64,
        digit: char,
        duration: Duration,
    },
    /// The first valid RTP packet since StartTone, from `from` (a tone that waits for the
    /// caller's RTP starts now). Sent before `Latched`.
    CallerRtp { key: u64, from: SocketAddr },
    /// The caller's RTP comes from `from`, not from the SDP's address: send there.
    Latched {
        key: u64,
        from: SocketAddr,
        sdp: SocketAddr,
    },
}

#[derive(Default)]
struct State {
    stats: Option<(u32, ReceiverStats)>,
    dtmf: DtmfDetector,
    q: Quality,
    rtcp_source: Option<SocketAddr>,
    /// The echo test's stream (kept over a hold: the same SSRC goes on), whether it echoes
    /// now, a buffer for its packets, and the sum of its turnaround times.
    echo: Option<EchoStream>,
    echoing: bool,
    echo_buf: Vec<u8>,
    echo_turnaround_sum_ms: f64,
    /// SRTP: the keys, the caller's stream (in), and ours for RTCP and an echo (out). Boxed:
    /// 0.8 KB of key schedules that a call without SRTP would carry for nothing.
    srtp: Option<Box<(SrtpKeys, SrtpReceiver, SrtpSender)>>,
}

impl State {
    fn quality(&self) -> Quality {
        let mut q = self.q.clone();
        if let Some((ssrc, s)) = &self.stats {
            q.rtp_ssrc = *ssrc;
            q.packets_lost = s.lost();
            q.loss_percent = s.loss_percent();
            q.jitter_ms = s.jitter_ms();
            let delay = if q.rtt_ms > 0.0 {
                q.rtt_ms / 2.0
            } else {
                DEFAULT_ONE_WAY_DELAY_MS
            };
            q.mos = s.mos(delay);
        }
        if q.echoed_packets > 0 {
            q.echo_turnaround_avg_ms = self.echo_turnaround_sum_ms / q.echoed_packets as f64;
        }
        q
    }
}

/// What a receive task is given besides its sockets.
pub struct RxSetup {
    pub key: u64,
    pub counters: Arc<SessionCounters>,
    pub engine: Arc<EngineCounters>,
    /// The engine clock's zero (RTP timestamps of sender reports).
    pub engine_epoch: Instant,
    /// RTCP SDES CNAME.
    pub cname: String,
    pub events: mpsc::UnboundedSender<RxEvent>,
}

/// The running receive task of a session; aborted when dropped.
pub struct Receiver {
    params: watch::Sender<Option<RxParams>>,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Receiver {
    /// Starts receiving on the session's sockets (shared, not duplicated: two descriptors per
    /// session). Needs a tokio runtime.
    /// Without an RTCP socket RTCP is multiplexed on the RTP port (RFC 5761): read there (told
    /// apart by its packet type) and sent from there.
    pub fn spawn(
        rtp: &Arc<std::net::UdpSocket>,
        rtcp: Option<&Arc<std::net::UdpSocket>>,
        setup: RxSetup,
    ) -> std::io::Result<Receiver> {
        let rtp = RxSocket::new(rtp.clone())?;
        let rtcp = rtcp.map(|s| RxSocket::new(s.clone())).transpose()?;
        let (params_tx, params_rx) = watch::channel(None);
        let state = Arc::new(Mutex::new(State::default()));
        let task = tokio::spawn(run(
            Task {
                key: setup.key,
                rtp,
                rtcp,
                state: state.clone(),
                counters: setup.counters,
                engine: setup.engine,
                engine_epoch: setup.engine_epoch,
                cname: setup.cname,
                events: setup.events,
            },
            params_rx,
        ));
        Ok(Receiver {
            params: params_tx,
            state,
            task,
        })
    }

    /// New call parameters (StartTone): the source latch starts over.
    pub fn set_params(&self, p: RxParams) {
        self.params.send_replace(Some(p));
    }

    /// The echo test: from now on each of the caller's audio packets goes straight back to
    /// where it came from, in our stream `ssrc` (continued after a hold when `resume`).
    pub fn start_echo(&self, ssrc: u32, resume: bool) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match st.echo.as_mut() {
            Some(e) if resume && e.ssrc() == ssrc => e.resume(),
            _ => {
                use rand::Rng;
                let mut rng = rand::rng();
                st.echo = Some(EchoStream::new(ssrc, rng.random(), rng.random()));
            }
        }
        st.echoing = true;
    }

    /// The echo stops (hold, or the owner stopped it); the stream is kept for a resume.
    pub fn stop_echo(&self) {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).echoing = false;
    }

    /// A DTMF digit the caller sent outside its RTP (SIP INFO): kept with the RTP ones, in order.
    pub fn add_dtmf_digit(&self, digit: char) {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .q
            .dtmf_digits
            .push(digit);
    }

    pub fn quality(&self) -> Quality {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .quality()
    }
}

/// A session socket in tokio's reactor with read interest only. The pacing thread writes the
/// same socket; with write interest every packet sent would wake the reactor (the largest cost
/// in a profile at 2,000 calls), so the reactor only hears about datagrams to read.
struct RxSocket(AsyncFd<Arc<std::net::UdpSocket>>);

/// Datagrams read per wake-up of a session's receive task before it yields to the others.
const MAX_READS_PER_WAKE: usize = 32;

impl RxSocket {
    fn new(socket: Arc<std::net::UdpSocket>) -> std::io::Result<RxSocket> {
        socket.set_nonblocking(true)?;
        // Deprecated in tokio 1.54 for I/O safety (a registered fd closed and reused behind the
        // reactor's back); the safe replacement is `unsafe`, which this workspace forbids. Sound
        // here: the AsyncFd owns an `Arc` of the socket, so the descriptor stays open for as
        // long as it is registered.
        #[allow(deprecated)]
        let fd = AsyncFd::with_interest(socket, Interest::READABLE)?;
        Ok(RxSocket(fd))
    }

    /// Waits until datagrams are queued, then reads them (at most `MAX_READS_PER_WAKE`, so one
    /// flooded socket does not hold the task) into a buffer on the stack and hands each to
    /// `each`. A session holds no receive buffer of its own between packets (it held two of
    /// 2 KB, per call for the whole call).
    async fn read_each(&self, mut each: impl FnMut(&mut [u8], SocketAddr)) {
        let Ok(mut ready) = self.0.readable().await else {
            return;
        };
        let mut buf = [0u8; 2048];
        for _ in 0..MAX_READS_PER_WAKE {
            match ready.try_io(|s| s.get_ref().recv_from(&mut buf)) {
                Ok(Ok((n, from))) => each(&mut buf[..n], from),
                // An error queued on the socket (an ICMP port unreachable): the next datagram.
                Ok(Err(_)) => {}
                // Nothing more queued: readiness cleared, wait again.
                Err(_would_block) => return,
            }
        }
    }

    /// A non-blocking send (an RTCP report; dropped when the socket buffer is full).
    fn send_to(&self, buf: &[u8], to: SocketAddr) -> std::io::Result<usize> {
        self.0.get_ref().send_to(buf, to)
    }
}

struct Task {
    key: u64,
    rtp: RxSocket,
    /// `None`: RTCP multiplexed on the RTP socket.
    rtcp: Option<RxSocket>,
    state: Arc<Mutex<State>>,
    counters: Arc<SessionCounters>,
    engine: Arc<EngineCounters>,
    engine_epoch: Instant,
    cname: String,
    events: mpsc::UnboundedSender<RxEvent>,
}

/// `changes`: the call's parameters (StartTone), `None` until the first. Not an `async fn`,
/// which would hold its arguments twice (rust-lang/rust#62958): the block keeps them where it
/// captured them (memory per call).
#[allow(clippy::manual_async_fn)] // on purpose: see above
fn run(
    t: Task,
    mut changes: watch::Receiver<Option<RxParams>>,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    async move { receive(&t, &mut changes).await }
}

async fn receive(t: &Task, changes: &mut watch::Receiver<Option<RxParams>>) {
    let mut report =
        tokio::time::interval_at(tokio::time::Instant::now() + RTCP_INTERVAL, RTCP_INTERVAL);
    let mut params: Option<RxParams> = None;
    let mut latched: Option<SocketAddr> = None;
    let mut packets_at_last_report = 0;
    loop {
        let dtmf_deadline = t
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .dtmf
            .poll_timeout();
        tokio::select! {
            changed = changes.changed() => {
                if changed.is_err() {
                    return;
                }
                params = changes.borrow_and_update().clone();
                latched = None;
                // New keys (or none): fresh SRTP contexts. The same keys (a resume after hold)
                // keep theirs: the rollover counters and the replay window go on.
                let mut st = t.state.lock().unwrap_or_else(|e| e.into_inner());
                let keys = params.as_ref().and_then(|p| p.srtp.clone());
                let same = matches!((&keys, st.srtp.as_deref()), (Some(k), Some((old, _, _))) if k == old);
                if !same {
                    st.srtp = keys.map(|k| {
                        let (rx, tx) =
                            (SrtpReceiver::new(k.suite, &k.recv), SrtpSender::new(k.suite, &k.send));
                        Box::new((k, rx, tx))
                    });
                }
            }
            () = t.rtp.read_each(|buf, from| {
                if let Some(p) = &params {
                    t.on_rtp(buf, from, p, &mut latched, Instant::now());
                }
            }) => {}
            () = read_rtcp(t.rtcp.as_ref(), |buf, from| t.on_rtcp(buf, from, Instant::now())) => {}
            _ = sleep_until(dtmf_deadline) => t.poll_dtmf(Instant::now()),
            _ = report.tick() => {
                let sent = t.counters.packets_sent.load(Relaxed);
                let sending = sent > packets_at_last_report;
                packets_at_last_report = sent;
                if let Some(p) = &params {
                    // Boxed: the report's future lives only while it is sent, not in the
                    // task's state for the whole call.
                    Box::pin(t.send_report(p, latched, sending)).await;
                }
            }
        }
    }
}

/// Datagrams on the RTCP socket; never, when RTCP is multiplexed on the RTP socket.
async fn read_rtcp(socket: Option<&RxSocket>, each: impl FnMut(&mut [u8], SocketAddr)) {
    match socket {
        Some(s) => s.read_each(each).await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}

impl Task {
    fn on_rtp(
        &self,
        buf: &mut [u8],
        from: SocketAddr,
        p: &RxParams,
        latched: &mut Option<SocketAddr>,
        now: Instant,
    ) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if rtp_in::classify(buf) == PacketKind::Rtcp {
            // RTCP multiplexed on the RTP port (RFC 5761).
            drop(st);
            self.on_rtcp(buf, from, now);
            return;
        }
        // SRTP: only a packet that authenticates counts (it is then read decrypted, in place).
        let buf: &[u8] = match st
            .srtp
            .as_deref_mut()
            .map(|(_, rx, _)| rx.unprotect_in_place(buf))
        {
            None => buf,
            Some(Ok(len)) => &buf[..len],
            Some(Err(e)) => {
                st.q.packets_invalid += 1;
                self.engine.packets_invalid.fetch_add(1, Relaxed);
                tracing::debug!(error = %e, %from, "SRTP packet refused");
                return;
            }
        };
        let packet = match rtp_in::parse(buf) {
            Ok(p) => p,
            Err(e) => {
                st.q.packets_invalid += 1;
                self.engine.packets_invalid.fetch_add(1, Relaxed);
                tracing::debug!(error = ?e, %from, "invalid RTP ignored");
                return;
            }
        };
        match *latched {
            Some(source) if source != from => {
                st.q.packets_from_unexpected_source += 1;
                return;
            }
            Some(_) => {}
            None => {
                *latched = Some(from);
                st.q.rtp_source = Some(from);
                let _ = self.events.send(RxEvent::CallerRtp {
                    key: self.key,
                    from,
                });
                if from != p.sdp_remote {
                    let _ = self.events.send(RxEvent::Latched {
                        key: self.key,
                        from,
                        sdp: p.sdp_remote,
                    });
                }
            }
        }
        let is_dtmf = Some(packet.payload_type()) == p.dtmf_payload_type;
        if !is_dtmf && packet.payload_type() != p.payload_type {
            st.q.packets_invalid += 1;
            self.engine.packets_invalid.fetch_add(1, Relaxed);
            return;
        }
        // One sequence space per SSRC: a new SSRC starts new statistics.
        if st.stats.as_ref().map(|(ssrc, _)| *ssrc) != Some(packet.ssrc()) {
            st.stats = Some((packet.ssrc(), ReceiverStats::new(G711_CLOCK_RATE)));
        }
        if let Some((_, stats)) = st.stats.as_mut() {
            stats.on_packet(packet.sequence_number(), packet.timestamp(), now);
        }
        st.q.packets_received += 1;
        st.q.bytes_received += buf.len() as u64;
        if st.echoing && !is_dtmf {
            let caller = (
                packet.ssrc(),
                packet.timestamp(),
                packet.marker_bit(),
                packet.payload_type(),
            );
            self.echo(&mut st, caller, packet.payload(), from, now);
        }
        self.engine.packets_received.fetch_add(1, Relaxed);
        self.engine
            .bytes_received
            .fetch_add(buf.len() as u64, Relaxed);
        if is_dtmf {
            if st
                .dtmf
                .handle_packet(
                    now,
                    packet.timestamp(),
                    packet.marker_bit(),
                    packet.payload(),
                )
                .is_err()
            {
                st.q.packets_invalid += 1;
            }
            drop(st);
            self.poll_dtmf(now);
        }
    }

    /// Sends the caller's audio packet straight back to `from` (its latched source), in our
    /// stream, and counts it and its turnaround (arrival to send) as sent.
    /// `caller`: the packet's SSRC, timestamp, marker and payload type.
    fn echo(
        &self,
        st: &mut State,
        caller: (u32, u32, bool, u8),
        payload: &[u8],
        from: SocketAddr,
        arrived: Instant,
    ) {
        let State {
            echo, echo_buf, q, ..
        } = st;
        let Some(e) = echo.as_mut() else { return };
        let (ssrc, timestamp, marker, payload_type) = caller;
        e.write(ssrc, timestamp, marker, payload_type, payload, echo_buf);
        if let Some((_, _, tx)) = st.srtp.as_deref_mut() {
            let len = echo_buf.len();
            echo_buf.resize(len + tx.overhead(), 0);
            let n = tx.protect(echo_buf, len);
            echo_buf.truncate(n);
        }
        match self.rtp.send_to(echo_buf, from) {
            Ok(n) => {
                let ms = arrived.elapsed().as_secs_f64() * 1000.0;
                q.echoed_packets += 1;
                q.echo_turnaround_max_ms = q.echo_turnaround_max_ms.max(ms);
                st.echo_turnaround_sum_ms += ms;
                self.counters.packets_sent.fetch_add(1, Relaxed);
                self.counters.bytes_sent.fetch_add(n as u64, Relaxed);
                self.engine.packets_sent.fetch_add(1, Relaxed);
                self.engine.bytes_sent.fetch_add(n as u64, Relaxed);
            }
            Err(e) => {
                self.counters.send_errors.fetch_add(1, Relaxed);
                tracing::debug!(error = %e, %from, "echo not sent");
            }
        }
    }

    fn poll_dtmf(&self, now: Instant) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        while let Some(d) = st.dtmf.poll(now) {
            st.q.dtmf_digits.push(d.digit);
            let _ = self.events.send(RxEvent::Dtmf {
                key: self.key,
                digit: d.digit,
                duration: d.duration_time(G711_CLOCK_RATE),
            });
        }
    }

    fn on_rtcp(&self, buf: &[u8], from: SocketAddr, now: Instant) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let decrypted;
        let buf = match st
            .srtp
            .as_deref_mut()
            .map(|(_, rx, _)| rx.unprotect_rtcp(buf))
        {
            None => buf,
            Some(Ok(plain)) => {
                decrypted = plain;
                &decrypted[..]
            }
            Some(Err(e)) => {
                st.q.packets_invalid += 1;
                tracing::debug!(error = %e, %from, "SRTCP packet refused");
                return;
            }
        };
        let compound = match rtcp::parse_compound(buf) {
            Ok(c) => c,
            Err(e) => {
                st.q.packets_invalid += 1;
                tracing::debug!(error = ?e, %from, "invalid RTCP ignored");
                return;
            }
        };
        st.q.rtcp_received += 1;
        st.rtcp_source = Some(from);
        let our_ssrc = self.counters.ssrc.load(Relaxed);
        let arrival_ntp = ntp_now();
        for packet in compound.packets() {
            let blocks = match packet {
                Packet::SenderReport(sr) => {
                    if let Some((_, stats)) = st.stats.as_mut() {
                        stats.on_sender_report(sr.info.ntp_timestamp, now);
                    }
                    sr.blocks
                }
                Packet::ReceiverReport(rr) => rr.blocks,
                _ => continue,
            };
            for b in blocks.filter(|b| b.ssrc == our_ssrc) {
                st.q.remote_loss_percent = f64::from(b.fraction_lost) * 100.0 / 256.0;
                st.q.remote_jitter_ms = f64::from(b.jitter) * 1000.0 / f64::from(G711_CLOCK_RATE);
                if let Some(rtt) = rtcp::round_trip(arrival_ntp, &b) {
                    st.q.rtt_ms = rtt.as_secs_f64() * 1000.0;
                }
            }
        }
    }

    async fn send_report(&self, p: &RxParams, latched: Option<SocketAddr>, sending: bool) {
        let now = Instant::now();
        let ssrc = self.counters.ssrc.load(Relaxed);
        let (block, target) = {
            let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
            let block = match st.stats.as_mut() {
                Some((source, stats)) if stats.is_valid() => {
                    let source = *source;
                    Some(ReportBlock::from_stats(source, stats, now))
                }
                _ => None,
            };
            // Where RTCP goes: where the caller's RTCP comes from, else RTP port + 1 (or the
            // RTP address itself when multiplexed).
            let rtp_target = latched.unwrap_or(p.sdp_remote);
            let target = st.rtcp_source.unwrap_or_else(|| match self.rtcp {
                Some(_) => SocketAddr::new(rtp_target.ip(), rtp_target.port().wrapping_add(1)),
                None => rtp_target,
            });
            (block, target)
        };
        if !sending && block.is_none() {
            return;
        }
        let sender = sending.then(|| {
            let last_ts = self.counters.last_rtp_timestamp.load(Relaxed);
            let last_tick = self.counters.last_due_tick.load(Relaxed);
            let last_at = self.engine_epoch + Duration::from_millis(last_tick);
            let since = now.saturating_duration_since(last_at).as_secs_f64();
            let packets = self.counters.packets_sent.load(Relaxed);
            SenderInfo {
                ntp_timestamp: ntp_now(),
                rtp_timestamp: last_ts.wrapping_add((since * f64::from(G711_CLOCK_RATE)) as u32),
                packet_count: packets as u32,
                // G.711 at 20 ms: 160 payload octets a packet.
                octet_count: (packets * 160) as u32,
            }
        });
        let out = Outgoing {
            ssrc,
            sender,
            block,
            cname: &self.cname,
            bye: false,
        };
        let mut buf = [0u8; 256];
        if let Ok(n) = out.write(&mut buf) {
            let socket = self.rtcp.as_ref().unwrap_or(&self.rtp);
            let protected = {
                let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
                st.srtp
                    .as_deref_mut()
                    .map(|(_, _, tx)| tx.protect_rtcp(&buf[..n]))
            };
            let _ = socket.send_to(protected.as_deref().unwrap_or(&buf[..n]), target);
        }
    }
}

fn ntp_now() -> u64 {
    rtcp::ntp_timestamp(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default(),
    )
}
