//! Overload control end to end: a SIPp burst far above what the answer path may hold is shed at
//! once with 503 and Retry-After, every burst caller gets a final response (none waits for a
//! timeout), the shed calls are counted in `/metrics` and the statistics line, and the calls
//! already established keep their whole tone and end on time. INVITEs that waited in the socket
//! longer than `overload.max_invite_wait_ms` (the kernel's receive time, vendor patch 0022) are
//! shed with 503 the moment they are read, and the next INVITE is answered. A shed INVITE gets
//! the same answer whether it was refused from its bytes (the early shed, vendor patch 0033) or
//! by the stack's path, and an INVITE retransmission of a call being answered is never shed.

mod common;

use std::time::{Duration, Instant};

use common::rtp::{judge, Expect, RtpSink};
use common::sip::RawSip;
use common::{
    metrics, scenario, sipp, temp_dir, tone_scenario, wait_until, Mode, Server, TestConfig,
};

const SEC: Duration = Duration::from_secs(1);

/// Milliseconds of each response time SIPp measured (`-trace_rtt` CSV, a header then
/// `Date_ms;response_time_ms;rtd_no` lines).
fn response_times_ms(csv: &str) -> Vec<f64> {
    csv.lines()
        .filter(|l| !l.starts_with("Date"))
        .filter_map(|l| l.split(';').nth(1)?.trim().parse().ok())
        .collect()
}

#[test]
fn a_burst_over_capacity_is_shed_fast_and_established_calls_are_unharmed() {
    const TONE: u64 = 5;
    const BURST: usize = 150;
    const IN_SETUP: usize = 10;
    let mut cfg = TestConfig::new();
    cfg.tone_seconds = TONE;
    // Every admitted call stays a second in setup, so the answer path holds at most IN_SETUP.
    cfg.answer_delay_ms = 1000;
    cfg.overload
        .push_str(&format!("max_calls_in_setup = {IN_SETUP}\n"));
    cfg.extra = "[log]\nstats_interval_seconds = 1\n".into();
    // Ports for every call the answer path can admit: what sheds here is the overload check.
    cfg.rtp_range = common::rtp_port_block(200);
    let server = Server::start(cfg.clone(), Mode::AllInOne);
    let dir = temp_dir("overload");
    let sinks: Vec<RtpSink> = (0..3).map(|_| RtpSink::bind()).collect();
    let burst_sink = RtpSink::bind();
    let burst_started = std::thread::scope(|s| {
        let established: Vec<_> = sinks
            .iter()
            .map(|sink| {
                // A folder each: the scenario file names the call's own RTP port.
                let own = temp_dir("overload-call");
                let sc = tone_scenario(&own, sink.port(), "0", (TONE + 5) * 1000);
                let server = &server;
                s.spawn(move || sipp(server, &sc, &[], 20 * SEC))
            })
            .collect();
        for sink in &sinks {
            wait_until("the established calls get RTP", 10 * SEC, || {
                !sink.packets().is_empty()
            });
        }
        // 150 calls in one second: 15 times what the answer path may hold.
        let sc = scenario(
            "uac_burst.xml",
            &[
                ("RTP_PORT", burst_sink.port().to_string()),
                ("BYE_TIMEOUT_MS", ((TONE + 5) * 1000).to_string()),
            ],
            &dir,
        );
        let started = Instant::now();
        let burst = sipp(
            &server,
            &sc,
            &[
                "-m",
                &BURST.to_string(),
                "-r",
                &BURST.to_string(),
                "-l",
                &BURST.to_string(),
                "-trace_rtt",
                "-rtt_freq",
                "1",
            ],
            30 * SEC,
        );
        // Every burst call completed its scenario: answered or refused, none timed out.
        burst.assert_ok();
        let shed_ms = response_times_ms(&burst.rtt);
        eprintln!(
            "burst: {} calls, {} shed; 503 after p50 {:.1} ms, max {:.1} ms",
            BURST,
            shed_ms.len(),
            percentile(&shed_ms, 0.5),
            percentile(&shed_ms, 1.0)
        );
        assert!(
            shed_ms.len() >= BURST / 2,
            "only {} of {BURST} burst calls shed with at most {IN_SETUP} in setup\n{}",
            shed_ms.len(),
            burst.screen
        );
        // At once: no queueing behind the admitted calls (a debug build on 2 shared cores).
        assert!(
            percentile(&shed_ms, 0.99) <= 200.0,
            "503 p99 {:.1} ms",
            percentile(&shed_ms, 0.99)
        );
        for call in established {
            call.join().unwrap().assert_ok();
        }
        started
    });
    eprintln!(
        "burst and established calls done {:?} after the burst",
        burst_started.elapsed()
    );
    // The established calls: their whole tone, clean, unharmed by the burst.
    for sink in sinks {
        judge(&sink.finish(), &Expect::pcmu_440(Duration::from_secs(TONE)));
    }
    let m = metrics(cfg.admin_port);
    let shed = m.get("milliwatt_calls_shed_total").copied().unwrap_or(0.0);
    let answered = m
        .get("milliwatt_calls_answered_total")
        .copied()
        .unwrap_or(0.0);
    assert!(shed >= (BURST / 2) as f64, "{m:?}");
    assert_eq!(
        shed + answered,
        (BURST + 3) as f64,
        "every call answered or shed: {m:?}"
    );
    assert!(
        answered >= 3.0 + IN_SETUP as f64,
        "a share of the burst is answered: {m:?}"
    );
    assert_eq!(
        m.get("milliwatt_calls_failed_by_reason_total{reason=\"overload\"}")
            .copied(),
        Some(shed)
    );
    server.wait_log(&format!("shed={shed}"), 3 * SEC);
    let log = server.log_text();
    assert!(
        log.contains("reason=overload: "),
        "the refusal says why:\n{log}"
    );
}

/// Signaling is stopped (SIGSTOP) while five INVITEs arrive and resumed 400 ms later: each has
/// waited longer than `max_invite_wait_ms` (100) by then, so each gets 503 with Retry-After, the
/// reason naming the wait; an INVITE sent after that is answered. The other overload signals are
/// off, so only the wait can shed (a stopped process also sees its event loop late).
#[test]
fn invites_that_waited_too_long_in_the_socket_are_shed_when_read() {
    const WAITING: usize = 5;
    let mut cfg = TestConfig::new();
    cfg.answer_delay_ms = 0;
    cfg.tone_seconds = 1;
    cfg.overload = "max_invite_wait_ms = 100\nmax_event_loop_lag_ms = 0\n\
                    max_answer_lateness_ms = 0\n"
        .into();
    let server = Server::start(cfg.clone(), Mode::AllInOne);
    let pid = server.pid("milliwatt");
    let sink = RtpSink::bind();
    let peer = RawSip::new(cfg.sip_addr());
    // Linux turns receive timestamps on in deferred work (net_enable_timestamp); a datagram that
    // arrives before it ran is stamped when it is read. Give it time.
    std::thread::sleep(Duration::from_millis(300));
    common::stop_process(pid);
    for n in 0..WAITING {
        peer.send(&peer.invite(&format!("waited-{n}"), &format!("w{n}"), sink.port()));
    }
    std::thread::sleep(Duration::from_millis(400));
    common::continue_process(pid);
    let replies = peer.recv_until(3 * SEC, |_| false);
    let finals: Vec<_> = replies
        .iter()
        .filter(|m| m.status().is_some_and(|s| s >= 200))
        .collect();
    assert_eq!(
        finals.len(),
        WAITING,
        "one final response each: {replies:#?}"
    );
    for m in &finals {
        assert_eq!(m.status(), Some(503), "{}", m.text);
        assert!(m.header("Retry-After").is_some(), "{}", m.text);
    }
    let m = metrics(cfg.admin_port);
    assert_eq!(
        m.get("milliwatt_calls_shed_total"),
        Some(&(WAITING as f64)),
        "{m:?}"
    );
    let wait_us = m
        .get("milliwatt_invite_wait_microseconds")
        .copied()
        .unwrap_or(0.0);
    assert!(
        wait_us >= 300_000.0,
        "the gauge shows the last INVITE's wait: {wait_us} µs"
    );
    let log = server.log_text();
    assert!(
        log.contains("the INVITE waited") && log.contains("overload.max_invite_wait_ms 100"),
        "the refusal says why:\n{log}"
    );
    // Read at once, an INVITE is answered and its tone arrives.
    peer.call(&peer.invite("fresh", "f1", sink.port()), "fresh");
    let bye = peer
        .recv_until(5 * SEC, |m| m.method() == Some("BYE"))
        .pop();
    let bye = bye
        .filter(|m| m.method() == Some("BYE"))
        .expect("BYE after the tone");
    peer.ok_to(&bye);
    judge(&sink.finish(), &Expect::pcmu_440(Duration::from_secs(1)));
    let m = metrics(cfg.admin_port);
    assert_eq!(m.get("milliwatt_calls_answered_total"), Some(&1.0), "{m:?}");
}

/// The early shed (vendor patch 0033) answers a new INVITE from its bytes: the 503 echoes the
/// request's Via (with `rport` filled), From, To, Call-ID and CSeq, adds a To-tag, Retry-After
/// and the reason. Its retransmission gets the same To-tag, and so does a copy that the scan
/// leaves to the stack (two Content-Length headers): one request, one answer, on either path.
/// The ACK of the 503 is dropped unanswered. A retransmission of the INVITE of a call being
/// answered belongs to its transaction (its 180 again), even while new calls are refused, and
/// that call goes on to its tone.
#[test]
fn a_shed_invite_gets_one_answer_on_either_path_and_a_live_calls_retransmission_is_not_shed() {
    let mut cfg = TestConfig::new();
    cfg.answer_delay_ms = 1500;
    cfg.tone_seconds = 1;
    cfg.overload = "max_calls_in_setup = 1\nmax_invite_wait_ms = 0\nmax_event_loop_lag_ms = 0\n\
                    max_answer_lateness_ms = 0\n"
        .into();
    let server = Server::start(cfg.clone(), Mode::AllInOne);
    let sink = RtpSink::bind();
    let peer = RawSip::new(cfg.sip_addr());
    let live = peer.invite("live", "live1", sink.port());
    peer.send(&live);
    let ringing = peer.recv_until(2 * SEC, |m| m.status() == Some(180));
    assert!(
        ringing.iter().any(|m| m.status() == Some(180)),
        "the first call rings: {ringing:#?}"
    );

    // A second call while the first is in setup (overload.max_calls_in_setup = 1).
    let shed = peer.invite("shed", "shed1", sink.port());
    let final_to = |what: &str, request: &str| {
        peer.send(request);
        let got = peer.recv_until(2 * SEC, |m| m.status().is_some_and(|s| s >= 200));
        got.into_iter()
            .find(|m| m.status().is_some_and(|s| s >= 200))
            .unwrap_or_else(|| panic!("{what}: no final response"))
    };
    let first = final_to("the shed INVITE", &shed);
    assert_eq!(first.status(), Some(503), "{}", first.text);
    let local = peer.local;
    assert_eq!(
        first.header("Via"),
        Some(
            format!(
                "SIP/2.0/UDP {local};branch=z9hG4bKshed1;rport={}",
                local.port()
            )
            .as_str()
        ),
        "{}",
        first.text
    );
    assert_eq!(
        first.header("From"),
        Some(format!("<sip:raw@{local}>;tag=rawfrom").as_str())
    );
    let to = first.header("To").expect("To").to_string();
    assert!(
        to.starts_with(&format!("<sip:milliwatt@{}>;tag=", cfg.sip_addr())) && to.len() > 30,
        "{to}"
    );
    assert_eq!(first.header("Call-ID"), Some("shed"));
    assert_eq!(first.header("CSeq"), Some("1 INVITE"));
    assert!(first.header("Retry-After").is_some(), "{}", first.text);
    assert!(
        first
            .header("Warning")
            .is_some_and(|w| w.contains("overload.max_calls_in_setup 1")),
        "{}",
        first.text
    );

    let again = final_to("its retransmission", &shed);
    assert_eq!(again.status(), Some(503), "{}", again.text);
    assert_eq!(again.header("To"), Some(to.as_str()), "the same To-tag");
    let length = shed
        .lines()
        .find(|l| l.starts_with("Content-Length:"))
        .expect("Content-Length");
    let stack_path = shed.replacen(length, &format!("{length}\r\n{length}"), 1);
    let by_stack = final_to("the copy left to the stack", &stack_path);
    assert_eq!(by_stack.status(), Some(503), "{}", by_stack.text);
    assert_eq!(
        by_stack.header("To"),
        Some(to.as_str()),
        "the stack's path gives the same To-tag"
    );

    // The 503's ACK, then the live call's INVITE again (same branch: a retransmission).
    peer.send(&peer.ack_for(&first, "shed", "shed1"));
    peer.send(&live);
    let replies = peer.recv_until(SEC, |_| false);
    assert!(
        replies
            .iter()
            .all(|m| m.header("Call-ID") == Some("live") && m.status() == Some(180)),
        "only the live call's 180 again, nothing to the ACK: {replies:#?}"
    );
    assert!(!replies.is_empty(), "the retransmission gets its 180 again");

    let ok = peer
        .recv_until(3 * SEC, |m| m.status() == Some(200))
        .pop()
        .filter(|m| m.status() == Some(200))
        .expect("the live call is answered");
    peer.send(&peer.ack_for(&ok, "live", "liveack"));
    let bye = peer
        .recv_until(5 * SEC, |m| m.method() == Some("BYE"))
        .pop()
        .filter(|m| m.method() == Some("BYE"))
        .expect("BYE after the tone");
    peer.ok_to(&bye);
    judge(&sink.finish(), &Expect::pcmu_440(Duration::from_secs(1)));
    let m = metrics(cfg.admin_port);
    assert_eq!(m.get("milliwatt_calls_shed_total"), Some(&3.0), "{m:?}");
    assert_eq!(m.get("milliwatt_calls_answered_total"), Some(&1.0), "{m:?}");
    drop(server);
}

fn percentile(v: &[f64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() - 1) as f64 * q).round() as usize]
}
