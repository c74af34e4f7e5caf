//! The sending shell: a few pacing threads (one per core by default) own all sending sessions.
//! Each thread runs a [`Pacer`], writes due packets with [`RtpSender`] into one reused buffer and
//! sends them. Commands arrive over a channel whose receive timeout is also the thread's sleep.
//!
//! Batching across sessions with sendmmsg does not apply: each session sends from its own socket
//! (its own source port), one packet per 20 ms, so there is one datagram per socket per wake-up.

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use milliwatt_media_core::pacing::Pacer;
use milliwatt_media_core::rtp::{RtpSender, PACKET_LEN};
use milliwatt_media_core::srtp::{SrtpKeys, SrtpSender};

/// A stream's SRTP context, with the keys it was made from (a resume with the same keys keeps
/// it: its rollover counter goes on with the sequence numbers). Boxed: 0.4 KB of key schedule
/// in every pacing thread's table entry, SRTP or not (memory per call).
type SrtpState = Option<Box<(SrtpKeys, SrtpSender)>>;

fn srtp_for(keys: &Option<SrtpKeys>, kept: SrtpState) -> SrtpState {
    match (keys, kept) {
        (Some(k), Some(kept)) if *k == kept.0 => Some(kept),
        (Some(k), _) => Some(Box::new((k.clone(), SrtpSender::new(k.suite, &k.send)))),
        (None, _) => None,
    }
}
use milliwatt_media_core::tone::ToneTable;

/// Counters of one session, shared with the registry for inspection and with the receive task
/// for RTCP sender reports.
#[derive(Debug, Default)]
pub struct SessionCounters {
    pub packets_sent: AtomicU64,
    pub bytes_sent: AtomicU64,
    pub packets_skipped: AtomicU64,
    pub send_errors: AtomicU64,
    /// SSRC, RTP timestamp and due tick (ms on the engine clock) of the last packet sent.
    pub ssrc: AtomicU32,
    pub last_rtp_timestamp: AtomicU32,
    pub last_due_tick: AtomicU64,
}

/// Lateness buckets of 100 µs up to 20 ms, then one overflow bucket.
const LATENESS_BUCKET_US: u64 = 100;
const LATENESS_BUCKETS: usize = 200;

/// Engine-wide counters.
#[derive(Debug)]
pub struct EngineCounters {
    pub packets_sent: AtomicU64,
    pub bytes_sent: AtomicU64,
    pub send_errors: AtomicU64,
    pub packets_skipped: AtomicU64,
    pub lateness_max_us: AtomicU64,
    lateness_sum_us: AtomicU64,
    lateness: Vec<AtomicU64>,
    /// What callers sent us, all sessions together (receive tasks count them).
    pub packets_received: AtomicU64,
    pub bytes_received: AtomicU64,
    pub packets_invalid: AtomicU64,
}

impl Default for EngineCounters {
    fn default() -> Self {
        EngineCounters {
            packets_sent: AtomicU64::new(0),
            bytes_sent: AtomicU64::new(0),
            send_errors: AtomicU64::new(0),
            packets_skipped: AtomicU64::new(0),
            lateness_max_us: AtomicU64::new(0),
            lateness_sum_us: AtomicU64::new(0),
            lateness: (0..=LATENESS_BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            packets_received: AtomicU64::new(0),
            bytes_received: AtomicU64::new(0),
            packets_invalid: AtomicU64::new(0),
        }
    }
}

impl EngineCounters {
    fn record_lateness(&self, late: Duration) {
        let us = late.as_micros() as u64;
        let bucket = ((us / LATENESS_BUCKET_US) as usize).min(LATENESS_BUCKETS);
        self.lateness[bucket].fetch_add(1, Relaxed);
        self.lateness_max_us.fetch_max(us, Relaxed);
        self.lateness_sum_us.fetch_add(us, Relaxed);
    }

    /// The lateness as a histogram over `bounds_us` (ascending): (sum in seconds, count,
    /// per-bucket counts with their upper bound in seconds, the last one +Inf).
    pub fn lateness_histogram(&self, bounds_us: &[u64]) -> (f64, u64, Vec<(f64, u64)>) {
        let mut buckets: Vec<(f64, u64)> = bounds_us
            .iter()
            .map(|b| (*b as f64 / 1e6, 0))
            .chain(std::iter::once((f64::INFINITY, 0)))
            .collect();
        let mut count = 0;
        for (i, c) in self.lateness.iter().enumerate() {
            let n = c.load(Relaxed);
            count += n;
            let upper_us = (i as u64 + 1) * LATENESS_BUCKET_US;
            let slot = if i == LATENESS_BUCKETS {
                bounds_us.len()
            } else {
                bounds_us
                    .iter()
                    .position(|b| upper_us <= *b)
                    .unwrap_or(bounds_us.len())
            };
            buckets[slot].1 += n;
        }
        (
            self.lateness_sum_us.load(Relaxed) as f64 / 1e6,
            count,
            buckets,
        )
    }

    /// The lateness below which `q` (0..1) of packets left, rounded up to the 100 µs bucket.
    pub fn lateness_quantile_us(&self, q: f64) -> u64 {
        let counts: Vec<u64> = self.lateness.iter().map(|c| c.load(Relaxed)).collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return 0;
        }
        let target = ((total as f64) * q).ceil() as u64;
        let mut seen = 0;
        for (i, c) in counts.iter().enumerate() {
            seen += c;
            if seen >= target {
                return if i == LATENESS_BUCKETS {
                    self.lateness_max_us.load(Relaxed)
                } else {
                    (i as u64 + 1) * LATENESS_BUCKET_US
                };
            }
        }
        self.lateness_max_us.load(Relaxed)
    }
}

/// What a pacing thread needs to send one session's tone.
pub struct Stream {
    pub socket: Arc<UdpSocket>,
    pub remote: SocketAddr,
    pub table: Arc<ToneTable>,
    /// How long to send; `None`: until stopped.
    pub duration: Option<Duration>,
    pub counters: Arc<SessionCounters>,
    /// SRTP: each packet protected with our key before it leaves.
    pub srtp: Option<SrtpKeys>,
}

/// The RTP state of a started stream.
pub enum StreamRtp {
    /// A new stream (new SSRC, random sequence and timestamp).
    New(RtpSender),
    /// The session's stream goes on: same SSRC, sequence and timestamp continue, marker set.
    /// The pacing thread keeps every stream's RTP state until the session is forgotten, so a
    /// resume needs no round trip.
    Continue,
}

/// Commands to a pacing thread: all fire-and-forget (a gRPC handler never waits on a pacing
/// thread).
enum Command {
    Start(u64, Box<Stream>, StreamRtp),
    /// Send to another address from now on (symmetric RTP).
    Retarget(u64, SocketAddr),
    /// Stops sending; the RTP state stays parked for a resume.
    Stop(u64),
    /// The session is gone: drop its stream and RTP state.
    Forget(u64),
}

/// A stream that ended by itself (its duration elapsed); its RTP state stays parked.
#[derive(Debug)]
pub struct Finished {
    pub key: u64,
}

pub struct Engine {
    shards: Vec<mpsc::Sender<Command>>,
    pub counters: Arc<EngineCounters>,
    /// The engine clock's zero: due ticks are milliseconds since it.
    pub epoch: Instant,
}

impl Engine {
    /// Starts `threads` pacing threads (at real-time priority when `realtime` and permitted),
    /// which after a stall still send the packets of the last `catch_up` packet times
    /// ([`Pacer::with_catch_up`]). Streams that end by themselves are reported on `finished`.
    pub fn start(
        threads: usize,
        realtime: bool,
        catch_up: u32,
        finished: tokio::sync::mpsc::UnboundedSender<Finished>,
    ) -> Engine {
        let counters = Arc::new(EngineCounters::default());
        let epoch = Instant::now();
        // Streams a pacing thread is done with are dropped here, at normal priority: the last
        // reference to a session's socket closes it, and close() takes the epoll instance's
        // lock, which the runtime's reactor may hold while it waits for the CPU. A real-time
        // pacing thread must never wait on a normal-priority one (priority inversion).
        let (retire, retired) = mpsc::channel::<Box<Stream>>();
        thread::Builder::new()
            .name("rtp-retire".into())
            .spawn(move || retired.into_iter().for_each(drop))
            .expect("spawning the stream-retiring thread at startup");
        let shards = (0..threads.max(1))
            .map(|i| {
                let (tx, rx) = mpsc::channel();
                let counters = counters.clone();
                let finished = finished.clone();
                let retire = retire.clone();
                thread::Builder::new()
                    .name(format!("pacer-{i}"))
                    .spawn(move || {
                        if realtime {
                            raise_priority(i);
                        }
                        run_shard(epoch, catch_up, rx, counters, finished, retire)
                    })
                    .expect("spawning a pacing thread at startup");
                tx
            })
            .collect();
        Engine {
            shards,
            counters,
            epoch,
        }
    }

    pub fn threads(&self) -> usize {
        self.shards.len()
    }

    fn shard(&self, key: u64) -> &mpsc::Sender<Command> {
        &self.shards[(key % self.shards.len() as u64) as usize]
    }

    pub fn start_stream(&self, key: u64, stream: Stream, rtp: StreamRtp) {
        // A pacing thread only exits when the engine is dropped.
        let _ = self
            .shard(key)
            .send(Command::Start(key, Box::new(stream), rtp));
    }

    /// Sends the stream to `remote` from its next packet on.
    pub fn retarget(&self, key: u64, remote: SocketAddr) {
        let _ = self.shard(key).send(Command::Retarget(key, remote));
    }

    /// Stops a stream (hold); a later `start_stream` with [`StreamRtp::Continue`] resumes it.
    pub fn stop_stream(&self, key: u64) {
        let _ = self.shard(key).send(Command::Stop(key));
    }

    /// Forgets a released session's stream.
    pub fn forget(&self, key: u64) {
        let _ = self.shard(key).send(Command::Forget(key));
    }
}

/// SCHED_FIFO priority of the pacing threads: above every time-shared thread, below the
/// kernel's own real-time threads (50 and up).
const PACING_FIFO_PRIORITY: u8 = 10;

/// Puts the calling pacing thread in SCHED_FIFO; says once (thread 0) what happened.
fn raise_priority(thread: usize) {
    use thread_priority::{
        set_thread_priority_and_policy, thread_native_id, RealtimeThreadSchedulePolicy,
        ThreadPriority, ThreadPriorityValue, ThreadSchedulePolicy,
    };
    let result = ThreadPriorityValue::try_from(PACING_FIFO_PRIORITY)
        .map_err(|e| format!("{e:?}"))
        .and_then(|p| {
            set_thread_priority_and_policy(
                thread_native_id(),
                ThreadPriority::Crossplatform(p),
                ThreadSchedulePolicy::Realtime(RealtimeThreadSchedulePolicy::Fifo),
            )
            .map_err(|e| format!("{e:?}"))
        });
    match (result, thread) {
        (Ok(()), 0) => tracing::info!(
            priority = PACING_FIFO_PRIORITY,
            "pacing threads at real-time priority (SCHED_FIFO)"
        ),
        (Err(e), 0) => tracing::warn!(
            error = %e,
            "cannot raise the pacing threads to real-time priority (needs root, CAP_SYS_NICE or \
             RLIMIT_RTPRIO >= 10): pacing at normal priority (media.pacing_priority)"
        ),
        _ => {}
    }
}

/// A pacing thread this late to its next slot is logged (rate-limited).
const STALL_WARN: Duration = Duration::from_millis(10);
const STALL_LOG_EVERY: Duration = Duration::from_secs(10);

struct Active {
    stream: Box<Stream>,
    sender: RtpSender,
    srtp: SrtpState,
    ends_at_tick: Option<u64>,
}

fn run_shard(
    epoch: Instant,
    catch_up: u32,
    rx: mpsc::Receiver<Command>,
    counters: Arc<EngineCounters>,
    finished: tokio::sync::mpsc::UnboundedSender<Finished>,
    retire: mpsc::Sender<Box<Stream>>,
) {
    // Never drop a stream here (see `Engine::start`).
    let retire_stream = |a: Active| -> (RtpSender, SrtpState) {
        let _ = retire.send(a.stream);
        (a.sender, a.srtp)
    };
    let mut pacer: Pacer<u64> = Pacer::with_catch_up(epoch, catch_up);
    let mut active: HashMap<u64, Active> = HashMap::new();
    let mut parked: HashMap<u64, (RtpSender, SrtpState)> = HashMap::new();
    // Room for an SRTP authentication tag.
    let mut buf = [0u8; PACKET_LEN + 16];
    let mut ended: Vec<u64> = Vec::new();
    let mut next = Instant::now();
    let (mut stalls, mut last_stall_log, mut last_poll) = (0u64, None, Duration::ZERO);
    loop {
        // Sleep until the next slot, or until a command arrives; with nothing to send, just wait.
        let command = if pacer.is_empty() {
            let command = rx.recv().map_err(|_| RecvTimeoutError::Disconnected);
            // Idle until now: the next slot is from now on, not from before the idle time.
            next = Instant::now();
            command
        } else {
            rx.recv_timeout(next.saturating_duration_since(Instant::now()))
        };
        match command {
            Ok(Command::Start(key, stream, rtp)) => {
                let was_running = active.contains_key(&key);
                let running = active.remove(&key).map(retire_stream);
                let (sender, kept) = match rtp {
                    StreamRtp::New(sender) => (Some(sender), None),
                    StreamRtp::Continue => match running.or_else(|| parked.remove(&key)) {
                        Some((mut s, srtp)) => {
                            s.resume();
                            (Some(s), srtp)
                        }
                        None => (None, None),
                    },
                };
                parked.remove(&key);
                let srtp = srtp_for(&stream.srtp, kept);
                let Some(sender) = sender else {
                    // The registry continues only streams it started; nothing to resume.
                    tracing::warn!(key, "no RTP state to continue; stream not started");
                    pacer.remove(key);
                    continue;
                };
                let now_tick = pacer.tick_of(Instant::now());
                let ends_at_tick = stream.duration.map(|d| now_tick + d.as_millis() as u64);
                active.insert(
                    key,
                    Active {
                        stream,
                        sender,
                        srtp,
                        ends_at_tick,
                    },
                );
                if !was_running {
                    pacer.insert(key);
                }
                continue;
            }
            Ok(Command::Retarget(key, remote)) => {
                if let Some(a) = active.get_mut(&key) {
                    a.stream.remote = remote;
                }
                continue;
            }
            Ok(Command::Stop(key)) => {
                if let Some(a) = active.remove(&key) {
                    pacer.remove(key);
                    parked.insert(key, retire_stream(a));
                }
                continue;
            }
            Ok(Command::Forget(key)) => {
                if let Some(a) = active.remove(&key) {
                    pacer.remove(key);
                    retire_stream(a);
                }
                parked.remove(&key);
                continue;
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        let now = Instant::now();
        // A pacing thread that runs a whole packet time late skips packet times: say so, with
        // whether it was busy (its previous poll took long) or not scheduled (it was asleep).
        let late = now.saturating_duration_since(next);
        if late >= STALL_WARN && !pacer.is_empty() {
            stalls += 1;
            if last_stall_log.is_none_or(|t: Instant| now.duration_since(t) >= STALL_LOG_EVERY) {
                let what = if late < pacer.catch_up_window() {
                    "pacing thread woke late: the packets owed go out together (jitter, no gap)"
                } else {
                    "pacing thread woke late: packet times past the catch-up window are skipped"
                };
                tracing::warn!(
                    late_ms = late.as_millis() as u64,
                    catch_up_ms = u64::from(catch_up) * 20,
                    previous_poll_us = last_poll.as_micros() as u64,
                    streams = pacer.len(),
                    stalls,
                    "{what}"
                );
                last_stall_log = Some(now);
            }
        }
        next = pacer.poll(now, |key, due_tick| {
            let Some(a) = active.get_mut(&key) else {
                return;
            };
            if a.ends_at_tick.is_some_and(|end| due_tick >= end) {
                ended.push(key);
                return;
            }
            let s = &mut a.stream;
            let w = a.sender.write_next(
                due_tick,
                &s.table,
                (&mut buf[..PACKET_LEN]).try_into().expect("PACKET_LEN"),
            );
            counters.record_lateness(now.saturating_duration_since(pacer_instant(epoch, due_tick)));
            if w.skipped > 0 {
                s.counters.packets_skipped.fetch_add(w.skipped, Relaxed);
                counters.packets_skipped.fetch_add(w.skipped, Relaxed);
            }
            s.counters.last_rtp_timestamp.store(
                u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]),
                Relaxed,
            );
            s.counters.last_due_tick.store(due_tick, Relaxed);
            let len = match a.srtp.as_deref_mut() {
                Some((_, tx)) => tx.protect(&mut buf, w.len),
                None => w.len,
            };
            match s.socket.send_to(&buf[..len], s.remote) {
                Ok(n) => {
                    s.counters.packets_sent.fetch_add(1, Relaxed);
                    s.counters.bytes_sent.fetch_add(n as u64, Relaxed);
                    counters.packets_sent.fetch_add(1, Relaxed);
                    counters.bytes_sent.fetch_add(n as u64, Relaxed);
                }
                Err(_) => {
                    s.counters.send_errors.fetch_add(1, Relaxed);
                    counters.send_errors.fetch_add(1, Relaxed);
                }
            }
        });
        last_poll = now.elapsed();
        for key in ended.drain(..) {
            pacer.remove(key);
            if let Some(a) = active.remove(&key) {
                parked.insert(key, retire_stream(a));
                let _ = finished.send(Finished { key });
            }
        }
    }
}

fn pacer_instant(epoch: Instant, tick: u64) -> Instant {
    epoch + Duration::from_millis(tick)
}

#[cfg(test)]
mod tests {
    use super::*;
    use milliwatt_media_core::tone::ToneKey;
    use milliwatt_media_core::Codec;

    /// (ssrc, seq, marker) of each packet that arrives within `for_`.
    fn receive(sock: &UdpSocket, for_: Duration) -> Vec<(u32, u16, bool)> {
        let until = Instant::now() + for_;
        let mut out = Vec::new();
        let mut buf = [0u8; 2048];
        while Instant::now() < until {
            if let Ok(n) = sock.recv(&mut buf) {
                assert_eq!(n, PACKET_LEN);
                out.push((
                    u32::from_be_bytes(buf[8..12].try_into().unwrap()),
                    u16::from_be_bytes([buf[2], buf[3]]),
                    buf[1] & 0x80 != 0,
                ));
            }
        }
        out
    }

    #[test]
    fn a_stopped_stream_continues_without_a_round_trip_and_forget_ends_it() {
        let (finished, _rx) = tokio::sync::mpsc::unbounded_channel();
        let engine = Engine::start(1, false, 0, finished);
        let sink = UdpSocket::bind("127.0.0.1:0").unwrap();
        sink.set_read_timeout(Some(Duration::from_millis(5)))
            .unwrap();
        let socket = Arc::new(UdpSocket::bind("127.0.0.1:0").unwrap());
        let table = Arc::new(ToneTable::new(ToneKey::new(Codec::Pcmu, 440, -10.0)));
        let stream = || Stream {
            socket: socket.clone(),
            remote: sink.local_addr().unwrap(),
            table: table.clone(),
            duration: None,
            counters: Arc::default(),
            srtp: None,
        };
        engine.start_stream(
            7,
            stream(),
            StreamRtp::New(RtpSender::new(0xabc, 0, 100, 0)),
        );
        let mut first = receive(&sink, Duration::from_millis(200));
        engine.stop_stream(7);
        std::thread::sleep(Duration::from_millis(30));
        first.extend(receive(&sink, Duration::from_millis(10))); // in flight at the stop
        assert!(
            receive(&sink, Duration::from_millis(60)).is_empty(),
            "sending while held"
        );
        engine.start_stream(7, stream(), StreamRtp::Continue);
        let resumed = receive(&sink, Duration::from_millis(200));
        assert!(
            first.len() >= 3 && resumed.len() >= 3,
            "{first:?} {resumed:?}"
        );
        assert_eq!(first[0], (0xabc, 100, true), "marker on the first packet");
        assert!(first[1..].iter().all(|p| !p.2));
        let last = first.last().unwrap().1;
        assert_eq!(resumed[0].0, 0xabc, "same SSRC after the resume");
        assert!(resumed[0].2, "marker after the resume");
        assert_eq!(resumed[0].1, last.wrapping_add(1), "sequence goes on");
        engine.forget(7);
        std::thread::sleep(Duration::from_millis(30));
        let _ = receive(&sink, Duration::from_millis(10));
        assert!(
            receive(&sink, Duration::from_millis(60)).is_empty(),
            "sending after forget"
        );
        // Forgotten: nothing to continue.
        engine.start_stream(7, stream(), StreamRtp::Continue);
        assert!(receive(&sink, Duration::from_millis(60)).is_empty());
    }

    #[test]
    fn lateness_quantiles_come_from_the_buckets() {
        let c = EngineCounters::default();
        for _ in 0..98 {
            c.record_lateness(Duration::from_micros(40));
        }
        c.record_lateness(Duration::from_micros(1_450));
        c.record_lateness(Duration::from_millis(50));
        assert_eq!(c.lateness_quantile_us(0.5), 100);
        assert_eq!(c.lateness_quantile_us(0.99), 1_500);
        assert_eq!(c.lateness_quantile_us(1.0), 50_000);
        assert_eq!(c.lateness_max_us.load(Relaxed), 50_000);
        let (sum, count, buckets) = c.lateness_histogram(&[100, 1_000, 2_000]);
        assert_eq!(count, 100);
        assert!((sum - (98.0 * 40e-6 + 1.45e-3 + 0.05)).abs() < 1e-9);
        assert_eq!(
            buckets,
            vec![(1e-4, 98), (1e-3, 0), (2e-3, 1), (f64::INFINITY, 1)]
        );
    }
}
