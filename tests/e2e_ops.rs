//! Operations without containers: admin probes and metrics, the healthcheck subcommand, media
//! loss and recovery, and graceful drain on SIGTERM. Real binaries and SIPp on loopback.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::rtp::{judge, Expect, Law, RtpSink};
use common::{
    http_get, metric, reject_scenario, scenario, sipp, sipp_to, temp_dir, tone_scenario,
    wait_until, Mode, Server, TestConfig,
};

const SEC: Duration = Duration::from_secs(1);

fn wait_rtp(sink: &RtpSink) {
    wait_until("RTP arrives", 10 * SEC, || !sink.packets().is_empty());
}

fn expect_tone(seconds: u64) -> Expect {
    Expect {
        payload_type: 0,
        law: Law::Mu,
        frequency: 440.0,
        level_dbm0: -10.0,
        source: None,
        duration: Duration::from_secs(seconds),
    }
}

#[test]
fn admin_probes_metrics_and_the_healthcheck_subcommand() {
    let mut cfg = TestConfig::new();
    cfg.tone_seconds = 1;
    let server = Server::start(cfg.clone(), Mode::AllInOne);
    let admin = cfg.admin_port;
    // media.pacing_priority = "realtime" (the default) says what it got: SCHED_FIFO, or why not.
    let running_as_root = std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"));
    // What root is granted must be logged; elsewhere, either that or the refusal.
    let granted_or_refused = |granted: &str, refused: &str| {
        if running_as_root {
            server.wait_log(granted, 2 * SEC);
        } else {
            wait_until(granted, 2 * SEC, || {
                let log = server.log_text();
                log.contains(granted) || log.contains(refused)
            });
        }
    };
    granted_or_refused(
        "pacing threads at real-time priority",
        "cannot raise the pacing threads",
    );
    // The SIP UDP socket's receive buffer: 4 MiB granted (root may force it), or a warning
    // naming what the kernel granted instead.
    granted_or_refused(
        "SIP UDP receive buffer bytes=4194304",
        "SIP UDP receive buffer is smaller than wanted",
    );
    assert_eq!(http_get(admin, "/livez").map(|r| r.0), Some(200));
    wait_until("ready", 5 * SEC, || {
        http_get(admin, "/readyz").map(|r| r.0) == Some(200)
    });
    let sink = RtpSink::bind();
    let dir = temp_dir("ops");
    sipp(
        &server,
        &tone_scenario(&dir, sink.port(), "0 8", 5000),
        &[],
        10 * SEC,
    )
    .assert_ok();
    // SIPp is done once it has answered our BYE; the call task then releases media.
    server.wait_log("call ended", 2 * SEC);
    let (status, text) = http_get(admin, "/metrics").expect("metrics answer");
    assert_eq!(status, 200);
    assert!(
        text.contains("# TYPE milliwatt_calls_answered counter"),
        "{text}"
    );
    assert_eq!(
        metric(&text, "milliwatt_calls_received_total"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        metric(&text, "milliwatt_calls_answered_total"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(metric(&text, "milliwatt_calls_active"), Some(0.0), "{text}");
    let sent = metric(&text, "milliwatt_media_rtp_packets_sent_total").unwrap_or(0.0);
    assert!(sent >= 45.0, "{text}");
    assert_eq!(
        metric(&text, "milliwatt_media_rtp_send_errors_total"),
        Some(0.0)
    );
    assert!(
        text.trim_end().ends_with("# EOF"),
        "OpenMetrics text ends with # EOF"
    );

    let exe = std::path::PathBuf::from(env!("CARGO_BIN_EXE_milliwatt"));
    let config = server.dir.join("config.toml");
    let ok = Command::new(&exe)
        .arg("--config")
        .arg(&config)
        .arg("healthcheck")
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let nowhere = format!("admin.address=127.0.0.1:{}", common::free_port());
    let down = Command::new(&exe)
        .args(["--config"])
        .arg(&config)
        .args(["--set", &nowhere, "healthcheck"])
        .output()
        .unwrap();
    assert_eq!(
        down.status.code(),
        Some(1),
        "healthcheck with nothing listening must fail"
    );
}

#[test]
fn media_loss_ends_calls_within_2s_refuses_new_ones_and_recovers() {
    let mut cfg = TestConfig::new();
    cfg.tone_seconds = 30;
    let mut server = Server::start(cfg.clone(), Mode::Split);
    wait_until("signaling ready", 5 * SEC, || {
        http_get(cfg.admin_port, "/readyz").map(|r| r.0) == Some(200)
    });
    let dir = temp_dir("ops");
    let sink = RtpSink::bind();
    let sc = tone_scenario(&dir, sink.port(), "0 8", 40_000);
    let target = cfg.sip_addr();
    std::thread::scope(|s| {
        let sc = &sc;
        let call = s.spawn(move || sipp_to(target, sc, &[], 45 * SEC));
        wait_rtp(&sink);
        std::thread::sleep(SEC);
        let killed = Instant::now();
        server.kill("milliwatt-media");
        let run = call.join().unwrap();
        run.assert_ok(); // it got our BYE and answered it
        let bye_after = run.finished_at.duration_since(killed);
        assert!(bye_after <= 2 * SEC, "BYE {bye_after:?} after media died");
    });
    server.wait_log("reason=media session lost", 2 * SEC);
    let (status, body) = http_get(cfg.admin_port, "/readyz").unwrap();
    assert_eq!(status, 503);
    assert!(body.contains("media_reachable"), "{body}");
    for path in ["/health", "/healthz"] {
        assert_eq!(
            http_get(cfg.admin_port, path),
            Some((status, body.clone())),
            "{path} answers like /readyz"
        );
    }
    let refused = sipp(&server, &reject_scenario(&dir, "0", 503), &[], 10 * SEC);
    refused.assert_ok();

    server.restart("milliwatt-media");
    let back = wait_until("signaling ready again", 10 * SEC, || {
        http_get(cfg.admin_port, "/readyz").map(|r| r.0) == Some(200)
    });
    eprintln!("ready again {back:?} after the media restart");
    for path in ["/health", "/healthz"] {
        let (status, body) = http_get(cfg.admin_port, path).unwrap();
        assert_eq!(status, 200, "{path}: {body}");
    }
    let sink = RtpSink::bind();
    let bye = scenario(
        "uac_caller_bye.xml",
        &[
            ("RTP_PORT", sink.port().to_string()),
            ("HOLD_MS", "1000".into()),
        ],
        &dir,
    );
    sipp(&server, &bye, &[], 10 * SEC).assert_ok();
    std::thread::sleep(Duration::from_millis(200));
    judge(&sink.finish(), &expect_tone(1)); // the tone after recovery
}

#[test]
fn sigterm_lets_calls_finish_refuses_new_ones_then_exits_0() {
    let mut cfg = TestConfig::new();
    cfg.tone_seconds = 3;
    let mut server = Server::start(cfg.clone(), Mode::AllInOne);
    let dir = temp_dir("ops");
    let sink = RtpSink::bind();
    let sc = tone_scenario(&dir, sink.port(), "0 8", 10_000);
    let target = cfg.sip_addr();
    std::thread::scope(|s| {
        let sc = &sc;
        let call = s.spawn(move || sipp_to(target, sc, &[], 15 * SEC));
        wait_rtp(&sink);
        server.sigterm("milliwatt");
        wait_until("readiness false while draining", 2 * SEC, || {
            http_get(cfg.admin_port, "/readyz")
                .is_some_and(|(st, b)| st == 503 && b.contains("draining"))
        });
        sipp(&server, &reject_scenario(&dir, "0", 503), &[], 10 * SEC).assert_ok();
        call.join().unwrap().assert_ok();
    });
    let status = server.wait_exit("milliwatt", 5 * SEC);
    assert!(status.success(), "exit status {status}");
    std::thread::sleep(Duration::from_millis(100));
    judge(&sink.finish(), &expect_tone(3)); // the whole tone, despite SIGTERM
    let log = server.log_text();
    assert!(log.contains("reason=tone finished"), "{log}");
}

#[test]
fn media_sigterm_keeps_streaming_until_its_sessions_end() {
    let mut cfg = TestConfig::new();
    cfg.tone_seconds = 3;
    let mut server = Server::start(cfg.clone(), Mode::Split);
    let dir = temp_dir("ops");
    let sink = RtpSink::bind();
    let sc = tone_scenario(&dir, sink.port(), "0 8", 10_000);
    let target = cfg.sip_addr();
    std::thread::scope(|s| {
        let sc = &sc;
        let call = s.spawn(move || sipp_to(target, sc, &[], 15 * SEC));
        wait_rtp(&sink);
        use tonic_health::pb::health_check_response::ServingStatus;
        let endpoint = server.grpc_endpoint();
        for service in ["", "milliwatt.media.v1.Media"] {
            assert_eq!(
                common::grpc::health(&endpoint, service).map_err(|e| e.to_string()),
                Ok(ServingStatus::Serving as i32),
                "gRPC health of {service:?} before the drain"
            );
        }
        // Its load as signaling's pool sees it: one session, ports free, not draining; an
        // allocation succeeds.
        let before = common::grpc::renew(&endpoint, "ops-test").expect("RenewLease");
        assert_eq!(
            (before.total_sessions, before.draining),
            (1, false),
            "{before:?}"
        );
        assert!(before.free_ports > 0, "{before:?}");
        common::grpc::allocate(&endpoint, "ops-test").expect("AllocateSession before the drain");
        server.sigterm("milliwatt-media");
        wait_until("media readiness false while draining", 2 * SEC, || {
            http_get(cfg.media_admin_port, "/readyz").is_some_and(|(st, _)| st == 503)
        });
        // Draining: RenewLease says so, and a new session is refused UNAVAILABLE (signaling
        // places it elsewhere).
        let during = common::grpc::renew(&endpoint, "ops-test").expect("RenewLease");
        assert!(during.draining && during.total_sessions == 1, "{during:?}");
        let refused = common::grpc::allocate(&endpoint, "ops-test").unwrap_err();
        assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused:?}");
        assert!(refused.message().contains("draining"), "{refused:?}");
        for service in ["", "milliwatt.media.v1.Media"] {
            assert_eq!(
                common::grpc::health(&endpoint, service).map_err(|e| e.to_string()),
                Ok(ServingStatus::NotServing as i32),
                "gRPC health of {service:?} while draining"
            );
        }
        call.join().unwrap().assert_ok();
    });
    let status = server.wait_exit("milliwatt-media", 5 * SEC);
    assert!(status.success(), "media exit status {status}");
    std::thread::sleep(Duration::from_millis(100));
    judge(&sink.finish(), &expect_tone(3));
}

#[test]
fn sigterm_past_the_grace_hangs_up_the_calls_with_bye_then_exits_0() {
    let mut cfg = TestConfig::new();
    cfg.tone_seconds = 20;
    cfg.grace_seconds = 1;
    let mut server = Server::start(cfg.clone(), Mode::AllInOne);
    let dir = temp_dir("ops");
    let sink = RtpSink::bind();
    let sc = tone_scenario(&dir, sink.port(), "0", 30_000);
    let target = cfg.sip_addr();
    let (run, signalled) = std::thread::scope(|s| {
        let sc = &sc;
        let call = s.spawn(move || sipp_to(target, sc, &[], 30 * SEC));
        wait_rtp(&sink);
        let signalled = Instant::now();
        server.sigterm("milliwatt");
        (call.join().unwrap(), signalled)
    });
    run.assert_ok(); // it got our BYE and answered it
    let bye_after = run.finished_at.duration_since(signalled);
    assert!(
        bye_after >= Duration::from_millis(900) && bye_after <= 3 * SEC,
        "BYE {bye_after:?} after SIGTERM; expected the 1 s grace"
    );
    let status = server.wait_exit("milliwatt", 5 * SEC);
    assert!(status.success(), "exit status {status}");
    let log = server.log_text();
    assert!(log.contains("drain grace lapsed"), "{log}");
    assert!(log.contains("reason=shutdown"), "{log}");
}
