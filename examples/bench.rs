//! Load benchmark, run by `scripts/bench.sh` (release build). Starts milliwatt-media and
//! milliwatt-signaling as two processes on loopback, drives them with SIPp, sinks the RTP on a
//! loopback socket, and reports what the targets in the README are about:
//!
//! - `concurrent N`: N tone calls ramped at 250 calls/s with a tone long enough that all N overlap
//!   for 20 s: packets lost at the sender (send errors and skipped packet times), pacing lateness
//!   p50/p99/max, media RSS, and media CPU per RTP packet sent in a steady 10 s window, against a
//!   raw baseline measured in the same run (one thread writing one 172-byte datagram per 20 ms
//!   from N sockets with plain `sendto`, loopback delivery included).
//! - `rate R SECS`: R calls/s of 2-second calls for SECS seconds: failed calls, INVITE→200
//!   p50/p99 (SIPp's response times), CPU per call and RSS of each process.
//! - `overload N R SECS` (default 500, 3000, 5): N established 20 s calls, then a burst of R
//!   calls/s of 2-second calls for SECS seconds: the established calls' loss, pacing and BYE time,
//!   the burst's final-response time and answered share.
//!
//! - `duplex N` (default 2,500): `concurrent` whose callers also send RTP (50 packets/s of G.711
//!   each, from the sink's address) through the measured window: media's loss, jitter and MOS of
//!   every caller stream besides our stream's figures.
//! - `memory N` (default 2,000): the all-in-one `milliwatt`, N tone calls up together: RSS at
//!   idle and (peak − idle) / N per call.
//! - `baresip [RATE ...]` (default 5 10 20 50 100 200 400 800): the ratio against baresip. 2-second
//!   calls (the caller hangs up) for 10 s at each rate, answered by Debian's baresip with its
//!   `ausine` 440 Hz tone, until baresip's audio is no longer clean (a call failed, or a caller
//!   heard a short, gapped or impure tone: the receiver decodes every packet); then the same calls
//!   answered by our two processes at baresip's highest clean rate and at its first unclean one,
//!   and the CPU per call of each side at the former.
//! - `smoke`: 50 calls through the whole `concurrent` path and 5 calls/s for 4 s through the
//!   `baresip` path, judged only for running through (CI runs it on the debug build; it measures
//!   nothing worth recording).
//!
//! Every loop is bounded; all traffic stays on 127.0.0.1.

use std::collections::HashMap;
use std::io::{IoSliceMut, Read};
use std::net::UdpSocket;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use milliwatt_proto::v1 as pb;

fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/release/examples/bench -> target/release/<name>
    let p = exe.parent().unwrap().parent().unwrap().join(name);
    assert!(
        p.is_file(),
        "{} missing: cargo build --release --workspace",
        p.display()
    );
    p
}

struct Procs(Vec<Child>);

impl Drop for Procs {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// utime + stime of a process in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, a)| a).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    ticks / 100.0
}

/// Each CPU's steal time so far (/proc/stat, in ms): time the hypervisor ran something else
/// while this virtual CPU had work. A pacing thread's rare late wake-up with no work to explain
/// it shows here when the host took the CPU.
fn steal_ms() -> Vec<u64> {
    std::fs::read_to_string("/proc/stat")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit))
        .map(|l| {
            // cpuN user nice system idle iowait irq softirq steal ...: ticks of 10 ms.
            l.split_whitespace()
                .nth(8)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
                * 10
        })
        .collect()
}

/// What the host and media's pacing threads went through since `before` (from [`steal_ms`]):
/// each CPU's steal time, and media's warnings of pacing threads that woke late (its log in
/// `dir`; rate-limited there to one per 10 s per thread), so a skipped packet time has its cause
/// beside it: late after a long poll (busy) or after a short one (not scheduled).
fn print_circumstances(before: &[u64], dir: &Path) {
    let per_cpu: Vec<String> = steal_ms()
        .iter()
        .zip(before)
        .enumerate()
        .map(|(i, (now, then))| format!("cpu{i} {} ms", now.saturating_sub(*then)))
        .collect();
    println!(
        "- host: vCPU steal over the run (the hypervisor running something else): {}",
        per_cpu.join(", ")
    );
    let log = std::fs::read_to_string(dir.join("milliwatt-media.log")).unwrap_or_default();
    for l in log
        .lines()
        .filter(|l| l.contains("pacing thread woke late"))
    {
        let fields: Vec<&str> = l
            .split_whitespace()
            .filter(|w| {
                ["late_ms=", "previous_poll_us=", "streams="]
                    .iter()
                    .any(|k| w.starts_with(k))
            })
            .collect();
        println!("- media: a pacing thread woke late: {}", fields.join(" "));
    }
}

fn stats(rt: &tokio::runtime::Runtime, grpc: u16) -> pb::EngineStats {
    rt.block_on(async {
        let mut c = pb::media_client::MediaClient::connect(format!("http://127.0.0.1:{grpc}"))
            .await
            .expect("media gRPC");
        c.get_stats(pb::GetStatsRequest {})
            .await
            .unwrap()
            .into_inner()
    })
}

struct Sink {
    port: u16,
    /// The sink's socket, for the callers' RTP (`duplex`): sent from the address our SDP names,
    /// so media's symmetric RTP latches onto the sink, not elsewhere.
    socket: UdpSocket,
    packets: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    /// While set, every RTP stream's inter-arrival times are recorded (kernel timestamps).
    measure: Arc<AtomicBool>,
    streams: Arc<Mutex<HashMap<u32, Arrivals>>>,
}

/// One RTP stream as the sink saw it: |inter-arrival − 20 ms| per packet, in µs.
#[derive(Default)]
struct Arrivals {
    last: Option<(u16, i128)>,
    deviations_us: Vec<u32>,
    gaps: u64,
    packets: u64,
    /// With a tone to look for (`sink_for_tone`): packets whose decoded μ-law audio is that tone
    /// (tone purity ≥ 0.8: the share of the packet's energy at the frequency), and the others.
    tone_packets: u64,
    other_packets: u64,
}

/// The share of a 20 ms PCMU payload's energy at `hz` (1.0 for a pure tone; a window that is not
/// a whole number of periods leaks a few percent). Silence is 0.
fn tone_purity(payload: &[u8], hz: f64) -> f64 {
    let w = 2.0 * std::f64::consts::PI * hz / 8000.0;
    let c = 2.0 * w.cos();
    let (mut s1, mut s2, mut energy) = (0.0_f64, 0.0_f64, 0.0_f64);
    for &b in payload {
        let x = f64::from(milliwatt_media_core::g711::ulaw_to_linear(b));
        energy += x * x;
        let s0 = x + c * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    if energy < 1.0 {
        return 0.0;
    }
    2.0 * (s1 * s1 + s2 * s2 - c * s1 * s2) / (payload.len() as f64 * energy)
}

/// The kernel's receive time of a datagram (SO_TIMESTAMPNS), in ns.
fn kernel_ns(cmsgs: nix::sys::socket::CmsgIterator<'_>) -> Option<i128> {
    cmsgs.into_iter().find_map(|c| match c {
        nix::sys::socket::ControlMessageOwned::ScmTimestampns(ts) => {
            Some(i128::from(ts.tv_sec()) * 1_000_000_000 + i128::from(ts.tv_nsec()))
        }
        _ => None,
    })
}

/// An independent receiver on loopback: counts datagrams and, while `measure` is set, records
/// each RTP stream's (by SSRC) inter-arrival times from kernel receive timestamps — not the
/// sender's own clock.
fn sink() -> Sink {
    sink_for_tone(None)
}

/// `sink`, which also judges each RTP packet's PCMU audio for a `tone` of that frequency.
fn sink_for_tone(tone: Option<f64>) -> Sink {
    use nix::sys::socket::{recvmmsg, setsockopt, sockopt, MsgFlags, MultiHeaders, SockaddrIn};
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    setsockopt(&s, sockopt::ReceiveTimestampns, &true).expect("SO_TIMESTAMPNS");
    let _ = setsockopt(&s, sockopt::RcvBuf, &(8 << 20));
    let port = s.local_addr().unwrap().port();
    let socket = s.try_clone().expect("cloning the sink's socket");
    let packets = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let measure = Arc::new(AtomicBool::new(false));
    let streams: Arc<Mutex<HashMap<u32, Arrivals>>> = Arc::default();
    let (p, st, m, sm) = (
        packets.clone(),
        stop.clone(),
        measure.clone(),
        streams.clone(),
    );
    std::thread::spawn(move || {
        // Up to BATCH datagrams per system call (recvmmsg, MSG_WAITFORONE: block for the first,
        // take what else is queued): one thread keeps up with 250,000 packets/s and takes less
        // of the CPU the services under test share with it.
        const BATCH: usize = 128;
        let mut bufs = vec![[0u8; 512]; BATCH];
        let mut headers = MultiHeaders::<SockaddrIn>::preallocate(
            BATCH,
            Some(nix::cmsg_space!(nix::sys::time::TimeSpec)),
        );
        let mut got: Vec<(usize, Option<i128>)> = Vec::with_capacity(BATCH);
        while !st.load(Ordering::Relaxed) {
            got.clear();
            {
                let mut iovs: Vec<[IoSliceMut; 1]> =
                    bufs.iter_mut().map(|b| [IoSliceMut::new(b)]).collect();
                let Ok(msgs) = recvmmsg(
                    s.as_raw_fd(),
                    &mut headers,
                    iovs.iter_mut(),
                    MsgFlags::MSG_WAITFORONE,
                    None,
                ) else {
                    continue;
                };
                got.extend(msgs.map(|m| (m.bytes, m.cmsgs().ok().and_then(kernel_ns))));
            }
            p.fetch_add(got.len() as u64, Ordering::Relaxed);
            if !m.load(Ordering::Relaxed) {
                continue;
            }
            let mut streams = sm.lock().unwrap();
            for (buf, &(n, at)) in bufs.iter().zip(&got) {
                // RTP (not RTCP 192..=223) of a 20 ms G.711 packet.
                if n != 172 || (192..=223).contains(&buf[1]) {
                    continue;
                }
                let Some(at) = at else { continue };
                let ssrc = u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]);
                let seq = u16::from_be_bytes([buf[2], buf[3]]);
                let a = streams.entry(ssrc).or_default();
                a.packets += 1;
                if let Some(hz) = tone {
                    if buf[1] & 0x7f == 0 && tone_purity(&buf[12..172], hz) >= 0.8 {
                        a.tone_packets += 1;
                    } else {
                        a.other_packets += 1;
                    }
                }
                match a.last {
                    Some((last_seq, last_at)) if seq == last_seq.wrapping_add(1) => {
                        let dev = ((at - last_at) - 20_000_000).unsigned_abs() / 1_000;
                        a.deviations_us.push(dev.min(u128::from(u32::MAX)) as u32);
                    }
                    Some(_) => a.gaps += 1,
                    None => {}
                }
                a.last = Some((seq, at));
            }
        }
    });
    Sink {
        port,
        socket,
        packets,
        stop,
        measure,
        streams,
    }
}

/// The p-quantile of `v` (sorted in place).
fn quantile(v: &mut [u32], q: f64) -> u32 {
    if v.is_empty() {
        return 0;
    }
    v.sort_unstable();
    v[((v.len() - 1) as f64 * q).round() as usize]
}

/// The two services as two processes (media first), on loopback.
fn start(dir: &Path, tone_seconds: u64, sip: u16, grpc: u16) -> Procs {
    start_binaries(
        dir,
        tone_seconds,
        sip,
        grpc,
        &["milliwatt-media", "milliwatt-signaling"],
    )
}

fn start_binaries(dir: &Path, tone_seconds: u64, sip: u16, grpc: u16, names: &[&str]) -> Procs {
    let admin = sip + 1;
    // The release defaults (30 ms of answer lateness or INVITE wait) are what is measured. A
    // debug build (CI's smoke run) answers tens of ms late at modest loads: it gets the
    // thresholds the test command uses (`tests/common`), lest it shed the smoke run's calls.
    let overload = if cfg!(debug_assertions) {
        "[overload]\nmax_answer_lateness_ms = 250\nmax_invite_wait_ms = 250\n"
    } else {
        ""
    };
    let cfg = format!(
        r#"[sip]
bind_address = "127.0.0.1"
port = {sip}
transport = "udp"
advertised_address = "127.0.0.1"
[behavior]
auto_answer_delay_ms = 0
tone_duration_seconds = {tone_seconds}
max_concurrent_calls = 5000
[media]
rtp_port_range_start = 20000
rtp_port_range_end = 40000
bind_address = "127.0.0.1"
advertised_address = "127.0.0.1"
grpc_listen = "127.0.0.1:{grpc}"
endpoint = "http://127.0.0.1:{grpc}"
[log]
level = "warn"
[admin]
address = "127.0.0.1:{admin}"
{overload}"#
    );
    let path = dir.join("config.toml");
    std::fs::write(&path, cfg).unwrap();
    let mut procs = Procs(Vec::new());
    for &name in names {
        let log = std::fs::File::create(dir.join(format!("{name}.log"))).unwrap();
        let media_admin = format!("127.0.0.1:{}", admin + 1);
        let mut command = Command::new(bin(name));
        if name == "milliwatt-media" {
            command.env("MILLIWATT_ADMIN__ADDRESS", media_admin);
        }
        procs.0.push(
            command
                .arg("--config")
                .arg(&path)
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap(),
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    procs
}

fn sipp(dir: &Path, sink_port: u16, sip: u16, args: &[String], bye_timeout_ms: u64) -> Child {
    let text = tone_scenario(sink_port, bye_timeout_ms);
    run_sipp(dir, "uac_tone.xml", &text, 5199, sip, args)
}

/// SIPp placing `n` tone calls at `rate` calls/s, all held together (`-l n`), each waiting for our
/// BYE up to 15 s past its `tone_s`-second tone.
fn ramp_calls(dir: &Path, sink_port: u16, sip: u16, n: u32, rate: u32, tone_s: u64) -> Child {
    let args = [
        "-r".into(),
        rate.to_string(),
        "-l".into(),
        n.to_string(),
        "-m".into(),
        n.to_string(),
    ];
    sipp(dir, sink_port, sip, &args, (tone_s + 15) * 1000)
}

/// SIPp's arguments for `total` calls at `rate` calls/s (up to 10 s of them at once), each call's
/// response times written (`-trace_rtt`, read back by [`response_times`]).
fn paced_args(rate: u32, total: u32) -> [String; 9] {
    [
        "-r".into(),
        rate.to_string(),
        "-l".into(),
        (rate * 10).to_string(),
        "-m".into(),
        total.to_string(),
        "-trace_rtt".into(),
        "-rtt_freq".into(),
        "1".into(),
    ]
}

/// `uac_tone.xml` for a caller whose RTP goes to `sink_port` and who waits `bye_timeout_ms`.
fn tone_scenario(sink_port: u16, bye_timeout_ms: u64) -> String {
    sipp_scenario("uac_tone.xml")
        .replace("@RTP_PORT@", &sink_port.to_string())
        .replace("@FORMATS@", "0 8 101")
        .replace("@BYE_TIMEOUT_MS@", &bye_timeout_ms.to_string())
}

/// A scenario shipped under `tests/sipp/`, as text (its `@...@` placeholders unreplaced).
fn sipp_scenario(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/sipp")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// SIPp with scenario `text` (written to `dir`/`name`), from local port `local`, its files in `dir`.
fn run_sipp(dir: &Path, name: &str, text: &str, local: u16, sip: u16, args: &[String]) -> Child {
    let sc = dir.join(name);
    std::fs::write(&sc, text).unwrap();
    Command::new("sipp")
        .current_dir(dir)
        .arg("-sf")
        .arg(&sc)
        .args([
            "-i",
            "127.0.0.1",
            "-p",
            &local.to_string(),
            "-mi",
            "127.0.0.1",
        ])
        .args(["-mp", &(local + 1000).to_string()])
        // SIPp's socket buffers default to 64 KiB: in a 3,000 calls/s burst its own receive
        // queue overflowed (30 drops at its socket, none at ours), and a dropped response costs
        // a 500 ms INVITE retransmission, counted as our answer time. The load generator must
        // not be where the burst is lost.
        .args(["-buff_size", "4194304"])
        .args([
            "-nostdin",
            "-trace_err",
            "-error_file",
            "err.log",
            "-trace_stat",
            "-stf",
            "stat.csv",
        ])
        .args(args)
        .arg(format!("127.0.0.1:{sip}"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sipp (Debian sip-tester) is needed")
}

/// Each `-trace_rtt` line of the files in `dir` as (rtd number, µs).
fn response_times(dir: &Path) -> Vec<(u32, u32)> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with("_rtt.csv"))
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .flat_map(|text| {
            text.lines()
                .filter(|l| !l.starts_with("Date"))
                .filter_map(|l| {
                    let mut f = l.split(';').skip(1);
                    let ms: f64 = f.next()?.trim().parse().ok()?;
                    let no: u32 = f.next()?.trim().parse().ok()?;
                    Some((no, (ms * 1000.0) as u32))
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

fn wait(mut c: Child, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(st) = c.try_wait().unwrap() {
            if !st.success() {
                let mut e = String::new();
                if let Some(mut s) = c.stderr.take() {
                    let _ = s.read_to_string(&mut e);
                }
                eprintln!("sipp: {st} {e}");
            }
            return st.success();
        }
        if Instant::now() > deadline {
            let _ = c.kill();
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// utime + stime of the calling thread, in seconds.
fn thread_cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, a)| a).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    ticks / 100.0
}

/// The raw baseline: `n` sockets, one 172-byte datagram each per 20 ms with plain `sendto`, for
/// `secs` seconds, to a sink on loopback. Returns CPU µs per packet (this thread's CPU: the
/// loopback delivery runs in the sender's context, as it does for media).
fn baseline(n: u32, secs: u64) -> f64 {
    let sink = sink();
    let to = std::net::SocketAddr::from(([127, 0, 0, 1], sink.port));
    let sockets: Vec<UdpSocket> = (0..n)
        .map(|_| UdpSocket::bind("127.0.0.1:0").expect("baseline socket"))
        .collect();
    let packet = [0x80u8; 172];
    let handle = std::thread::spawn(move || {
        let cpu0 = thread_cpu_seconds();
        let start = Instant::now();
        let mut sent = 0u64;
        let mut tick = 0u32;
        while start.elapsed() < Duration::from_secs(secs) {
            for s in &sockets {
                if s.send_to(&packet, to).is_ok() {
                    sent += 1;
                }
            }
            tick += 1;
            let next = start + Duration::from_millis(20) * tick;
            if let Some(wait) = next.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
        (thread_cpu_seconds() - cpu0, sent)
    });
    let (cpu, sent) = handle.join().expect("baseline thread");
    sink.stop.store(true, Ordering::Relaxed);
    cpu * 1e6 / sent.max(1) as f64
}

/// How a run is judged: against the targets, or (CI's smoke run, a debug build on a shared
/// machine) only that it ran end to end: every call, every stream seen, nothing sent in error.
#[derive(Clone, Copy, PartialEq)]
enum Judge {
    Targets,
    Smoke,
}

fn sessions(rt: &tokio::runtime::Runtime, grpc: u16) -> Vec<pb::Session> {
    rt.block_on(async {
        let mut c = pb::media_client::MediaClient::connect(format!("http://127.0.0.1:{grpc}"))
            .await
            .expect("media gRPC");
        c.list_sessions(pb::ListSessionsRequest {})
            .await
            .unwrap()
            .into_inner()
            .sessions
    })
}

/// The callers' side of `duplex`: one 172-byte G.711 RTP packet (silence) every 20 ms to each
/// of `targets` (a session's RTP address and payload type), each stream its own SSRC, sequence
/// and timestamp, sent from the sink's socket (the address our SDP offered) until `stop` (60 s
/// at most). Returns the packets sent.
fn callers(
    socket: UdpSocket,
    targets: Vec<(std::net::SocketAddr, u8)>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let start = Instant::now();
        let mut packet = [0xffu8; 172];
        let (mut tick, mut sent) = (0u32, 0u64);
        while !stop.load(Ordering::Relaxed) && start.elapsed() < Duration::from_secs(60) {
            for (i, (to, pt)) in targets.iter().enumerate() {
                packet[0] = 0x80;
                packet[1] = *pt & 0x7f;
                packet[2..4].copy_from_slice(&(tick as u16).to_be_bytes());
                packet[4..8].copy_from_slice(&tick.wrapping_mul(160).to_be_bytes());
                packet[8..12].copy_from_slice(&(0x4d57_0000 + i as u32).to_be_bytes());
                if socket.send_to(&packet, to).is_ok() {
                    sent += 1;
                }
            }
            tick += 1;
            let next = start + Duration::from_millis(20) * tick;
            if let Some(wait) = next.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
        sent
    })
}

fn concurrent(
    n: u32,
    rt: &tokio::runtime::Runtime,
    dir: &Path,
    judge: Judge,
    duplex: bool,
) -> bool {
    let (sip, grpc) = (5160, 50160);
    let rate = 250;
    let overlap = if judge == Judge::Smoke { 14 } else { 20 };
    let ramp = Duration::from_secs_f64(f64::from(n) / f64::from(rate));
    // Long enough that every call is up for `overlap` seconds together.
    let tone = ramp.as_secs() + 1 + overlap;
    let procs = start(dir, tone, sip, grpc);
    let steal0 = steal_ms();
    let media_pid = procs.0[0].id();
    let idle_rss = rss_kib(media_pid);
    let sink = sink();
    let s = ramp_calls(dir, sink.port, sip, n, rate, tone);
    // Ramp, then a steady 10 s window inside the overlap: CPU per packet, received rate, RSS.
    std::thread::sleep(ramp + Duration::from_secs(3));
    let at_peak = stats(rt, grpc);
    let peak_rss = rss_kib(media_pid);
    // `duplex`: every caller sends RTP too (50 packets/s of G.711, as phones do), through the
    // measured window; media's receive statistics of each caller stream are read at its end.
    let caller_stop = Arc::new(AtomicBool::new(false));
    let caller_thread = duplex.then(|| {
        let targets = sessions(rt, grpc)
            .iter()
            .map(|x| {
                let port = u16::try_from(x.local_port).expect("a port");
                (
                    std::net::SocketAddr::from(([127, 0, 0, 1], port)),
                    x.payload_type as u8,
                )
            })
            .collect();
        let socket = sink.socket.try_clone().expect("cloning the sink's socket");
        let thread = callers(socket, targets, caller_stop.clone());
        // Let every stream's first packets arrive before the window opens.
        std::thread::sleep(Duration::from_secs(1));
        thread
    });
    sink.measure.store(true, Ordering::Relaxed);
    let (cpu_a, sent_a, recv_a, t_a) = (
        cpu_seconds(media_pid),
        stats(rt, grpc).packets_sent,
        sink.packets.load(Ordering::Relaxed),
        Instant::now(),
    );
    std::thread::sleep(Duration::from_secs(10));
    let (cpu_b, sent_b, recv_b, window) = (
        cpu_seconds(media_pid),
        stats(rt, grpc).packets_sent,
        sink.packets.load(Ordering::Relaxed),
        t_a.elapsed(),
    );
    sink.measure.store(false, Ordering::Relaxed);
    caller_stop.store(true, Ordering::Relaxed);
    let caller_sent = caller_thread.map(|t| t.join().expect("callers' thread"));
    let caller_streams = duplex.then(|| {
        // The last packets read before the figures are.
        std::thread::sleep(Duration::from_millis(300));
        sessions(rt, grpc)
    });
    let received_rate = (recv_b - recv_a) as f64 / window.as_secs_f64();
    // Per stream: the p99 of |inter-arrival − 20 ms| at the receiver; then over the streams.
    let (mut stream_p99_us, gaps): (Vec<u32>, u64) = {
        let mut streams = sink.streams.lock().unwrap();
        let gaps = streams.values().map(|a| a.gaps).sum();
        let p99s = streams
            .values_mut()
            .filter(|a| a.deviations_us.len() >= 100)
            .map(|a| quantile(&mut a.deviations_us, 0.99))
            .collect();
        (p99s, gaps)
    };
    let streams_measured = stream_p99_us.len();
    let within_2ms = stream_p99_us.iter().filter(|us| **us <= 2_000).count();
    let sent_rate = (sent_b - sent_a) as f64 / window.as_secs_f64();
    let us_per_packet = (cpu_b - cpu_a) * 1e6 / (sent_b - sent_a).max(1) as f64;
    let ok = wait(s, Duration::from_secs(tone + 60));
    let end = stats(rt, grpc);
    sink.stop.store(true, Ordering::Relaxed);
    drop(procs);
    let base_us = baseline(n, if judge == Judge::Smoke { 2 } else { 10 });
    println!(
        "## {}: {n} tone calls of {tone} s (SIPp ramp {rate} calls/s, {overlap} s all up){}",
        if duplex { "duplex" } else { "concurrent" },
        if duplex {
            ", the callers sending RTP too"
        } else {
            ""
        }
    );
    println!("- SIPp: all calls successful: {ok}");
    print_circumstances(&steal0, dir);
    println!("- sending sessions at peak: {}", at_peak.sending_sessions);
    println!(
        "- RTP: {} packets sent, {} send errors, {} skipped packet times (lost at the sender: {})",
        end.packets_sent,
        end.send_errors,
        end.packets_skipped,
        end.send_errors + end.packets_skipped
    );
    println!(
        "- steady window: {sent_rate:.0} packets/s sent (expected {}), {received_rate:.0}/s read by the bench's one-thread sink",
        n * 50
    );
    println!(
        "- at the receiver (kernel timestamps, {streams_measured} streams, 10 s): per-stream p99 of |inter-arrival - 20 ms| <= 2 ms for {:.1} % of the streams; over the streams p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; {gaps} sequence gaps (sink drops included)",
        100.0 * within_2ms as f64 / streams_measured.max(1) as f64,
        quantile(&mut stream_p99_us, 0.5) as f64 / 1000.0,
        quantile(&mut stream_p99_us, 0.99) as f64 / 1000.0,
        quantile(&mut stream_p99_us, 1.0) as f64 / 1000.0,
    );
    println!(
        "- pacing lateness (media's own clock): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({} pacing threads)",
        end.lateness_p50_us as f64 / 1000.0,
        end.lateness_p99_us as f64 / 1000.0,
        end.lateness_max_us as f64 / 1000.0,
        end.pacing_threads
    );
    println!(
        "- media RSS at peak: {:.1} MB ({:.1} KB per call; idle {:.1} MB, growth {:.1} KiB per call)",
        peak_rss as f64 / 1024.0,
        peak_rss as f64 / f64::from(n),
        idle_rss as f64 / 1024.0,
        peak_rss.saturating_sub(idle_rss) as f64 / f64::from(n)
    );
    println!(
        "- media CPU: {us_per_packet:.2} µs per RTP packet sent; raw sendto baseline {base_us:.2} µs; ratio {:.2}",
        us_per_packet / base_us
    );
    let callers_ok = match (&caller_streams, caller_sent) {
        (Some(list), Some(sent)) => {
            let expected = sent / u64::from(n.max(1));
            let q: Vec<pb::Quality> = list
                .iter()
                .map(|x| x.quality.clone().unwrap_or_default())
                .collect();
            let with_rtp = q.iter().filter(|q| q.packets_received > 0).count();
            let lost: u64 = q.iter().map(|q| q.packets_lost).sum();
            let short = q
                .iter()
                .filter(|q| q.packets_received + 2 < expected)
                .count();
            let mut jitter_us: Vec<u32> = q.iter().map(|q| (q.jitter_ms * 1000.0) as u32).collect();
            let mut mos: Vec<u32> = q.iter().map(|q| (q.mos * 100.0) as u32).collect();
            println!(
                "- callers' RTP: {sent} packets sent to {} sessions (about {expected} each); media received RTP on {with_rtp}, {short} short of it by more than 2, {lost} lost; jitter over the streams p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; MOS min {:.2}, p50 {:.2}",
                list.len(),
                quantile(&mut jitter_us, 0.5) as f64 / 1000.0,
                quantile(&mut jitter_us, 0.99) as f64 / 1000.0,
                quantile(&mut jitter_us, 1.0) as f64 / 1000.0,
                quantile(&mut mos, 0.0) as f64 / 100.0,
                quantile(&mut mos, 0.5) as f64 / 100.0,
            );
            list.len() == n as usize
                && with_rtp == n as usize
                && short == 0
                && lost == 0
                && quantile(&mut mos, 0.0) >= 400
        }
        _ => true,
    };
    if judge == Judge::Smoke {
        return ok
            && callers_ok
            && at_peak.sending_sessions == n
            && streams_measured == n as usize
            && end.send_errors == 0
            && end.packets_sent > 0;
    }
    // The targets of the "carrier-grade load" issue: nothing lost, per-stream p99 ≤ 2 ms at the
    // receiver for 99 % of the streams, CPU per packet ≤ 1.5× the raw baseline, media's RSS
    // growth ≤ 16 KiB per call (it was an absolute 50 MB, the first version's target for 500
    // calls, which 5,000 calls cannot meet).
    ok && at_peak.sending_sessions == n
        && end.send_errors == 0
        && end.packets_skipped == 0
        && end.lateness_p99_us <= 2_000
        && within_2ms * 100 >= streams_measured * 99
        && streams_measured == n as usize
        && callers_ok
        // With callers' RTP media also receives: the CPU ratio is reported, not judged.
        && (duplex || us_per_packet <= 1.5 * base_us)
        // Media's share of the 16 KiB per call (`memory` measures the whole all-in-one process).
        && peak_rss.saturating_sub(idle_rss) <= 16 * u64::from(n)
}

/// `memory N`: the all-in-one `milliwatt` (signaling and media in one process), N tone calls ramped
/// at 250 calls/s and all up together for 10 s: RSS at idle after start, peak RSS while all N are
/// up (sampled every 100 ms), and (peak − idle) / N. Targets: ≤ 16 KiB per call, ≤ 15 MiB idle.
fn memory(n: u32, rt: &tokio::runtime::Runtime, dir: &Path) -> bool {
    let (sip, grpc) = (5180, 50180);
    let rate = 250;
    let ramp = Duration::from_secs_f64(f64::from(n) / f64::from(rate));
    let tone = ramp.as_secs() + 1 + 10;
    let procs = start_binaries(dir, tone, sip, grpc, &["milliwatt"]);
    let pid = procs.0[0].id();
    std::thread::sleep(Duration::from_secs(2));
    let idle = rss_kib(pid);
    let sink = sink();
    let s = ramp_calls(dir, sink.port, sip, n, rate, tone);
    std::thread::sleep(ramp + Duration::from_secs(2));
    let up = stats(rt, grpc).sending_sessions;
    let mut peak = 0;
    let window = Instant::now();
    while window.elapsed() < Duration::from_secs(6) {
        peak = rss_kib(pid).max(peak);
        std::thread::sleep(Duration::from_millis(100));
    }
    let ok = wait(s, Duration::from_secs(tone + 60));
    let end = stats(rt, grpc);
    sink.stop.store(true, Ordering::Relaxed);
    drop(procs);
    let per_call = peak.saturating_sub(idle) as f64 / f64::from(n);
    println!("## memory: all-in-one milliwatt, {n} tone calls of {tone} s (ramp {rate} calls/s)");
    println!("- SIPp: all calls successful: {ok}; sending sessions with all up: {up}");
    println!(
        "- RTP: {} packets sent, {} send errors, {} skipped packet times",
        end.packets_sent, end.send_errors, end.packets_skipped
    );
    println!(
        "- RSS idle after start {:.1} MiB, peak with {n} calls up {:.1} MiB: {per_call:.1} KiB per call",
        idle as f64 / 1024.0,
        peak as f64 / 1024.0
    );
    ok && up == n && per_call <= 16.0 && idle <= 15 * 1024
}

fn rate(r: u32, secs: u32, rt: &tokio::runtime::Runtime, dir: &Path) -> bool {
    let (sip, grpc) = (5170, 50170);
    let procs = start(dir, 2, sip, grpc);
    let steal0 = steal_ms();
    let (media_pid, sig_pid) = (procs.0[0].id(), procs.0[1].id());
    let idle_rss = (rss_kib(media_pid), rss_kib(sig_pid));
    let cpu0 = (cpu_seconds(media_pid), cpu_seconds(sig_pid));
    let sink = sink();
    let total = r * secs;
    let t0 = Instant::now();
    let s = sipp(dir, sink.port, sip, &paced_args(r, total), 10_000);
    let sipp_pid = s.id();
    let mut sipp_cpu = 0.0_f64;
    let mut peak_rss = (0, 0);
    let deadline = Instant::now() + Duration::from_secs(u64::from(secs) + 60);
    let mut child = Some(s);
    let mut ok = false;
    while Instant::now() < deadline {
        peak_rss.0 = peak_rss.0.max(rss_kib(media_pid));
        peak_rss.1 = peak_rss.1.max(rss_kib(sig_pid));
        if let Some(c) = child.as_mut() {
            sipp_cpu = sipp_cpu.max(cpu_seconds(sipp_pid));
            if c.try_wait().unwrap().is_some() {
                ok = wait(child.take().unwrap(), Duration::from_secs(1));
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    if let Some(c) = child {
        ok = wait(c, Duration::from_secs(1));
    }
    let elapsed = t0.elapsed();
    let cpu1 = (cpu_seconds(media_pid), cpu_seconds(sig_pid));
    let end = stats(rt, grpc);
    sink.stop.store(true, Ordering::Relaxed);
    let csv = std::fs::read_to_string(dir.join("stat.csv")).unwrap_or_default();
    let failed = last_stat(&csv, "FailedCall(C)");
    let successful = last_stat(&csv, "SuccessfulCall(C)");
    // INVITE→200 of every answered call (`-trace_rtt`, one line per measured call).
    let mut answer_us: Vec<u32> = response_times(dir).into_iter().map(|(_, us)| us).collect();
    let media_cpu = cpu1.0 - cpu0.0;
    let sig_cpu = cpu1.1 - cpu0.1;
    let calls = successful.clamp(1, u64::from(u32::MAX)) as f64;
    println!("## rate: {r} calls/s of 2-second calls for {secs} s ({total} calls)");
    println!(
        "- SIPp: {successful} successful, {failed} failed, exit ok: {ok}, {:.1} s",
        elapsed.as_secs_f64()
    );
    print_circumstances(&steal0, dir);
    println!(
        "- INVITE->200 ({} calls): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        answer_us.len(),
        quantile(&mut answer_us, 0.5) as f64 / 1000.0,
        quantile(&mut answer_us, 0.99) as f64 / 1000.0,
        quantile(&mut answer_us, 1.0) as f64 / 1000.0,
    );
    println!(
        "- RTP: {} packets sent, {} send errors, {} skipped; lateness p99 {:.2} ms",
        end.packets_sent,
        end.send_errors,
        end.packets_skipped,
        end.lateness_p99_us as f64 / 1000.0
    );
    println!(
        "- CPU: signaling {sig_cpu:.1} s ({:.0} µs per call), media {media_cpu:.1} s ({:.0} µs per call, RTP included), SIPp {sipp_cpu:.1} s, over {:.1} s",
        sig_cpu * 1e6 / calls,
        media_cpu * 1e6 / calls,
        elapsed.as_secs_f64()
    );
    println!(
        "- RSS: media idle {:.1} MB, peak {:.1} MB; signaling idle {:.1} MB, peak {:.1} MB",
        idle_rss.0 as f64 / 1024.0,
        peak_rss.0 as f64 / 1024.0,
        idle_rss.1 as f64 / 1024.0,
        peak_rss.1 as f64 / 1024.0
    );
    drop(procs);
    // The issue's target: every call answered, INVITE→200 p99 ≤ 20 ms, every tone clean (no
    // packet time skipped, none lost at the sender).
    let p99_us = quantile(&mut answer_us, 0.99);
    ok && failed == 0
        && successful == u64::from(total)
        && answer_us.len() as u64 == successful
        && p99_us <= 20_000
        && end.packets_skipped == 0
        && end.send_errors == 0
}

/// The issue's overload case: `established` calls with a 20 s tone, then a burst of `rate`
/// calls/s of 2-second calls (the caller hangs up) for `secs` seconds. The established calls must
/// lose nothing, keep per-stream p99 ≤ 2 ms at the receiver and get their BYE 20 s ± 100 ms after
/// their ACK; every burst INVITE must get its final response (200 or 503) within 50 ms at p99, and
/// a good share of the burst must still be answered.
fn overload(
    established: u32,
    rate: u32,
    secs: u32,
    rt: &tokio::runtime::Runtime,
    dir: &Path,
) -> bool {
    const TONE_S: u64 = 20;
    let (sip, grpc) = (5180, 50180);
    let procs = start(dir, TONE_S, sip, grpc);
    let steal0 = steal_ms();
    let (media_pid, sig_pid) = (procs.0[0].id(), procs.0[1].id());
    let calls_sink = sink();
    calls_sink.measure.store(true, Ordering::Relaxed);
    let burst_sink = sink();
    // Established calls: ACK → BYE measured as rtd 2.
    let tone = tone_scenario(calls_sink.port, (TONE_S + 15) * 1000)
        .replace(
            "<send>\n    <![CDATA[\n      ACK",
            "<send start_rtd=\"2\">\n    <![CDATA[\n      ACK",
        )
        .replace("<recv request=\"BYE\"", "<recv request=\"BYE\" rtd=\"2\"");
    assert!(
        tone.contains("start_rtd=\"2\"") && tone.contains("rtd=\"2\""),
        "uac_tone.xml changed shape"
    );
    let est_dir = dir.join("established");
    std::fs::create_dir_all(&est_dir).unwrap();
    let ramp = 250;
    let calls = run_sipp(
        &est_dir,
        "uac_tone.xml",
        &tone,
        5199,
        sip,
        &[
            "-r".into(),
            ramp.to_string(),
            "-l".into(),
            established.to_string(),
            "-m".into(),
            established.to_string(),
            "-trace_rtt".into(),
            "-rtt_freq".into(),
            "1".into(),
        ],
    );
    std::thread::sleep(
        Duration::from_secs_f64(f64::from(established) / f64::from(ramp)) + Duration::from_secs(2),
    );
    let burst_dir = dir.join("burst");
    std::fs::create_dir_all(&burst_dir).unwrap();
    let burst_text =
        sipp_scenario("uac_burst_hangup.xml").replace("@RTP_PORT@", &burst_sink.port.to_string());
    let total = rate * secs;
    let cpu0 = (cpu_seconds(media_pid), cpu_seconds(sig_pid));
    let burst = run_sipp(
        &burst_dir,
        "uac_burst_hangup.xml",
        &burst_text,
        5299,
        sip,
        &paced_args(rate, total),
    );
    let burst_ok = wait(burst, Duration::from_secs(u64::from(secs) + 60));
    let cpu1 = (cpu_seconds(media_pid), cpu_seconds(sig_pid));
    let calls_ok = wait(calls, Duration::from_secs(TONE_S + 60));
    let end = stats(rt, grpc);
    calls_sink.stop.store(true, Ordering::Relaxed);
    burst_sink.stop.store(true, Ordering::Relaxed);
    drop(procs);

    let csv = std::fs::read_to_string(burst_dir.join("stat.csv")).unwrap_or_default();
    // SIPp counts a shed call (503, ACK) as successful too: the scenario expects either.
    let completed = last_stat(&csv, "SuccessfulCall(C)");
    let failed = last_stat(&csv, "FailedCall(C)");
    // rtd 1: INVITE → 200 (answered); rtd 2: INVITE → 503 (shed).
    let rtts = response_times(&burst_dir);
    let shed = rtts.iter().filter(|(no, _)| *no == 2).count();
    let answered = completed.saturating_sub(shed as u64);
    let mut final_us: Vec<u32> = rtts.iter().map(|(_, us)| *us).collect();
    let mut bye_us: Vec<u32> = response_times(&est_dir)
        .into_iter()
        .filter(|(no, _)| *no == 2)
        .map(|(_, us)| us)
        .collect();
    let est_csv = std::fs::read_to_string(est_dir.join("stat.csv")).unwrap_or_default();
    let est_ok = last_stat(&est_csv, "SuccessfulCall(C)");
    let (mut stream_p99_us, gaps, short): (Vec<u32>, u64, usize) = {
        let mut streams = calls_sink.streams.lock().unwrap();
        let gaps = streams.values().map(|a| a.gaps).sum();
        let expected = TONE_S * 50;
        let short = streams.values().filter(|a| a.packets < expected).count();
        let p99s = streams
            .values_mut()
            .map(|a| quantile(&mut a.deviations_us, 0.99))
            .collect();
        (p99s, gaps, short)
    };
    let streams = stream_p99_us.len();
    let within_2ms = stream_p99_us.iter().filter(|us| **us <= 2_000).count();
    let bye_min = quantile(&mut bye_us, 0.0);
    let bye_max = quantile(&mut bye_us, 1.0);
    println!(
        "## overload: {established} established {TONE_S} s calls, then {rate} calls/s of 2-second calls for {secs} s ({total} calls)"
    );
    println!(
        "- established: {est_ok} of {established} successful (SIPp exit ok: {calls_ok}); {streams} streams at the receiver, {short} short of {} packets, {gaps} sequence gaps; per-stream p99 <= 2 ms for {:.1} %, over the streams p50 {:.2} ms, max {:.2} ms",
        TONE_S * 50,
        100.0 * within_2ms as f64 / streams.max(1) as f64,
        quantile(&mut stream_p99_us, 0.5) as f64 / 1000.0,
        quantile(&mut stream_p99_us, 1.0) as f64 / 1000.0,
    );
    println!(
        "- established: ACK -> BYE {} calls, min {:.3} s, max {:.3} s (target 20 s +/- 100 ms)",
        bye_us.len(),
        f64::from(bye_min) / 1e6,
        f64::from(bye_max) / 1e6
    );
    println!(
        "- burst: {answered} answered, {shed} shed (503), {completed} completed either way, {failed} failed (SIPp exit ok: {burst_ok}); final response p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} measured)",
        quantile(&mut final_us, 0.5) as f64 / 1000.0,
        quantile(&mut final_us, 0.99) as f64 / 1000.0,
        quantile(&mut final_us, 1.0) as f64 / 1000.0,
        final_us.len()
    );
    print_circumstances(&steal0, dir);
    println!(
        "- RTP: {} packets sent, {} send errors, {} skipped; CPU during the burst: signaling {:.1} s, media {:.1} s",
        end.packets_sent,
        end.send_errors,
        end.packets_skipped,
        cpu1.1 - cpu0.1,
        cpu1.0 - cpu0.0
    );
    let tolerance = 100_000;
    calls_ok
        && est_ok == u64::from(established)
        && streams == established as usize
        && short == 0
        && gaps == 0
        && within_2ms == streams
        && bye_us.len() == established as usize
        && bye_min + tolerance >= 20_000_000
        && bye_max <= 20_000_000 + tolerance
        && final_us.len() as u64 == u64::from(total)
        && quantile(&mut final_us, 0.99) <= 50_000
        && completed == u64::from(total)
        && answered * 5 >= u64::from(total)
}

/// What one rate of 2-second calls (the caller hangs up, `uac_burst_hangup.xml`) got from the
/// answering side: calls, what the receiver heard, and the answering processes' CPU.
struct HangupRun {
    answered: u64,
    shed: u64,
    failed: u64,
    sipp_ok: bool,
    streams: usize,
    /// Streams with fewer than 95 of the ~100 packets of a 2-second call.
    short: usize,
    gaps: u64,
    /// Streams with fewer than 98 % of their packets the 440 Hz tone.
    impure: usize,
    /// Streams whose |inter-arrival − 20 ms| p99 is within 2 ms, and the worst stream's p99.
    within_2ms: usize,
    worst_p99_us: u32,
    cpu_s: f64,
}

impl HangupRun {
    /// Clean audio: every call answered, every caller heard a whole, gapless, pure tone.
    fn clean(&self, total: u64) -> bool {
        self.sipp_ok
            && self.failed == 0
            && self.shed == 0
            && self.answered == total
            && self.streams as u64 == total
            && self.short == 0
            && self.gaps == 0
            && self.impure == 0
    }

    fn row(&self, who: &str, rate: u32, total: u64) -> String {
        format!(
            "| {who} | {rate} | {}/{total} ok, {} failed, {} shed | {} streams: {} short, {} gaps, {} not the tone | {:.1} % | {:.1} ms | {:.0} µs | {} |",
            self.answered,
            self.failed,
            self.shed,
            self.streams,
            self.short,
            self.gaps,
            self.impure,
            100.0 * self.within_2ms as f64 / self.streams.max(1) as f64,
            f64::from(self.worst_p99_us) / 1000.0,
            self.cpu_s * 1e6 / self.answered.max(1) as f64,
            if self.clean(total) { "clean" } else { "NOT clean" },
        )
    }
}

/// `rate` calls/s of 2-second calls for `secs` seconds to `sip`, the caller hanging up; the CPU
/// counted is that of the processes `pids` (the answering side) over the run.
fn hangup_calls(dir: &Path, sip: u16, rate: u32, secs: u32, pids: &[u32]) -> HangupRun {
    let sink = sink_for_tone(Some(440.0));
    sink.measure.store(true, Ordering::Relaxed);
    let text = sipp_scenario("uac_burst_hangup.xml").replace("@RTP_PORT@", &sink.port.to_string());
    let total = rate * secs;
    let cpu = || pids.iter().map(|&p| cpu_seconds(p)).sum::<f64>();
    let cpu0 = cpu();
    let child = run_sipp(
        dir,
        "uac_burst_hangup.xml",
        &text,
        5199,
        sip,
        &paced_args(rate, total),
    );
    let sipp_ok = wait(child, Duration::from_secs(u64::from(secs) + 60));
    // The last packets in flight.
    std::thread::sleep(Duration::from_millis(300));
    let cpu_s = cpu() - cpu0;
    sink.stop.store(true, Ordering::Relaxed);
    let csv = std::fs::read_to_string(dir.join("stat.csv")).unwrap_or_default();
    let completed = last_stat(&csv, "SuccessfulCall(C)");
    let failed = last_stat(&csv, "FailedCall(C)");
    let shed = response_times(dir)
        .iter()
        .filter(|(no, _)| *no == 2)
        .count() as u64;
    let mut streams = sink.streams.lock().unwrap();
    let mut p99s: Vec<u32> = streams
        .values_mut()
        .map(|a| quantile(&mut a.deviations_us, 0.99))
        .collect();
    HangupRun {
        answered: completed.saturating_sub(shed),
        shed,
        failed,
        sipp_ok,
        streams: streams.len(),
        short: streams.values().filter(|a| a.packets < 95).count(),
        gaps: streams.values().map(|a| a.gaps).sum(),
        impure: streams
            .values()
            .filter(|a| a.tone_packets * 100 < (a.tone_packets + a.other_packets) * 98)
            .count(),
        within_2ms: p99s.iter().filter(|us| **us <= 2_000).count(),
        worst_p99_us: quantile(&mut p99s, 1.0),
        cpu_s,
    }
}

/// baresip (Debian `baresip-core`) answering every call at once with its `ausine` 440 Hz tone,
/// G.711 only, loopback only, its files in `dir`.
fn start_baresip(dir: &Path, sip: u16, max_calls: u32) -> Procs {
    let conf = dir.join("conf");
    std::fs::create_dir_all(&conf).unwrap();
    // ausine makes only 48 kHz stereo: baresip resamples it to the codec's 8 kHz mono.
    let config = format!(
        "poll_method\tepoll
sip_listen\t127.0.0.1:{sip}
net_interface\t127.0.0.1
dns_server\t127.0.0.1:53
call_max_calls\t{max_calls}
audio_player\t
audio_alert\t
audio_source\tausine,440
ausrc_srate\t48000
ausrc_channels\t2
audio_level\tno
rtp_ports\t30000-39999
rtcp_mux\tno
rtp_stats\tno
module_path\t/usr/lib/baresip/modules
module\tg711.so
module\tausine.so
module_app\taccount.so
"
    );
    std::fs::write(conf.join("config"), config).unwrap();
    // answermode=auto: every incoming call answered at once; regint=0: never registers.
    std::fs::write(
        conf.join("accounts"),
        "<sip:milliwatt@127.0.0.1>;regint=0;answermode=auto\n",
    )
    .unwrap();
    let log = dir.join("baresip.log");
    let out = std::fs::File::create(&log).unwrap();
    let child = Command::new("baresip")
        .current_dir(dir)
        .arg("-4")
        .arg("-f")
        .arg(&conf)
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap_or_else(|e| panic!("starting baresip (Debian package baresip-core): {e}"));
    let procs = Procs(vec![child]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("baresip is ready")
    {
        assert!(
            Instant::now() < deadline,
            "baresip was not ready within 10 s: {}",
            log.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    procs
}

/// The ratio against baresip: 2-second calls (the caller hangs up) for `secs` seconds at each
/// of `rates` in turn, answered by baresip (a fresh process per rate) until its audio is no
/// longer clean; then the same calls at baresip's highest clean rate (and at the first rate that
/// was not clean) answered by our two processes, and the CPU per call of each side.
fn versus_baresip(rates: &[u32], secs: u32, dir: &Path) -> bool {
    let sip = 5400;
    println!("## versus baresip: 2-second calls (the caller hangs up) for {secs} s at each rate");
    println!("| answered by | calls/s | calls | what the callers heard | streams' p99 <= 2 ms | worst stream p99 | CPU per call | audio |");
    println!("| --- | --- | --- | --- | --- | --- | --- | --- |");
    let mut clean: Option<(u32, f64)> = None;
    let mut unclean: Option<u32> = None;
    for &rate in rates {
        let d = dir.join(format!("baresip-{rate}"));
        std::fs::create_dir_all(&d).unwrap();
        let procs = start_baresip(&d, sip, rate * 10);
        let total = u64::from(rate * secs);
        let run = hangup_calls(&d, sip, rate, secs, &[procs.0[0].id()]);
        drop(procs);
        println!("{}", run.row("baresip", rate, total));
        if !run.clean(total) {
            unclean = Some(rate);
            break;
        }
        clean = Some((rate, run.cpu_s / run.answered.max(1) as f64));
    }
    let Some((rate, baresip_per_call)) = clean else {
        println!("- baresip gave no clean audio at any rate: no ratio");
        return false;
    };
    let mut ok = true;
    let mut ours_per_call = 0.0;
    for r in std::iter::once(rate).chain(unclean) {
        let d = dir.join(format!("milliwatt-{r}"));
        std::fs::create_dir_all(&d).unwrap();
        // The tone outlasts the call: the caller hangs up, as with baresip.
        let procs = start(&d, 30, sip, 50190);
        let pids: Vec<u32> = procs.0.iter().map(Child::id).collect();
        let total = u64::from(r * secs);
        let run = hangup_calls(&d, sip, r, secs, &pids);
        drop(procs);
        println!("{}", run.row("milliwatt (both processes)", r, total));
        ok &= run.clean(total);
        if r == rate {
            ours_per_call = run.cpu_s / run.answered.max(1) as f64;
        }
    }
    println!(
        "- at {rate} calls/s, baresip's highest rate with clean audio: CPU per call baresip {:.0} µs, milliwatt {:.0} µs: milliwatt / baresip = {:.2}",
        baresip_per_call * 1e6,
        ours_per_call * 1e6,
        ours_per_call / baresip_per_call.max(1e-9)
    );
    ok
}

/// The last row's value of a SIPp statistics column.
fn last_stat(csv: &str, column: &str) -> u64 {
    let mut lines = csv.lines().filter(|l| !l.trim().is_empty());
    let Some(header) = lines.next() else {
        return u64::MAX;
    };
    let Some(idx) = header.split(';').position(|h| h == column) else {
        return u64::MAX;
    };
    lines
        .next_back()
        .and_then(|l| l.split(';').nth(idx)?.trim().parse().ok())
        .unwrap_or(u64::MAX)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = std::env::temp_dir().join(format!("milliwatt-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let what = args.first().map(String::as_str).unwrap_or("all");
    let mut ok = true;
    if what == "concurrent" || what == "all" {
        let n = args.get(1).and_then(|v| v.parse().ok()).unwrap_or(500);
        let d = dir.join("concurrent");
        std::fs::create_dir_all(&d).unwrap();
        ok &= concurrent(n, &rt, &d, Judge::Targets, false);
    }
    if what == "overload" {
        let n = args.get(1).and_then(|v| v.parse().ok()).unwrap_or(500);
        let r = args.get(2).and_then(|v| v.parse().ok()).unwrap_or(3000);
        let secs = args.get(3).and_then(|v| v.parse().ok()).unwrap_or(5);
        let d = dir.join("overload");
        std::fs::create_dir_all(&d).unwrap();
        ok &= overload(n, r, secs, &rt, &d);
    }
    if what == "duplex" {
        let n = args.get(1).and_then(|v| v.parse().ok()).unwrap_or(2500);
        let d = dir.join("duplex");
        std::fs::create_dir_all(&d).unwrap();
        ok &= concurrent(n, &rt, &d, Judge::Targets, true);
    }
    if what == "memory" {
        let n = args.get(1).and_then(|v| v.parse().ok()).unwrap_or(2000);
        let d = dir.join("memory");
        std::fs::create_dir_all(&d).unwrap();
        ok &= memory(n, &rt, &d);
    }
    if what == "baresip" {
        let rates: Vec<u32> = args[1..].iter().filter_map(|v| v.parse().ok()).collect();
        let rates = if rates.is_empty() {
            vec![5, 10, 20, 50, 100, 200, 400, 800]
        } else {
            rates
        };
        let d = dir.join("baresip");
        std::fs::create_dir_all(&d).unwrap();
        ok &= versus_baresip(&rates, 10, &d);
    }
    if what == "smoke" {
        // What CI runs: 50 calls, the whole measurement path, judged only for running through.
        let d = dir.join("smoke");
        std::fs::create_dir_all(&d).unwrap();
        ok &= concurrent(50, &rt, &d, Judge::Smoke, true);
        // And the baresip comparison's path: one rate, 4 s of calls, each side.
        let d = dir.join("smoke-baresip");
        std::fs::create_dir_all(&d).unwrap();
        ok &= versus_baresip(&[5], 4, &d);
    }
    if what == "rate" || what == "all" {
        let r = args
            .get(1)
            .filter(|_| what == "rate")
            .and_then(|v| v.parse().ok())
            .unwrap_or(200);
        let secs = args.get(2).and_then(|v| v.parse().ok()).unwrap_or(10);
        let d = dir.join("rate");
        std::fs::create_dir_all(&d).unwrap();
        ok &= rate(r, secs, &rt, &d);
    }
    if what == "smoke" {
        println!("smoke run ran through: {ok} (no targets are judged on a debug build)");
    } else {
        println!("targets met: {ok}");
    }
    std::process::exit(if ok { 0 } else { 1 });
}
