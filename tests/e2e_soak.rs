//! Short calls, one after another, leave nothing behind: after `SOAK_CALLS` SIPp calls (default
//! 1,000, at `SOAK_RATE` a second, default 100; each answered at once with a 1 s tone and our
//! BYE) in the two-process set-up, media has no session and every RTP port free, signaling has
//! no call, and neither process holds more file descriptors or threads than after the warm-up,
//! nor much more memory. `scripts/bench.sh soak` runs it for a million calls on the release
//! build (README, Benchmark).

mod common;

use std::time::{Duration, Instant};

use common::rtp::RtpSink;
use common::*;

const SEC: Duration = Duration::from_secs(1);

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name}={v:?} is not a number"))
        })
        .unwrap_or(default)
}

fn rss_kib_of(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))?
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

/// Open file descriptors and threads of each process, by name.
fn resources(server: &Server) -> Vec<(String, usize, u64)> {
    server
        .pids()
        .into_iter()
        .map(|(name, pid)| {
            let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
                .map(|d| d.count())
                .unwrap_or(0);
            let threads = std::fs::read_to_string(format!("/proc/{pid}/status"))
                .ok()
                .and_then(|s| {
                    s.lines()
                        .find(|l| l.starts_with("Threads:"))?
                        .split_whitespace()
                        .nth(1)?
                        .parse()
                        .ok()
                })
                .unwrap_or(0);
            (name, fds, threads)
        })
        .collect()
}

/// Waits until media has no session (released at our BYE) and signaling no call.
fn settled(server: &Server, cfg: &TestConfig, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let stats = grpc::stats(&server.grpc_endpoint());
        let active = http_get(cfg.admin_port, "/metrics")
            .map(|(_, m)| m.lines().any(|l| l.trim() == "milliwatt_calls_active 0"))
            .unwrap_or(false);
        if stats.active_sessions == 0 && active {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "not settled after {limit:?}: {} media sessions; signaling calls_active 0: {active}",
            stats.active_sessions
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn short_calls_in_a_row_leave_nothing_behind() {
    let calls = env_or("SOAK_CALLS", 1000);
    let rate = env_or("SOAK_RATE", 100);
    let mut cfg = TestConfig::new();
    cfg.answer_delay_ms = 0;
    cfg.tone_seconds = 1;
    cfg.max_calls = 10_000;
    // Calls overlap for about 1.5 s each: room for that many sessions, two ports each.
    cfg.rtp_range = rtp_port_block((4 * rate).clamp(100, 6000) as u16);
    // Warnings only: the harness keeps the log in memory, and a million calls' lines would fill it.
    cfg.log_level = "warn";
    let server = Server::start(cfg.clone(), Mode::Split);
    let dir = temp_dir("soak");
    let sink = RtpSink::bind();
    let sc = tone_scenario(&dir, sink.port(), "0", 5000);
    // Warm-up: connections, pools and tables that are made once.
    sipp(&server, &sc, &["-m", "20", "-r", "20"], 30 * SEC).assert_ok();
    settled(&server, &cfg, 10 * SEC);
    let free_ports = grpc::stats(&server.grpc_endpoint()).free_ports;
    // The connections of those status requests close asynchronously on the server's side.
    std::thread::sleep(SEC);
    let before = resources(&server);
    let rss_before = server.rss_kib();

    // RSS of both processes every 10 s while the calls run.
    let pids: Vec<u32> = server.pids().into_iter().map(|(_, pid)| pid).collect();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let done = done.clone();
        std::thread::spawn(move || {
            let mut samples = Vec::new();
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                let kib: u64 = pids.iter().map(|pid| rss_kib_of(*pid)).sum();
                samples.push(kib / 1024);
                for _ in 0..100 {
                    if done.load(std::sync::atomic::Ordering::Relaxed) {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
            samples
        })
    };
    let started = Instant::now();
    let limit = Duration::from_secs(calls / rate + 60);
    let run = sipp(
        &server,
        &sc,
        &[
            "-m",
            &calls.to_string(),
            "-r",
            &rate.to_string(),
            "-l",
            &(rate * 5).to_string(),
            SIPP_NO_MESSAGE_LOG,
        ],
        limit,
    );
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let samples = sampler.join().unwrap();
    settled(&server, &cfg, 15 * SEC);
    // Descriptors and threads come back to the warm-up's count, or it is a leak: a status
    // request's connection closes asynchronously on the server's side, and an idle tokio blocking
    // thread stays 10 s. A leak never comes back; the wait is bounded.
    let back_by = Instant::now() + 15 * SEC;
    let after = loop {
        let now = resources(&server);
        let back = before
            .iter()
            .zip(&now)
            .all(|((_, f0, t0), (_, f1, t1))| f1 <= f0 && t1 <= t0);
        if back || Instant::now() > back_by {
            break now;
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    let rss_after = server.rss_kib();
    let stats = grpc::stats(&server.grpc_endpoint());
    eprintln!(
        "soak: {calls} calls at {rate}/s in {:.1} s; {} sessions in all; resources before \
         {before:?}, after {after:?}; RSS {} -> {} MiB; RSS every 10 s (MiB): {samples:?}",
        started.elapsed().as_secs_f64(),
        stats.sessions_total,
        rss_before / 1024,
        rss_after / 1024
    );
    // After the figures: the calls themselves (SIPp's verdict on each).
    run.assert_ok();
    assert_eq!(stats.free_ports, free_ports, "RTP ports not returned");
    assert!(
        stats.sessions_total >= calls + 20,
        "{} sessions for {calls} calls",
        stats.sessions_total
    );
    assert_eq!(
        stats.sessions_expired, 0,
        "sessions left to expire instead of released"
    );
    for ((name, fds0, threads0), (_, fds1, threads1)) in before.iter().zip(&after) {
        assert!(
            fds1 <= fds0,
            "{name}: {fds0} file descriptors before, {fds1} 15 s after"
        );
        assert!(
            threads1 <= threads0,
            "{name}: {threads0} threads before, {threads1} 15 s after"
        );
    }
    // Memory is flat, or it leaks. A long run at a high rate holds a plateau that follows the
    // call rate, not the call count (RFC 3261 keeps each transaction 32 s for its timers): past
    // its first quarter RSS may not grow by more than 16 MiB. A short run (the test command's)
    // ends near where its warm-up was.
    if samples.len() >= 8 {
        let from = samples[samples.len() / 4];
        let peak = samples[samples.len() / 4..]
            .iter()
            .copied()
            .max()
            .unwrap_or(from);
        assert!(
            peak <= from + 16,
            "RSS grew from {from} MiB (a quarter into the run) to {peak} MiB: {samples:?}"
        );
    } else {
        assert!(
            rss_after <= rss_before + 32 * 1024,
            "RSS grew from {} to {} MiB",
            rss_before / 1024,
            rss_after / 1024
        );
    }
    drop(sink);
}
