//! SIP edge cases with a raw UDP peer on loopback: INVITE retransmissions, a lost ACK (RFC 3261
//! timers), malformed requests; bad configuration and bad gRPC requests. Every SDP here points
//! at the test's own loopback sockets.

mod common;

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use common::rtp::{judge, Expect, Law, RtpSink};
use common::sip::RawSip;
use common::{Mode, Server, TestConfig};
use milliwatt_proto::v1 as pb;

const SEC: Duration = Duration::from_secs(1);

#[test]
fn invite_retransmission_gets_the_last_provisional_again() {
    let mut cfg = TestConfig::new();
    cfg.answer_delay_ms = 2_500;
    cfg.tone_seconds = 1;
    let server = Server::start(cfg.clone(), Mode::AllInOne);
    let sink = RtpSink::bind();
    let c = RawSip::new(cfg.sip_addr());
    let invite = c.invite("retx-1@test", "retx1", sink.port());
    c.send(&invite);
    let first = c.recv_until(2 * SEC, |m| m.status() == Some(180));
    let statuses: Vec<_> = first.iter().filter_map(|m| m.status()).collect();
    assert_eq!(statuses, vec![100, 180], "100 at once, then 180");
    let ringing = first.last().unwrap();
    assert!(
        ringing.header("To").unwrap().contains("tag="),
        "180 without To-tag"
    );
    // Nothing comes on its own (an unreliable 180 is not retransmitted by the UAS)...
    if let Some(m) = c.recv(Duration::from_millis(500)) {
        panic!("unsolicited message before the retransmission: {}", m.text);
    }
    // ...and the retransmitted INVITE is answered with the 180 again, at once.
    let sent = std::time::Instant::now();
    c.send(&invite); // same branch: a retransmission
    let again = c
        .recv(Duration::from_millis(300))
        .expect("no answer to the INVITE retransmission");
    assert_eq!(again.status(), Some(180), "got {}", again.text);
    let delay = again.at.duration_since(sent);
    assert!(
        delay < Duration::from_millis(100),
        "the 180 came {delay:?} after the retransmission: not an answer to it"
    );
    assert_eq!(
        again.header("To"),
        ringing.header("To"),
        "the same 180 (same To-tag)"
    );
    let ok = c
        .recv_until(3 * SEC, |m| m.status() == Some(200))
        .pop()
        .filter(|m| m.status() == Some(200))
        .expect("no 200 OK");
    c.send(&c.ack_for(&ok, "retx-1@test", "retx1ack"));
    // A retransmission of the INVITE arriving after the ACK (one delayed in a queue) belongs
    // to the same transaction, which stays in Accepted for 64*T1 (RFC 6026): absorbed, never
    // a second call (0.9.2 answered it as a new INVITE: 100, then 200 or 503).
    std::thread::sleep(Duration::from_millis(100));
    c.send(&invite);
    let until_bye = c.recv_until(4 * SEC, |m| m.method() == Some("BYE"));
    let (bye, before) = until_bye.split_last().expect("no BYE after the tone");
    assert_eq!(bye.method(), Some("BYE"), "no BYE after the tone");
    assert!(
        before.is_empty(),
        "the INVITE retransmission after the ACK was answered: {:?}",
        before.iter().map(|m| &m.text).collect::<Vec<_>>()
    );
    c.ok_to(bye);
    let via = bye.header("Via").unwrap();
    assert!(via.contains("127.0.0.1"), "BYE Via {via}");
    server.wait_log("reason=tone finished", 2 * SEC);
    let packets = sink.finish();
    judge(
        &packets,
        &Expect {
            payload_type: 0,
            law: Law::Mu,
            frequency: 440.0,
            level_dbm0: -10.0,
            source: None,
            duration: SEC,
        },
    );
}

#[test]
fn lost_ack_retransmits_200_from_t1_to_t2_then_sends_bye() {
    let mut cfg = TestConfig::new();
    cfg.answer_delay_ms = 0;
    cfg.tone_seconds = 5;
    let server = Server::start(cfg.clone(), Mode::AllInOne);
    let sink = RtpSink::bind();
    let c = RawSip::new(cfg.sip_addr());
    c.send(&c.invite("noack-1@test", "noack1", sink.port()));
    let msgs = c.recv_until(40 * SEC, |m| m.method() == Some("BYE"));
    let oks: Vec<_> = msgs
        .iter()
        .filter(|m| m.status() == Some(200) && m.cseq_method() == Some("INVITE"))
        .collect();
    let bye = msgs
        .iter()
        .find(|m| m.method() == Some("BYE"))
        .expect("no BYE after 64*T1 without ACK");
    c.ok_to(bye);
    let t0 = oks[0].at;
    let offsets: Vec<f64> = oks
        .iter()
        .map(|m| m.at.duration_since(t0).as_secs_f64())
        .collect();
    // T1 = 0.5 s doubling to T2 = 4 s: 0, 0.5, 1.5, 3.5, 7.5, 11.5, ... 31.5; give up at 32 s.
    let expected = [0.0, 0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5];
    assert_eq!(offsets.len(), expected.len(), "200 OK sent at {offsets:?}");
    for (got, want) in offsets.iter().zip(expected) {
        assert!(
            (got - want).abs() < 0.25,
            "200 OK sent at {offsets:?}, expected {expected:?}"
        );
    }
    let bye_at = bye.at.duration_since(t0).as_secs_f64();
    assert!(
        (bye_at - 32.0).abs() < 0.6,
        "BYE {bye_at:.2} s after the 200 OK; expected 64*T1 = 32 s"
    );
    server.wait_log("reason=no ACK for 200 OK", 2 * SEC);
    assert!(
        common::grpc::list_sessions(&server.grpc_endpoint()).is_empty(),
        "media session not released after the lost ACK"
    );
    assert!(
        sink.finish().is_empty(),
        "tone sent on a call that was never confirmed"
    );
}

/// Sends `bytes` from a fresh socket and returns the first response, if any, within 1 s.
fn answer_to(server: &Server, bytes: &[u8]) -> Option<u16> {
    let c = RawSip::new(server.cfg.sip_addr());
    c.send_bytes(bytes);
    c.recv_until(SEC, |m| m.status().is_some_and(|s| s >= 200))
        .iter()
        .filter_map(|m| m.status())
        .find(|s| *s >= 200)
}

fn options_answered(server: &Server) {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::SeqCst);
    let c = RawSip::new(server.cfg.sip_addr());
    c.send(&c.request(
        "OPTIONS",
        &format!("alive-{n}@test"),
        &format!("alive{n}"),
        1,
        "tag=x",
        true,
        "",
        "",
    ));
    let r = c.recv(2 * SEC).expect("server stopped answering OPTIONS");
    assert_eq!(r.status(), Some(200), "{}", r.text);
}

#[test]
fn malformed_requests_get_4xx_or_are_dropped_and_counted_never_a_stall() {
    let cfg = TestConfig::new();
    let mut server = Server::start(cfg.clone(), Mode::AllInOne);
    let c = RawSip::new(cfg.sip_addr());
    let sdp = "v=0\r\no=raw 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 30000 RTP/AVP 0\r\n";
    let answered: Vec<(&str, String, u16)> = vec![
        (
            "no From tag",
            c.request("INVITE", "m1@t", "m1", 1, "", true, "application/sdp", sdp),
            400,
        ),
        (
            "no Contact",
            c.request(
                "INVITE",
                "m2@t",
                "m2",
                1,
                "tag=a",
                false,
                "application/sdp",
                sdp,
            ),
            400,
        ),
        (
            "SDP garbage",
            c.request(
                "INVITE",
                "m3@t",
                "m3",
                1,
                "tag=a",
                true,
                "application/sdp",
                "garbage\r\n",
            ),
            400,
        ),
        (
            "SDP bad port",
            c.request(
                "INVITE",
                "m4@t",
                "m4",
                1,
                "tag=a",
                true,
                "application/sdp",
                &sdp.replace("30000", "x"),
            ),
            400,
        ),
        (
            "SDP host name",
            c.request(
                "INVITE",
                "m5@t",
                "m5",
                1,
                "tag=a",
                true,
                "application/sdp",
                &sdp.replace("c=IN IP4 127.0.0.1", "c=IN IP4 host.invalid"),
            ),
            488,
        ),
        (
            "not SDP",
            c.request(
                "INVITE",
                "m6@t",
                "m6",
                1,
                "tag=a",
                true,
                "text/plain",
                "hello",
            ),
            415,
        ),
        // An INVITE without an offer is a valid late offer (our offer in the 200): see
        // e2e_sipp's late_offer test.
        (
            "MESSAGE",
            c.request(
                "MESSAGE",
                "m8@t",
                "m8",
                1,
                "tag=a",
                true,
                "text/plain",
                "hi",
            ),
            405,
        ),
        (
            "REGISTER",
            c.request("REGISTER", "m9@t", "m9", 1, "tag=a", true, "", ""),
            405,
        ),
        (
            "BYE outside a dialog",
            c.request("BYE", "m10@t", "m10", 1, "tag=a", true, "", ""),
            481,
        ),
        (
            "foreign domain",
            c.request(
                "INVITE",
                "m11@t",
                "m11",
                1,
                "tag=a",
                true,
                "application/sdp",
                sdp,
            )
            .replacen(
                "INVITE sip:milliwatt@127.0.0.1",
                "INVITE sip:milliwatt@elsewhere.invalid",
                1,
            ),
            404,
        ),
        (
            "CSeq method differs from the request line (OPTIONS / INVITE)",
            c.request("OPTIONS", "m12@t", "m12", 1, "tag=a", true, "", "")
                .replacen("CSeq: 1 OPTIONS", "CSeq: 1 INVITE", 1),
            400,
        ),
        (
            "CSeq method differs from the request line (INVITE / OPTIONS)",
            c.request(
                "INVITE",
                "m13@t",
                "m13",
                1,
                "tag=a",
                true,
                "application/sdp",
                sdp,
            )
            .replacen("CSeq: 1 INVITE", "CSeq: 1 OPTIONS", 1),
            400,
        ),
        (
            // The SIP stack answers it itself (vendor patch 0012), naming the header.
            "no Call-ID",
            c.request(
                "INVITE",
                "x",
                "d2",
                1,
                "tag=a",
                true,
                "application/sdp",
                sdp,
            )
            .replace("Call-ID: x\r\n", ""),
            400,
        ),
    ];
    for (what, msg, want) in &answered {
        let got = answer_to(&server, msg.as_bytes());
        assert_eq!(got, Some(*want), "{what}: expected {want}");
        options_answered(&server);
    }
    let long_body = c
        .request(
            "INVITE",
            "d3@t",
            "d3",
            1,
            "tag=a",
            true,
            "application/sdp",
            sdp,
        )
        .replace(
            &format!("Content-Length: {}", sdp.len()),
            "Content-Length: 5000",
        );
    let dropped: Vec<(&str, Vec<u8>)> = vec![
        (
            "random bytes",
            (0..400u32).map(|i| (i * 7919 % 251) as u8).collect(),
        ),
        (
            "request line only",
            b"INVITE sip:milliwatt@127.0.0.1 SIP/2.0\r\n\r\n".to_vec(),
        ),
        ("Content-Length beyond the body", long_body.into_bytes()),
        (
            "invalid UTF-8 header",
            b"OPTIONS sip:a@127.0.0.1 SIP/2.0\r\nVia: \xff\xfe\r\n\r\n".to_vec(),
        ),
        ("60 kB of nothing", vec![b'A'; 60_000]),
        (
            // No Via value parses: nothing to route a response by (a panic in ezk before
            // vendor patch 0011, uncounted).
            "Via of another SIP version",
            c.request("OPTIONS", "d4@t", "d4", 1, "tag=a", true, "", "")
                .replacen("SIP/2.0/UDP", "SIP/2.5/UDP", 1)
                .into_bytes(),
        ),
    ];
    for (what, bytes) in &dropped {
        let got = answer_to(&server, bytes);
        assert_eq!(got, None, "{what}: dropped messages get no answer");
        options_answered(&server);
    }
    let statuses = server.terminate();
    assert!(
        statuses.iter().all(|s| s.success()),
        "exit after SIGTERM: {statuses:?}"
    );
    let log = server.log_text();
    let stats = log
        .lines()
        .find(|l| l.contains("signaling stopping"))
        .expect("final statistics line");
    let dropped_count: u64 = stats
        .split("malformed_dropped=")
        .nth(1)
        .and_then(|s| s.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|s| s.parse().ok())
        .expect("malformed_dropped in the statistics");
    assert_eq!(
        dropped_count,
        dropped.len() as u64,
        "every dropped message must be counted: {stats}"
    );
    // 400s: no From tag, no Contact, SDP garbage, SDP bad port, the two CSeq mismatches and
    // no Call-ID.
    assert!(stats.contains("malformed_400=7"), "{stats}");
}

#[test]
fn bad_config_exits_64_naming_the_key() {
    let dir = common::temp_dir("badcfg");
    let cases = [
        (
            "[media]\nrtp_port_range_start = 20000\nrtp_port_range_end = 10000\n",
            "media.rtp_port_range_end",
        ),
        (
            "[behavior]\ntone_frequency = 5000\n",
            "behavior.tone_frequency",
        ),
        (
            "[media]\naudio_sample_rate = 16000\n",
            "media.audio_sample_rate",
        ),
        (
            "[media]\npreferred_codecs = [\"G729\"]\n",
            "preferred_codecs",
        ),
        ("[sip]\nprot = 5060\n", "prot"),
        ("not toml at all [", "config.toml"),
    ];
    let own = std::path::PathBuf::from(env!("CARGO_BIN_EXE_milliwatt"));
    for bin in ["milliwatt", "milliwatt-media", "milliwatt-signaling"] {
        for (text, key) in cases {
            let path = dir.join("config.toml");
            std::fs::write(&path, text).unwrap();
            let out = Command::new(own.with_file_name(bin))
                .arg("--config")
                .arg(&path)
                .output()
                .unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(64), "{bin} {text:?}: {err}");
            assert!(
                err.contains(key),
                "{bin} {text:?}: the message must name {key}: {err}"
            );
        }
    }
    let out = Command::new(&own)
        .env("MILLIWATT_SIP__PORT", "seventy")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("sip.port"));
    // SIP TLS files are read at start: a missing certificate, or a key that is not PEM, stops
    // it naming the key and the file.
    let key = dir.join("not-a-key.pem");
    std::fs::write(&key, "not PEM").unwrap();
    for (cert, key_file, named) in [
        (
            "/nonexistent/cert.pem".to_string(),
            key.display().to_string(),
            "sip.tls_certificate_file: /nonexistent/cert.pem",
        ),
        (
            key.display().to_string(),
            key.display().to_string(),
            "sip.tls_certificate_file",
        ),
    ] {
        let mut cfg = TestConfig::new();
        cfg.sip_extra = format!(
            "tls_certificate_file = \"{cert}\"\ntls_key_file = \"{key_file}\"\ntls_port = {}\n",
            common::free_port()
        );
        let path = dir.join("tls.toml");
        std::fs::write(&path, cfg.toml()).unwrap();
        let child = Command::new(&own)
            .arg("--config")
            .arg(&path)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let (status, _, err) = common::output_bounded(child, Duration::from_secs(10), "milliwatt");
        assert!(!status.success(), "started with {cert}: {err}");
        assert!(err.contains(named), "the message must name {named}: {err}");
    }
}

#[test]
fn bad_grpc_requests_get_precise_statuses() {
    let server = Server::start(TestConfig::new(), Mode::AllInOne);
    let rt = common::grpc::runtime();
    rt.block_on(async {
        let mut c = pb::media_client::MediaClient::connect(server.grpc_endpoint())
            .await
            .unwrap();
        let start = |id: &str, addr: &str| pb::StartToneRequest {
            session_id: id.into(),
            remote_address: addr.into(),
            remote_port: 30_000,
            codec: pb::Codec::Pcmu as i32,
            payload_type: 0,
            frequency_hz: 440,
            level_dbm0: -10.0,
            duration_ms: 1000,
            dtmf_payload_type: 0,
            wait_for_caller_rtp: false,
            ..Default::default()
        };
        let e = c.start_tone(start("nope", "127.0.0.1")).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        assert!(e.message().starts_with("session_id"), "{}", e.message());
        let e = c
            .start_tone(start("00000000000000aa", "127.0.0.1"))
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::NotFound, "{}", e.message());
        let e = c
            .start_tone(start("00000000000000aa", "not-an-ip"))
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        assert!(e.message().starts_with("remote_address"), "{}", e.message());
        // A signal's shape is checked field by field (before the session is looked up).
        let e = c
            .start_tone(pb::StartToneRequest {
                cadence_ms: vec![500, 510],
                ..start("00000000000000aa", "127.0.0.1")
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        assert!(
            e.message()
                .starts_with("cadence_ms: 510 ms is not a whole number"),
            "{}",
            e.message()
        );
        let e = c
            .get_session(pb::GetSessionRequest {
                session_id: "00000000000000aa".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::NotFound);
        let dtmf = |id: &str, digit: &str, duration_ms| pb::ReportDtmfRequest {
            session_id: id.into(),
            digit: digit.into(),
            duration_ms,
        };
        for (req, field) in [
            (dtmf("nope", "1", 0), "session_id"),
            (dtmf("00000000000000aa", "E", 0), "digit"),
            (dtmf("00000000000000aa", "12", 0), "digit"),
            (dtmf("00000000000000aa", "", 0), "digit"),
            (dtmf("00000000000000aa", "1", 60_001), "duration_ms"),
        ] {
            let e = c.report_dtmf(req).await.unwrap_err();
            assert_eq!(e.code(), tonic::Code::InvalidArgument, "{}", e.message());
            assert!(e.message().starts_with(field), "{}", e.message());
        }
        let e = c
            .report_dtmf(dtmf("00000000000000aa", "#", 100))
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::NotFound, "{}", e.message());
        let e = c
            .allocate_session(pb::AllocateSessionRequest {
                call_id: "x".into(),
                owner: String::new(),
                lease_seconds: 0,
                rtcp_mux: false,
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        assert!(e.message().starts_with("owner"), "{}", e.message());
        // A valid allocation, then a bad tone frequency on it.
        let a = c
            .allocate_session(pb::AllocateSessionRequest {
                call_id: "x".into(),
                owner: "test".into(),
                lease_seconds: 0,
                rtcp_mux: false,
            })
            .await
            .unwrap()
            .into_inner();
        let mut bad = start(&a.session_id, "127.0.0.1");
        bad.frequency_hz = 4000;
        let e = c.start_tone(bad).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        assert!(e.message().starts_with("frequency_hz"), "{}", e.message());
        c.release_session(pb::ReleaseSessionRequest {
            session_id: a.session_id,
            reason: "test".into(),
        })
        .await
        .unwrap();
    });
}

/// Final responses read from `s` until `want` arrived or 2 s passed: their status codes.
fn tcp_finals(s: &mut std::net::TcpStream, want: usize) -> Vec<u16> {
    use std::io::Read;
    let deadline = std::time::Instant::now() + 2 * SEC;
    let mut text = String::new();
    let mut buf = [0u8; 4096];
    let finals = |text: &str| -> Vec<u16> {
        text.split("SIP/2.0 ")
            .skip(1)
            .filter_map(|r| r.get(..3)?.parse().ok())
            .filter(|c: &u16| *c >= 200)
            .collect()
    };
    while finals(&text).len() < want && std::time::Instant::now() < deadline {
        s.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => text.push_str(&String::from_utf8_lossy(&buf[..n])),
            Err(_) => {}
        }
    }
    finals(&text)
}

/// RFC 3261 18.3: on a stream, Content-Length frames the message wherever it sits in the head
/// and however the head is cut into reads; a head that ends in a bare LF line end and a CRLF
/// empty line is framed there too. Before vendor patch 0010, a body whose Content-Length had
/// arrived in an earlier read was taken as empty (its bytes began the next request, which got
/// a 400), and a mixed empty line panicked the connection's task (nothing more was answered).
#[test]
fn tcp_framing_survives_split_heads_and_mixed_line_ends() {
    use std::io::Write;
    let cfg = TestConfig::new();
    let server = Server::start(cfg.clone(), Mode::AllInOne);
    let mut s = std::net::TcpStream::connect(cfg.sip_addr()).expect("connect to SIP over TCP");
    s.set_nodelay(true).unwrap();
    let local = s.local_addr().unwrap();
    let options = |n: u32, eol: &str, first: &str| {
        [
            format!("OPTIONS sip:milliwatt@{} SIP/2.0", cfg.sip_addr()),
            first.to_string(),
            format!("Via: SIP/2.0/TCP {local};branch=z9hG4bK-tcpframe{n}"),
            "Max-Forwards: 70".into(),
            format!("From: <sip:caller@{}>;tag=f{n}", local.ip()),
            format!("To: <sip:milliwatt@{}>", cfg.sip_addr().ip()),
            format!("Call-ID: tcpframe-{n}@test"),
            format!("CSeq: {n} OPTIONS"),
        ]
        .join(eol)
    };
    // Content-Length first, the head cut just after it (inside the next line, so that the
    // first read completes the Content-Length line); a 5-byte body.
    let first =
        options(1, "\r\n", "Content-Length: 5") + "\r\nContent-Type: text/plain\r\n\r\nhello";
    let cut = first.find("Content-Length: 5\r\nVia").unwrap() + "Content-Length: 5\r\nVia".len();
    s.write_all(&first.as_bytes()[..cut]).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    s.write_all(&first.as_bytes()[cut..]).unwrap();
    assert_eq!(
        tcp_finals(&mut s, 1),
        vec![200],
        "the split head with its body"
    );
    // The body was framed as the body: the next request starts where it ended.
    let second = options(4, "\r\n", "Content-Length: 0") + "\r\n\r\n";
    s.write_all(second.as_bytes()).unwrap();
    assert_eq!(
        tcp_finals(&mut s, 1),
        vec![200],
        "the request after the body"
    );
    // Bare LF line ends and a CRLF empty line, then a well-formed request behind it.
    let mixed = options(2, "\n", "Content-Length: 0") + "\n\r\n";
    let next = options(3, "\r\n", "Content-Length: 0") + "\r\n\r\n";
    s.write_all(format!("{mixed}{next}").as_bytes()).unwrap();
    assert_eq!(
        tcp_finals(&mut s, 2),
        vec![200, 200],
        "LF CRLF head end and the request after it, on the same connection"
    );
    options_answered(&server);
}
