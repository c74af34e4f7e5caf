//! The media service seen from outside: media unavailable or out of ports (503), a lost
//! signaling instance (leases), and the inspection API (WatchSessions, health, reflection).

mod common;

use std::time::{Duration, Instant};

use common::rtp::{judge, Expect, Law, RtpSink};
use common::{
    bin_path, grpc, reject_scenario, scenario, sipp, temp_dir, tone_scenario, Mode, Server,
    TestConfig,
};
use milliwatt_proto::v1 as pb;
use tokio_stream::StreamExt;

const SEC: Duration = Duration::from_secs(1);

#[test]
fn media_unavailable_gets_503_with_retry_after() {
    let server = Server::start(TestConfig::new(), Mode::SignalingOnly);
    let dir = temp_dir("scn");
    let sc = reject_scenario(&dir, "0", 503);
    let run = sipp(&server, &sc, &[], Duration::from_secs(15));
    run.assert_ok();
    run.assert_503_with_retry_after();
    server.wait_log("media service unavailable", 2 * SEC);
}

#[test]
fn rtp_ports_exhausted_gets_503() {
    let mut cfg = TestConfig::new();
    cfg.rtp_range = (cfg.rtp_range.0, cfg.rtp_range.0 + 2); // one RTP/RTCP pair
    cfg.auto_answer = false;
    let server = Server::start(cfg, Mode::AllInOne);
    let dir = temp_dir("scn");
    let sink = RtpSink::bind();
    let ringing = scenario(
        "uac_cancel.xml",
        &[
            ("RTP_PORT", sink.port().to_string()),
            ("RING_MS", "4000".into()),
        ],
        &dir,
    );
    let reject = reject_scenario(&dir, "0", 503);
    std::thread::scope(|s| {
        let first = s.spawn(|| sipp(&server, &ringing, &[], Duration::from_secs(15)));
        server.wait_log("ringing", 5 * SEC);
        let second = sipp(&server, &reject, &[], Duration::from_secs(10));
        second.assert_ok();
        second.assert_503_with_retry_after();
        first.join().unwrap().assert_ok();
    });
    server.wait_log("no free RTP port", 2 * SEC);
}

#[test]
fn a_lost_signaling_instance_leaks_no_media_session() {
    let mut cfg = TestConfig::new();
    cfg.tone_seconds = 60;
    let mut server = Server::start(cfg, Mode::Split);
    let sink = RtpSink::bind();
    let dir = temp_dir("scn");
    let sc = tone_scenario(&dir, sink.port(), "0", 15000);
    std::thread::scope(|s| {
        let target = server.cfg.sip_addr();
        let sc = &sc;
        let caller = s.spawn(move || common::sipp_to(target, sc, &[], Duration::from_secs(12)));
        let deadline = Instant::now() + 10 * SEC;
        while sink.packets().is_empty() {
            assert!(Instant::now() < deadline, "the call never got RTP");
            std::thread::sleep(Duration::from_millis(50));
        }
        let sessions = grpc::list_sessions(&server.grpc_endpoint());
        assert_eq!(sessions.len(), 1);
        assert_eq!(sessions[0].state, pb::SessionState::Sending as i32);
        // Signaling dies mid-call: nobody renews the lease (6 s in the test config).
        let killed = Instant::now();
        server.kill("milliwatt-signaling");
        let deadline = killed + 12 * SEC;
        while !grpc::list_sessions(&server.grpc_endpoint()).is_empty() {
            assert!(Instant::now() < deadline, "media kept the orphaned session");
            std::thread::sleep(Duration::from_millis(200));
        }
        let freed_after = killed.elapsed();
        assert!(
            freed_after <= 9 * SEC,
            "freed {freed_after:?} after the kill; lease is 6 s"
        );
        let packets = sink.packets().len();
        std::thread::sleep(SEC);
        assert_eq!(
            sink.packets().len(),
            packets,
            "RTP still flowing after the lease expired"
        );
        server.wait_log("reason=\"lease expired\"", 2 * SEC);
        let _ = caller.join();
    });
}

#[test]
fn watch_sessions_streams_a_call_and_health_and_reflection_answer() {
    let mut cfg = TestConfig::new();
    cfg.tone_seconds = 1;
    let server = Server::start(cfg, Mode::AllInOne);
    let rt = grpc::runtime();
    let endpoint = server.grpc_endpoint();
    let mut watch = rt.block_on(async {
        pb::media_client::MediaClient::connect(endpoint.clone())
            .await
            .unwrap()
            .watch_sessions(pb::WatchSessionsRequest {})
            .await
            .unwrap()
            .into_inner()
    });
    let sink = RtpSink::bind();
    let dir = temp_dir("scn");
    let sc = tone_scenario(&dir, sink.port(), "8", 5000);
    sipp(&server, &sc, &[], Duration::from_secs(10)).assert_ok();
    std::thread::sleep(Duration::from_millis(100));
    judge(
        &sink.packets(),
        &Expect {
            payload_type: 8,
            law: Law::A,
            ..Expect::pcmu_440(SEC)
        },
    );
    let events: Vec<pb::SessionEvent> = rt.block_on(async {
        let mut out = Vec::new();
        while out.len() < 3 {
            match tokio::time::timeout(3 * SEC, watch.next()).await {
                Ok(Some(Ok(e))) => out.push(e),
                _ => break,
            }
        }
        out
    });
    let kinds: Vec<i32> = events.iter().map(|e| e.kind).collect();
    use pb::session_event::Kind;
    assert_eq!(
        kinds,
        vec![
            Kind::Allocated as i32,
            Kind::ToneStarted as i32,
            Kind::Released as i32
        ],
        "{events:#?}"
    );
    let started = events[1].session.as_ref().unwrap();
    assert_eq!(started.codec, pb::Codec::Pcma as i32);
    assert_eq!(started.payload_type, 8);
    assert_eq!(started.remote_address, "127.0.0.1");
    assert_eq!(started.remote_port, u32::from(sink.port()));
    assert_eq!(started.frequency_hz, 440);
    assert!(!started.call_id.is_empty());
    let released = events[2].session.as_ref().unwrap();
    assert_eq!(released.call_id, started.call_id);
    assert!(
        (45..=60).contains(&released.packets_sent),
        "{}",
        released.packets_sent
    );
    assert_eq!(events[2].reason, "tone finished");

    rt.block_on(async {
        let channel = tonic::transport::Endpoint::from_shared(endpoint.clone())
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
        let status = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: "milliwatt.media.v1.Media".into(),
            })
            .await
            .unwrap()
            .into_inner()
            .status;
        assert_eq!(
            status,
            tonic_health::pb::health_check_response::ServingStatus::Serving as i32
        );

        use tonic_reflection::pb::v1::{
            server_reflection_client::ServerReflectionClient,
            server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
            ServerReflectionRequest,
        };
        let mut reflection = ServerReflectionClient::new(channel);
        let request = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut responses = reflection
            .server_reflection_info(tokio_stream::iter(vec![request]))
            .await
            .unwrap()
            .into_inner();
        let Some(Ok(r)) = responses.next().await else {
            panic!("no reflection answer")
        };
        let Some(MessageResponse::ListServicesResponse(list)) = r.message_response else {
            panic!("unexpected reflection answer {r:?}")
        };
        let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
        for want in ["milliwatt.media.v1.Media", "grpc.health.v1.Health"] {
            assert!(
                names.iter().any(|n| n == want),
                "{want} not listed: {names:?}"
            );
        }
    });
}

/// `media.grpc_token`: the Media service answers only calls that carry the token (signaling's
/// do, so calls work, and so do milliwatt-ctl's given the configuration); without it or with
/// another one, UNAUTHENTICATED. gRPC health stays open for probes.
#[test]
fn with_a_grpc_token_only_callers_that_send_it_are_served() {
    const TOKEN: &str = "e2e-token-0123456789abcdef";
    let mut cfg = TestConfig::new();
    cfg.answer_delay_ms = 0;
    cfg.tone_seconds = 1;
    cfg.media_extra = format!("grpc_token = \"{TOKEN}\"\n");
    let server = Server::start(cfg.clone(), Mode::Split);
    let endpoint = server.grpc_endpoint();
    // A call: signaling allocated the session and started the tone with the token.
    let sink = RtpSink::bind();
    sipp(
        &server,
        &tone_scenario(&temp_dir("grpc-token"), sink.port(), "0", 3000),
        &[],
        Duration::from_secs(15),
    )
    .assert_ok();
    judge(&sink.finish(), &Expect::pcmu_440(Duration::from_secs(1)));
    let rt = grpc::runtime();
    let list = |token: Option<&str>| {
        rt.block_on(async {
            let mut c = pb::media_client::MediaClient::connect(endpoint.clone())
                .await
                .expect("connecting to media gRPC");
            let mut req = tonic::Request::new(pb::ListSessionsRequest {});
            if let Some(t) = token {
                req.metadata_mut()
                    .insert("authorization", format!("Bearer {t}").parse().unwrap());
            }
            c.list_sessions(req)
                .await
                .map(|r| r.into_inner().sessions.len())
        })
    };
    let e = list(None).unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unauthenticated, "{e:?}");
    assert!(e.message().contains("requires a bearer token"), "{e:?}");
    let e = list(Some("e2e-token-0123456789abcdeX")).unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unauthenticated, "{e:?}");
    assert!(list(Some(TOKEN)).is_ok());
    assert_eq!(
        grpc::health(&endpoint, "").expect("health needs no token"),
        1,
        "SERVING"
    );
    // milliwatt-ctl: with the configuration (token included) it lists; with the endpoint
    // alone it says what is missing.
    let ctl = |with_config: bool| {
        let mut c = std::process::Command::new(bin_path("milliwatt-ctl"));
        if with_config {
            c.arg("--config").arg(server.dir.join("config.toml"));
        }
        c.args(["sessions", "list", "--endpoint", &endpoint])
            .output()
            .expect("running milliwatt-ctl")
    };
    let ok = ctl(true);
    assert!(ok.status.success(), "{ok:?}");
    let refused = ctl(false);
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("media.grpc_token"), "{err}");
}

/// Runs `command` to its end (at most 30 s): its exit status and stderr.
fn run_bounded(
    mut command: std::process::Command,
    what: &str,
) -> (std::process::ExitStatus, String) {
    let child = command
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {what}: {e}"));
    let (status, _, err) = common::output_bounded(child, Duration::from_secs(30), what);
    (status, err)
}

/// `milliwatt-ctl --config FILE [--set K=V]... sessions list`: exit status and stderr.
fn ctl_list(config: &std::path::Path, sets: &[String]) -> (std::process::ExitStatus, String) {
    let mut c = std::process::Command::new(bin_path("milliwatt-ctl"));
    c.arg("--config").arg(config);
    for s in sets {
        c.args(["--set", s]);
    }
    c.args(["sessions", "list"]);
    run_bounded(c, "milliwatt-ctl sessions list")
}

/// Short calls answered at once, with `pki`'s TLS keys and an `https://` endpoint.
fn tls_config(pki: &common::tls::Pki, mutual: bool) -> TestConfig {
    TestConfig {
        answer_delay_ms: 0,
        tone_seconds: 1,
        grpc_scheme: "https",
        media_extra: pki.media_keys(mutual),
        ..TestConfig::new()
    }
}

/// `media.grpc_tls_*` with mutual TLS, signaling and media as separate processes: a call works
/// (signaling reached media over TLS with its client certificate), milliwatt-ctl lists with the
/// configuration's files; a client with no certificate, with one another CA signed, trusting
/// another CA, or speaking plain HTTP/2 gets nothing.
#[test]
fn over_mutual_tls_calls_work_and_clients_without_a_good_certificate_are_refused() {
    let pki = common::tls::Pki::generate(&temp_dir("grpc-pki"));
    let other = common::tls::Pki::generate(&temp_dir("grpc-other-pki"));
    let cfg = tls_config(&pki, true);
    let server = Server::start(cfg.clone(), Mode::Split);
    server.wait_log("the gRPC port speaks TLS only", 5 * SEC);
    assert!(
        server
            .log_text()
            .contains("required (media.grpc_tls_client_ca_file)"),
        "media did not say it requires client certificates"
    );
    let sink = RtpSink::bind();
    sipp(
        &server,
        &tone_scenario(&temp_dir("grpc-tls"), sink.port(), "0", 3000),
        &[],
        Duration::from_secs(15),
    )
    .assert_ok();
    judge(&sink.finish(), &Expect::pcmu_440(Duration::from_secs(1)));

    let config = server.dir.join("config.toml");
    let (status, err) = ctl_list(&config, &[]);
    assert!(status.success(), "milliwatt-ctl over mutual TLS: {err}");
    let refused = |sets: &[String], why: &str| {
        let (status, err) = ctl_list(&config, sets);
        assert_eq!(status.code(), Some(2), "{why}: {err}");
        assert!(
            err.contains(&format!(
                "cannot reach the media service at https://127.0.0.1:{}",
                cfg.grpc_port
            )),
            "{why}: {err}"
        );
        err
    };
    refused(
        &[
            "media.grpc_tls_client_cert_file=".into(),
            "media.grpc_tls_client_key_file=".into(),
        ],
        "no client certificate",
    );
    refused(
        &[
            format!(
                "media.grpc_tls_client_cert_file={}",
                other.file("client.pem")
            ),
            format!(
                "media.grpc_tls_client_key_file={}",
                other.file("client.key")
            ),
        ],
        "a client certificate another CA signed",
    );
    let err = refused(
        &[format!("media.grpc_tls_ca_file={}", other.file("ca.pem"))],
        "trusting another CA",
    );
    assert!(
        err.to_lowercase().contains("certificate"),
        "the refusal should be about media's certificate: {err}"
    );
    // The same configuration with an http:// endpoint is named as a mistake before connecting.
    let (status, err) = ctl_list(
        &config,
        &[format!("media.endpoint=http://127.0.0.1:{}", cfg.grpc_port)],
    );
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(
        err.contains("media.grpc_tls_ca_file") && err.contains("https://"),
        "{err}"
    );
    // Plain HTTP/2 to the TLS port: no gRPC answer.
    let plain = format!("http://127.0.0.1:{}", cfg.grpc_port);
    let rt = grpc::runtime();
    let result = rt.block_on(async {
        let mut c = pb::media_client::MediaClient::connect(plain).await?;
        c.list_sessions(pb::ListSessionsRequest {})
            .await
            .map_err(|e| e.into())
    });
    let result: Result<_, Box<dyn std::error::Error>> = result;
    assert!(result.is_err(), "plain HTTP/2 was served on the TLS port");
}

/// The all-in-one process over TLS (its signaling dials its own media with the CA), and the
/// start-up errors: each names the key, and the file where there is one, and exits non-zero.
#[test]
fn all_in_one_over_tls_and_its_configuration_errors() {
    let pki = common::tls::Pki::generate(&temp_dir("grpc-pki-aio"));
    let other = common::tls::Pki::generate(&temp_dir("grpc-other-pki-aio"));
    let cfg = tls_config(&pki, false);
    {
        let server = Server::start(cfg.clone(), Mode::AllInOne);
        server.wait_log("the gRPC port speaks TLS only", 5 * SEC);
        let sink = RtpSink::bind();
        sipp(
            &server,
            &tone_scenario(&temp_dir("grpc-tls-aio"), sink.port(), "8", 3000),
            &[],
            Duration::from_secs(15),
        )
        .assert_ok();
        judge(
            &sink.finish(),
            &Expect {
                payload_type: 8,
                law: Law::A,
                ..Expect::pcmu_440(Duration::from_secs(1))
            },
        );
    }

    let dir = temp_dir("grpc-tls-errors");
    let cases: Vec<(String, Vec<&str>)> = vec![
        (
            "grpc_tls_cert_file = \"/nonexistent/media.pem\"\n\
             grpc_tls_key_file = \"/nonexistent/media.key\"\n"
                .into(),
            vec!["media.grpc_tls_cert_file", "/nonexistent/media.pem", "cannot read"],
        ),
        (
            format!(
                "grpc_tls_cert_file = \"{}\"\ngrpc_tls_key_file = \"{}\"\n",
                pki.file("media.pem"),
                pki.file("media.pem")
            ),
            vec!["media.grpc_tls_key_file", "no PEM private key"],
        ),
        (
            format!(
                "grpc_tls_cert_file = \"{}\"\ngrpc_tls_key_file = \"{}\"\n",
                pki.file("media.pem"),
                pki.file("media.key")
            ),
            vec!["media.grpc_tls_ca_file", "in one process"],
        ),
        (
            format!("grpc_tls_ca_file = \"{}\"\n", pki.file("ca.pem")),
            vec!["media.grpc_tls_cert_file", "in one process"],
        ),
        (
            format!(
                "grpc_tls_cert_file = \"{}\"\ngrpc_tls_key_file = \"{}\"\ngrpc_tls_ca_file = \"{}\"\n",
                pki.file("media.pem"),
                other.file("media.key"),
                pki.file("ca.pem")
            ),
            vec!["media.grpc_tls_cert_file", "refused"],
        ),
    ];
    for (i, (keys, needles)) in cases.into_iter().enumerate() {
        let bad = TestConfig {
            media_extra: keys,
            ..TestConfig::new()
        };
        let path = dir.join(format!("bad-{i}.toml"));
        std::fs::write(&path, bad.toml()).unwrap();
        let mut c = std::process::Command::new(bin_path("milliwatt"));
        c.arg("--config").arg(&path);
        let (status, err) = run_bounded(c, "milliwatt with a bad TLS configuration");
        assert!(!status.success(), "case {i} started: {err}");
        for n in needles {
            assert!(err.contains(n), "case {i}: {n:?} not in: {err}");
        }
    }
}

/// `media.pacing_catch_up_ms` (60 ms by default): the media process stopped for 40 ms mid-call
/// (SIGSTOP, as a host that deschedules a virtual CPU does) leaves no gap in the caller's stream
/// (the packets owed arrive together, in order, every timestamp step 160); stopped for 200 ms,
/// the packet times older than the window (one packet time plus three) are skipped, the
/// sequence goes on, the timestamp jumps by the skipped time, and media counts them.
#[test]
fn a_short_pacing_stall_is_caught_up_and_a_long_one_skips_only_past_the_window() {
    let mut cfg = TestConfig::new();
    cfg.tone_seconds = 4;
    let server = Server::start(cfg.clone(), Mode::Split);
    let media = server.pid("milliwatt-media");
    // (when the stop began, how long it lasted at most)
    let stop_for = |d: Duration| -> (Instant, Duration) {
        let at = Instant::now();
        common::stop_process(media);
        std::thread::sleep(d);
        common::continue_process(media);
        (at, at.elapsed())
    };
    let sink = RtpSink::bind();
    let dir = temp_dir("scn");
    let sc = tone_scenario(&dir, sink.port(), "0", 10000);
    let (short, long) = std::thread::scope(|s| {
        let target = server.cfg.sip_addr();
        let sc = &sc;
        let caller = s.spawn(move || common::sipp_to(target, sc, &[], Duration::from_secs(15)));
        common::wait_until("the call's first RTP", 5 * SEC, || {
            !sink.packets().is_empty()
        });
        std::thread::sleep(SEC);
        let short = stop_for(Duration::from_millis(40));
        std::thread::sleep(SEC);
        let long = stop_for(Duration::from_millis(200));
        caller.join().unwrap().assert_ok();
        (short, long)
    });
    eprintln!("media stopped for {:?} and {:?}", short.1, long.1);
    let packets = sink.finish();
    let step = |w: &[common::rtp::Packet]| w[1].timestamp().wrapping_sub(w[0].timestamp());
    let jumps: Vec<(usize, u32)> = packets
        .windows(2)
        .enumerate()
        .filter(|(_, w)| step(w) != 160)
        .map(|(i, w)| (i + 1, step(w) / 160 - 1))
        .collect();
    assert!(
        packets
            .windows(2)
            .all(|w| w[1].seq() == w[0].seq().wrapping_add(1)),
        "the sequence has a gap"
    );
    // A jump within a stop or just after it is the stop's; one elsewhere is the shared
    // machine's (a host that deschedules the virtual CPU past the window), tolerated once as
    // `judge` does.
    let within = |(start, took): (Instant, Duration), at: usize| {
        packets[at].at >= start && packets[at].at <= start + took + Duration::from_millis(100)
    };
    let at_short: Vec<_> = jumps.iter().filter(|(i, _)| within(short, *i)).collect();
    let at_long: Vec<_> = jumps.iter().filter(|(i, _)| within(long, *i)).collect();
    assert!(
        at_short.is_empty(),
        "the short stop was caught up: {jumps:?}"
    );
    assert_eq!(at_long.len(), 1, "one skip at the long stop: {jumps:?}");
    assert!(
        jumps.len() <= 2,
        "at most one skip besides the long stop's: {jumps:?}"
    );
    let (at, skipped) = *at_long[0];
    // Woken at least 200 ms late, the pacer sends the last 80 ms of packet times: 6 skipped for
    // a 200 ms stop; more if it woke later.
    let longest = long.1.as_millis() as u32;
    assert!(
        (5..=(longest / 20).saturating_sub(3)).contains(&skipped),
        "{skipped} packet times skipped for a {longest} ms stop"
    );
    // The short stop: a gap in arrival, then the packets owed together. Everything before the
    // long stop is a whole stream (headers, timestamp steps, the tone).
    let before: Vec<_> = packets[..at].to_vec();
    let gap = before
        .windows(2)
        .position(|w| w[1].at >= short.0 && w[1].at - w[0].at >= Duration::from_millis(35))
        .expect("the short stop shows as a gap in arrival");
    assert!(
        before[gap + 2].at - before[gap + 1].at < Duration::from_millis(5),
        "the packets owed after the short stop arrive together"
    );
    judge(
        &before,
        &Expect {
            duration: Duration::from_millis(20 * before.len() as u64),
            ..Expect::pcmu_440(SEC)
        },
    );
    let m = common::metrics(cfg.media_admin_port);
    let counted = m
        .iter()
        .find(|(k, _)| k.starts_with("milliwatt_media_rtp_packets_skipped"))
        .map(|(_, v)| *v);
    let all: u32 = jumps.iter().map(|(_, k)| k).sum();
    assert_eq!(counted, Some(f64::from(all)), "media's count");
}
