//! End to end with SIPp (Debian `sip-tester`) on loopback: real calls against the real binaries,
//! the RTP recorded and judged (header rules, 50 packets/s, decoded frequency and level).

mod common;

use std::time::{Duration, Instant};

use common::rtp::{judge, Expect, Law, RtpSink};
use common::{
    answered_media, grpc, reject_scenario, scenario, sipp, temp_dir, tone_scenario, Mode, Server,
    TestConfig,
};

fn wait_no_sessions(server: &Server) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let s = grpc::list_sessions(&server.grpc_endpoint());
        if s.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "media sessions left after the call: {s:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

struct ToneCall {
    mode: Mode,
    transport: &'static str,
    formats: &'static str,
    codecs: &'static str,
    frequency: u32,
    expect_pt: u8,
    law: Law,
}

fn tone_call(t: ToneCall) {
    let mut cfg = TestConfig::new();
    cfg.frequency = t.frequency;
    cfg.codecs = t.codecs;
    cfg.tone_seconds = 3;
    let server = Server::start(cfg.clone(), t.mode);
    let sink = RtpSink::bind();
    let dir = temp_dir("scn");
    let sc = tone_scenario(&dir, sink.port(), t.formats, 10000);
    let transport_flag = if t.transport == "tcp" { "t1" } else { "u1" };
    let run = sipp(
        &server,
        &sc,
        &["-t", transport_flag],
        Duration::from_secs(20),
    );
    std::thread::sleep(Duration::from_millis(200));
    let packets = sink.finish();
    run.assert_ok();
    assert_eq!(
        run.received_statuses()
            .iter()
            .filter(|s| **s == 180)
            .count(),
        1,
        "one 180"
    );
    let media = answered_media(&run.messages);
    assert_eq!(media.ip().to_string(), "127.0.0.1");
    assert!(
        (cfg.rtp_range.0..cfg.rtp_range.1).contains(&media.port())
            && media.port().is_multiple_of(2),
        "answered RTP port {} is not an even port of the range {:?}",
        media.port(),
        cfg.rtp_range
    );
    let report = judge(
        &packets,
        &Expect {
            payload_type: t.expect_pt,
            law: t.law,
            frequency: f64::from(t.frequency),
            level_dbm0: -10.0,
            source: Some(media),
            duration: Duration::from_secs(cfg.tone_seconds),
        },
    );
    // Our BYE comes when the tone time is over, and the RTP stops with it.
    let bye_after = run.finished_at.saturating_duration_since(report.first_at);
    assert!(
        bye_after >= Duration::from_millis(2_900) && bye_after <= Duration::from_millis(3_400),
        "BYE {bye_after:?} after the first RTP packet; tone_duration_seconds = 3"
    );
    assert!(
        report.last_at <= run.finished_at + Duration::from_millis(100),
        "RTP went on after the BYE"
    );
    wait_no_sessions(&server);
    server.wait_log("call ended", Duration::from_secs(2));
    let log = server.log_text();
    for needle in [
        "incoming INVITE",
        "media allocated",
        "tone started",
        "BYE sent",
        "reason=tone finished",
    ] {
        assert!(log.contains(needle), "log lacks {needle:?}:\n{log}");
    }
    eprintln!("{report:?}");
}

#[test]
fn pcmu_call_all_in_one() {
    tone_call(ToneCall {
        mode: Mode::AllInOne,
        transport: "udp",
        formats: "0 8 101",
        codecs: r#"["PCMU", "PCMA"]"#,
        frequency: 440,
        expect_pt: 0,
        law: Law::Mu,
    });
}

#[test]
fn pcma_call_all_in_one() {
    tone_call(ToneCall {
        mode: Mode::AllInOne,
        transport: "udp",
        formats: "8 101",
        codecs: r#"["PCMU", "PCMA"]"#,
        frequency: 440,
        expect_pt: 8,
        law: Law::A,
    });
}

#[test]
fn preferred_codec_order_picks_pcma() {
    tone_call(ToneCall {
        mode: Mode::AllInOne,
        transport: "udp",
        formats: "0 8 101",
        codecs: r#"["PCMA", "PCMU"]"#,
        frequency: 440,
        expect_pt: 8,
        law: Law::A,
    });
}

#[test]
fn tone_of_1004_hz() {
    tone_call(ToneCall {
        mode: Mode::AllInOne,
        transport: "udp",
        formats: "0 101",
        codecs: r#"["PCMU", "PCMA"]"#,
        frequency: 1004,
        expect_pt: 0,
        law: Law::Mu,
    });
}

#[test]
fn tcp_call_all_in_one() {
    tone_call(ToneCall {
        mode: Mode::AllInOne,
        transport: "tcp",
        formats: "0 8 101",
        codecs: r#"["PCMU", "PCMA"]"#,
        frequency: 440,
        expect_pt: 0,
        law: Law::Mu,
    });
}

#[test]
fn pcmu_call_split_processes() {
    tone_call(ToneCall {
        mode: Mode::Split,
        transport: "udp",
        formats: "0 8 101",
        codecs: r#"["PCMU", "PCMA"]"#,
        frequency: 440,
        expect_pt: 0,
        law: Law::Mu,
    });
}

#[test]
fn pcma_tcp_call_split_processes() {
    tone_call(ToneCall {
        mode: Mode::Split,
        transport: "tcp",
        formats: "8",
        codecs: r#"["PCMU", "PCMA"]"#,
        frequency: 440,
        expect_pt: 8,
        law: Law::A,
    });
}

#[test]
fn caller_bye_stops_the_tone_and_releases_media() {
    let server = Server::start(TestConfig::new(), Mode::AllInOne);
    let sink = RtpSink::bind();
    let dir = temp_dir("scn");
    let sc = scenario(
        "uac_caller_bye.xml",
        &[
            ("RTP_PORT", sink.port().to_string()),
            ("HOLD_MS", "1500".into()),
        ],
        &dir,
    );
    let run = sipp(&server, &sc, &[], Duration::from_secs(15));
    std::thread::sleep(Duration::from_millis(300));
    let packets = sink.finish();
    run.assert_ok();
    // 1.5 s of the tone: headers, rate, frequency and level all judged.
    judge(&packets, &Expect::pcmu_440(Duration::from_millis(1500)));
    let last = packets.last().unwrap().at;
    assert!(
        last <= run.finished_at + Duration::from_millis(100),
        "RTP after the caller's BYE"
    );
    wait_no_sessions(&server);
    server.wait_log("hangup_by=\"caller\"", Duration::from_secs(2));
    assert!(server.log_text().contains("reason=caller hung up"));
    assert!(
        !server.log_text().contains("BYE sent"),
        "we must not send BYE after the caller's"
    );
    // Our 200 to the BYE reports the call's figures: 1.5 s of tone sent, nothing received
    // (SIPp sends no RTP here).
    let ok = run
        .messages
        .split("\n-----")
        .filter_map(|m| m.split_once("SIP/2.0 200 OK").map(|(_, rest)| rest))
        .find(|m| m.contains("CSeq: 2 BYE"))
        .unwrap_or_else(|| panic!("no 200 to the BYE in\n{}", run.messages));
    let stat = ok
        .lines()
        .find_map(|l| l.strip_prefix("X-RTP-Stat: "))
        .unwrap_or_else(|| panic!("no X-RTP-Stat in the 200 to the BYE:\n{ok}"));
    let sent: u64 = stat
        .split(',')
        .find_map(|f| f.strip_prefix("PS="))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("PS in {stat}"));
    assert!((70..=85).contains(&sent), "1.5 s of packets sent: {stat}");
    assert!(
        stat.contains(",PR=0,OR=0,PL=0,") && stat.contains(",EN=PCMU,DU=1"),
        "{stat}"
    );
}

#[test]
fn cancel_while_ringing_gets_487_and_releases_media() {
    let mut cfg = TestConfig::new();
    cfg.answer_delay_ms = 5_000;
    let server = Server::start(cfg, Mode::AllInOne);
    let sink = RtpSink::bind();
    let dir = temp_dir("scn");
    let sc = scenario(
        "uac_cancel.xml",
        &[
            ("RTP_PORT", sink.port().to_string()),
            ("RING_MS", "500".into()),
        ],
        &dir,
    );
    let run = sipp(&server, &sc, &[], Duration::from_secs(15));
    let packets = sink.finish();
    run.assert_ok();
    assert!(run.received_response(200, "CANCEL"), "no 200 to the CANCEL");
    assert!(run.received_response(487, "INVITE"), "no 487 to the INVITE");
    assert!(packets.is_empty(), "RTP for a cancelled call");
    wait_no_sessions(&server);
    server.wait_log("reason=caller cancelled", Duration::from_secs(2));
}

#[test]
fn auto_answer_off_rings_until_cancelled() {
    let mut cfg = TestConfig::new();
    cfg.auto_answer = false;
    let server = Server::start(cfg, Mode::AllInOne);
    let sink = RtpSink::bind();
    let dir = temp_dir("scn");
    let sc = scenario(
        "uac_cancel.xml",
        &[
            ("RTP_PORT", sink.port().to_string()),
            ("RING_MS", "3000".into()),
        ],
        &dir,
    );
    let run = sipp(&server, &sc, &[], Duration::from_secs(15));
    run.assert_ok();
    assert!(run.received_response(487, "INVITE"), "no 487 to the INVITE");
    assert!(
        !run.received_response(200, "INVITE"),
        "answered although auto_answer = false"
    );
    assert!(sink.finish().is_empty());
    wait_no_sessions(&server);
}

#[test]
fn options_answers_allow_and_accept() {
    let server = Server::start(TestConfig::new(), Mode::AllInOne);
    let dir = temp_dir("scn");
    let sc = scenario("options.xml", &[], &dir);
    for transport in ["u1", "t1"] {
        let run = sipp(&server, &sc, &["-t", transport], Duration::from_secs(10));
        run.assert_ok();
    }
}

#[test]
fn required_extensions_we_lack_get_420_with_unsupported() {
    let server = Server::start(TestConfig::new(), Mode::AllInOne);
    let dir = temp_dir("scn");
    let sc = scenario("options_require.xml", &[], &dir);
    for transport in ["u1", "t1"] {
        sipp(&server, &sc, &["-t", transport], Duration::from_secs(10)).assert_ok();
    }
    // An INVITE requiring 100rel (supported) and an unknown extension: 420 naming only the
    // unknown one, no 100/180 before it (SIPp fails on any unexpected response), no media
    // session, and the call is logged.
    let sink = RtpSink::bind();
    let sc = scenario(
        "invite_require.xml",
        &[("RTP_PORT", sink.port().to_string())],
        &dir,
    );
    let run = sipp(&server, &sc, &[], Duration::from_secs(10));
    run.assert_ok();
    server.wait_log("unsupported=nonexistent-extension", Duration::from_secs(2));
    let refusal = run
        .received()
        .find(|m| m.contains("SIP/2.0 420"))
        .expect("a 420");
    assert!(
        !refusal.to_ascii_lowercase().contains("unsupported: 100rel"),
        "100rel is supported:\n{refusal}"
    );
    assert!(grpc::list_sessions(&server.grpc_endpoint()).is_empty());
    assert!(sink.finish().is_empty(), "RTP sent for a refused INVITE");
}

#[test]
fn no_common_codec_gets_488() {
    let server = Server::start(TestConfig::new(), Mode::AllInOne);
    let dir = temp_dir("scn");
    let sc = reject_scenario(&dir, "18 9", 488);
    let run = sipp(&server, &sc, &[], Duration::from_secs(10));
    run.assert_ok();
    assert!(grpc::list_sessions(&server.grpc_endpoint()).is_empty());
    server.wait_log("status=488", Duration::from_secs(2));
}

#[test]
fn over_capacity_gets_503_with_retry_after() {
    let mut cfg = TestConfig::new();
    cfg.max_calls = 1;
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
        server.wait_log("ringing", Duration::from_secs(5));
        let second = sipp(&server, &reject, &[], Duration::from_secs(10));
        second.assert_ok();
        second.assert_503_with_retry_after();
        first.join().unwrap().assert_ok();
    });
    wait_no_sessions(&server);
}

#[test]
fn advertised_port_goes_in_contact_and_in_the_via_of_our_bye() {
    // Where callers reach this instance through a port mapping: in-dialog requests must come
    // back to the mapped port, not to sip.port.
    let mut cfg = TestConfig::new();
    cfg.tone_seconds = 1;
    let mapped = common::free_port();
    cfg.sip_extra = format!("advertised_port = {mapped}\n");
    let server = Server::start(cfg.clone(), Mode::AllInOne);
    let sink = RtpSink::bind();
    let dir = temp_dir("scn");
    let run = sipp(
        &server,
        &tone_scenario(&dir, sink.port(), "0", 10_000),
        &[],
        Duration::from_secs(20),
    );
    run.assert_ok();
    let received: Vec<&str> = run.received().collect();
    let ok = received
        .iter()
        .find(|m| m.contains("SIP/2.0 200 OK") && m.contains("CSeq: 1 INVITE"))
        .expect("a 200 OK to the INVITE");
    let contact = ok
        .lines()
        .find(|l| l.trim_start().to_ascii_lowercase().starts_with("contact:"))
        .expect("a Contact in the 200 OK");
    assert!(
        contact.contains(&format!("127.0.0.1:{mapped}")),
        "{contact}"
    );
    let bye = received
        .iter()
        .find(|m| m.contains("BYE sip:"))
        .expect("our BYE");
    let via = bye
        .lines()
        .find(|l| l.trim_start().to_ascii_lowercase().starts_with("via:"))
        .expect("a Via in our BYE");
    assert!(via.contains(&format!("127.0.0.1:{mapped}")), "{via}");
}

/// The SDP answer in the 200 OK to the INVITE with CSeq `cseq`: (session id, version, media line,
/// direction attribute).
fn answer_to(run: &common::SippRun, cseq: u32) -> (String, u64, String, String) {
    let ok = run
        .received()
        .find(|m| m.contains("SIP/2.0 200") && m.contains(&format!("CSeq: {cseq} INVITE")))
        .unwrap_or_else(|| {
            panic!(
                "no 200 OK to the INVITE with CSeq {cseq}:\n{}",
                run.messages
            )
        });
    let line = |prefix: &str| {
        ok.lines()
            .map(str::trim)
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix} line in:\n{ok}"))
            .to_string()
    };
    let o = line("o=");
    let f: Vec<&str> = o.split_whitespace().collect();
    let direction = ["a=sendrecv", "a=sendonly", "a=recvonly", "a=inactive"]
        .into_iter()
        .find(|d| ok.lines().any(|l| l.trim() == *d))
        .unwrap_or("a=sendrecv")
        .to_string();
    (
        f[1].to_string(),
        f[2].parse().unwrap(),
        line("m="),
        direction,
    )
}

#[test]
fn reinvites_hold_resume_change_codec_and_offerless_keep_the_session_and_count_versions() {
    // The offerless re-INVITE's ACK carries the caller's answer (sendonly): applied.
    const PHASE_MS: u64 = 1500;
    let mut cfg = TestConfig::new();
    cfg.tone_seconds = 30; // longer than the scenario: the caller hangs up
    let server = Server::start(cfg.clone(), Mode::AllInOne);
    let sink = RtpSink::bind();
    let dir = temp_dir("scn");
    let sc = scenario(
        "uac_reinvite.xml",
        &[
            ("RTP_PORT", sink.port().to_string()),
            ("PHASE_MS", PHASE_MS.to_string()),
        ],
        &dir,
    );
    let run = sipp(&server, &sc, &[], Duration::from_secs(30));
    std::thread::sleep(Duration::from_millis(200));
    let packets = sink.finish();
    run.assert_ok();

    // RFC 3264 8: one session id; the version counts changes only.
    let answers: Vec<_> = (1..=5).map(|c| answer_to(&run, c)).collect();
    let (sid, v) = (answers[0].0.clone(), answers[0].1);
    for (i, a) in answers.iter().enumerate() {
        assert_eq!(a.0, sid, "answer {}: session id", i + 1);
    }
    let versions: Vec<u64> = answers.iter().map(|a| a.1).collect();
    assert_eq!(
        versions,
        [v, v + 1, v + 2, v + 3, v + 3],
        "versions: hold, resume and codec change each count; the offerless re-INVITE changes nothing"
    );
    assert_eq!(
        answers[1].3, "a=recvonly",
        "hold (sendonly) is answered recvonly"
    );
    assert_eq!(answers[2].3, "a=sendrecv", "resumed");
    assert!(
        answers[3].2.ends_with("RTP/AVP 8"),
        "PCMA only: {}",
        answers[3].2
    );
    assert!(
        answers[4].2.contains("RTP/AVP 8"),
        "the offerless re-INVITE's 200 offers the current media: {}",
        answers[4].2
    );

    // The RTP: PCMU, nothing while held, PCMU again with the same SSRC and the next sequence
    // number (the timestamp advanced over the pause), then PCMA on a new stream.
    let pcmu: Vec<_> = packets
        .iter()
        .filter(|p| p.payload_type() == 0)
        .cloned()
        .collect();
    let pcma: Vec<_> = packets
        .iter()
        .filter(|p| p.payload_type() == 8)
        .cloned()
        .collect();
    assert_eq!(pcmu.len() + pcma.len(), packets.len(), "only PT 0 and 8");
    let held = Duration::from_millis(PHASE_MS);
    let (before, after, gap) = split_at_hold(&pcmu, held);
    let (last, first) = (before.last().unwrap(), &after[0]);
    let ts_packets = f64::from(first.timestamp().wrapping_sub(last.timestamp())) / 160.0;
    let gap_packets = gap.as_secs_f64() / 0.020;
    assert!(
        (ts_packets - gap_packets).abs() <= 3.0,
        "timestamp advanced {ts_packets} packet times over a {gap:?} pause"
    );
    let expect = |law: Law, pt: u8, seg: &[common::rtp::Packet]| Expect {
        payload_type: pt,
        law,
        frequency: 440.0,
        level_dbm0: -10.0,
        source: None,
        duration: seg.last().unwrap().at - seg[0].at,
    };
    for (what, seg) in [("before the hold", before), ("after the resume", after)] {
        let r = judge(seg, &expect(Law::Mu, 0, seg));
        eprintln!("PCMU {what}: {r:?}");
    }
    assert_ne!(
        pcma[0].ssrc(),
        before[0].ssrc(),
        "a new stream for the new codec"
    );
    let r = judge(&pcma, &expect(Law::A, 8, &pcma));
    eprintln!("PCMA after the codec change: {r:?}");
    assert!(
        pcma[0].at > after.last().unwrap().at - Duration::from_millis(100),
        "PCMU ends where PCMA begins"
    );
    // The offerless re-INVITE's ACK answered sendonly (the caller holds): PCMA stops then, a
    // phase after it began, not at the caller's BYE a phase later.
    let pcma_span = pcma.last().unwrap().at - pcma[0].at;
    assert!(
        pcma_span >= held - Duration::from_millis(300)
            && pcma_span <= held + Duration::from_millis(400),
        "PCMA for {pcma_span:?}: the answer in the ACK stopped it after {held:?}"
    );
}

/// One stream held for about `held` and resumed: split at its longest pause, which must last
/// `held` (-300/+500 ms), with one SSRC on both sides and the next sequence number after it.
/// Returns the packets before and after the pause, and the pause.
fn split_at_hold(
    packets: &[common::rtp::Packet],
    held: Duration,
) -> (&[common::rtp::Packet], &[common::rtp::Packet], Duration) {
    let (gap_at, gap) = packets
        .windows(2)
        .enumerate()
        .map(|(i, w)| (i + 1, w[1].at - w[0].at))
        .max_by_key(|(_, g)| *g)
        .expect("packets");
    assert!(
        gap >= held - Duration::from_millis(300) && gap <= held + Duration::from_millis(500),
        "nothing sent for {gap:?} while held ({held:?})"
    );
    let (before, after) = packets.split_at(gap_at);
    assert!(
        packets.iter().all(|p| p.ssrc() == before[0].ssrc()),
        "one SSRC across the hold"
    );
    assert_eq!(
        after[0].seq(),
        before.last().unwrap().seq().wrapping_add(1),
        "sequence goes on"
    );
    (before, after, gap)
}

/// UPDATE inside a call (`tests/sipp/uac_update.xml`, RFC 3311): an offer is answered in the
/// 200 like a re-INVITE's (same `o=` session id, version counted per change): hold stops the
/// tone, resume continues the same stream; a body-less UPDATE gets 200 without SDP and changes
/// nothing; an offer without a common codec gets 488 and the tone goes on to the caller's BYE.
#[test]
fn update_holds_resumes_refreshes_and_refuses_like_a_reinvite() {
    const PHASE_MS: u64 = 1000;
    let mut cfg = TestConfig::new();
    cfg.tone_seconds = 30;
    let server = Server::start(cfg.clone(), Mode::AllInOne);
    let sink = RtpSink::bind();
    let dir = temp_dir("update");
    let sc = scenario(
        "uac_update.xml",
        &[
            ("RTP_PORT", sink.port().to_string()),
            ("PHASE_MS", PHASE_MS.to_string()),
        ],
        &dir,
    );
    let run = sipp(&server, &sc, &[], Duration::from_secs(30));
    std::thread::sleep(Duration::from_millis(200));
    let packets = sink.finish();
    run.assert_ok();

    let (sid, v, _, _) = answer_to(&run, 1);
    let reply = |status: &str, cseq: u32| {
        run.received()
            .find(|m| {
                m.contains(&format!("SIP/2.0 {status}"))
                    && m.contains(&format!("CSeq: {cseq} UPDATE"))
            })
            .unwrap_or_else(|| panic!("no {status} to UPDATE {cseq}:\n{}", run.messages))
            .to_string()
    };
    let o_line = |m: &str| {
        m.lines()
            .map(str::trim)
            .find(|l| l.starts_with("o="))
            .unwrap_or_else(|| panic!("no o= in\n{m}"))
            .to_string()
    };
    let hold = reply("200", 2);
    assert!(
        hold.contains("a=recvonly"),
        "hold answered recvonly:\n{hold}"
    );
    assert!(
        o_line(&hold).contains(&format!(" {sid} {} ", v + 1)),
        "same session id, version + 1:\n{hold}"
    );
    let resume = reply("200", 3);
    assert!(resume.contains("a=sendrecv"), "{resume}");
    assert!(
        o_line(&resume).contains(&format!(" {sid} {} ", v + 2)),
        "{resume}"
    );
    let refresh = reply("200", 4);
    assert!(
        !refresh.contains("v=0") && refresh.contains("Content-Length: 0"),
        "a body-less UPDATE gets a body-less 200:\n{refresh}"
    );
    let refused = reply("488", 5);
    assert!(refused.contains("Warning: 399 milliwatt"), "{refused}");

    // The RTP: one stream, a pause while held, then on (next sequence number) to the BYE.
    let held = Duration::from_millis(PHASE_MS);
    let (before, after, _) = split_at_hold(&packets, held);
    // Resumed, then the refresh and the refused offer: three phases of tone to the BYE.
    let on = after.last().unwrap().at - after[0].at;
    assert!(
        on >= 3 * held - Duration::from_millis(300),
        "the tone went on through the refresh and the 488: {on:?}"
    );
    for seg in [before, after] {
        let mut expect = Expect::pcmu_440(seg.last().unwrap().at - seg[0].at);
        expect.source = None;
        judge(seg, &expect);
    }
    server.wait_log("UPDATE rejected; the call goes on", Duration::from_secs(2));
}

/// DTMF by SIP INFO (`tests/sipp/uac_info_dtmf.xml`): each digit is answered 200 and reported
/// like an RFC 4733 one (the media session's digits while the call is up, the call's `dtmf=` when
/// it ends); a text/plain body gets 415 with Accept, a Signal that is no digit 400 with the
/// reason, an empty INFO 200; the tone plays through, and an INFO outside a call gets 481 (in
/// `tests/e2e_torture.rs`).
#[test]
fn dtmf_by_sip_info_is_reported_and_other_bodies_are_refused() {
    let mut cfg = TestConfig::new();
    cfg.tone_seconds = 3;
    cfg.answer_delay_ms = 0;
    let server = Server::start(cfg.clone(), Mode::AllInOne);
    let sink = RtpSink::bind();
    let dir = temp_dir("info");
    let sc = scenario(
        "uac_info_dtmf.xml",
        &[
            ("RTP_PORT", sink.port().to_string()),
            ("GAP_MS", "150".into()),
            ("BYE_TIMEOUT_MS", "10000".into()),
        ],
        &dir,
    );
    let (run, digits) = std::thread::scope(|s| {
        let call = s.spawn(|| sipp(&server, &sc, &[], Duration::from_secs(20)));
        // The media session's digits while the call is up (all three sent within a second).
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut digits = String::new();
        while Instant::now() < deadline && digits != "1#5" {
            std::thread::sleep(Duration::from_millis(100));
            if let Some(q) = grpc::list_sessions(&server.grpc_endpoint())
                .into_iter()
                .find_map(|s| s.quality)
            {
                digits = q.dtmf_digits;
            }
        }
        (call.join().unwrap(), digits)
    });
    std::thread::sleep(Duration::from_millis(200));
    let packets = sink.finish();
    run.assert_ok();
    assert_eq!(digits, "1#5", "the media session's DTMF digits");
    let refused = |code: &str| {
        run.messages
            .split("SIP/2.0 ")
            .find(|m| m.starts_with(code))
            .unwrap_or_else(|| panic!("no {code} in\n{}", run.messages))
            .to_string()
    };
    let r415 = refused("415");
    assert!(
        r415.contains("Accept: application/dtmf-relay, application/dtmf"),
        "{r415}"
    );
    let r400 = refused("400");
    assert!(r400.contains("Signal 'X' is not a DTMF digit"), "{r400}");
    judge(&packets, &Expect::pcmu_440(Duration::from_secs(3)));
    server.wait_log("dtmf=1#5", Duration::from_secs(3));
    let log = server.log_text();
    assert_eq!(log.matches("DTMF digit by SIP INFO").count(), 3, "{log}");
    let m = common::metrics(cfg.admin_port);
    assert_eq!(
        m.get("milliwatt_sip_responses_total{code=\"415\"}"),
        Some(&1.0),
        "{m:?}"
    );
    assert_eq!(
        m.get("milliwatt_sip_responses_total{code=\"400\"}"),
        Some(&1.0),
        "{m:?}"
    );
}

#[test]
fn ipv6_call_sip_and_rtp_on_loopback() {
    // SIP over UDP on [::1], the SDP answer `c=IN IP6 ::1`, RTP from media on ::1.
    let mut cfg = TestConfig::new();
    cfg.ipv6 = true;
    cfg.tone_seconds = 2;
    let server = Server::start(cfg.clone(), Mode::AllInOne);
    let sink = RtpSink::bind_on("[::1]:0".parse().unwrap());
    let dir = temp_dir("scn");
    let run = common::sipp_from(
        "::1",
        cfg.sip_addr(),
        &tone_scenario(&dir, sink.port(), "0", 10_000),
        &[],
        Duration::from_secs(20),
    );
    std::thread::sleep(Duration::from_millis(200));
    let packets = sink.finish();
    run.assert_ok();
    let media = answered_media(&run.messages);
    assert_eq!(media.ip().to_string(), "::1", "c=IN IP6 ::1");
    assert!(
        run.messages.contains("Contact: <sip:[::1]:"),
        "our Contact names [::1]:\n{}",
        run.messages
    );
    let mut expect = Expect::pcmu_440(Duration::from_secs(2));
    expect.source = Some(media);
    let report = judge(&packets, &expect);
    eprintln!("{report:?}");
    server.wait_log("reason=tone finished", Duration::from_secs(3));
}

#[test]
fn late_offer_is_answered_in_the_ack_and_a_missing_answer_ends_the_call() {
    let mut cfg = TestConfig::new();
    cfg.tone_seconds = 2;
    let server = Server::start(cfg.clone(), Mode::AllInOne);
    let dir = temp_dir("scn");
    // Our offer in the 200 lists both laws and telephone-event; the ACK's answer picks PCMA.
    let sink = RtpSink::bind();
    let sc = scenario(
        "uac_late_offer.xml",
        &[
            ("RTP_PORT", sink.port().to_string()),
            ("BYE_TIMEOUT_MS", "10000".into()),
        ],
        &dir,
    );
    let run = sipp(&server, &sc, &[], Duration::from_secs(20));
    std::thread::sleep(Duration::from_millis(200));
    let packets = sink.finish();
    run.assert_ok();
    let (_, _, m, direction) = answer_to(&run, 1);
    assert!(m.ends_with("RTP/AVP 0 8 101"), "our offer: {m}");
    assert_eq!(direction, "a=sendrecv");
    let media = answered_media(&run.messages);
    let report = judge(
        &packets,
        &Expect {
            payload_type: 8,
            law: Law::A,
            frequency: 440.0,
            level_dbm0: -10.0,
            source: Some(media),
            duration: Duration::from_secs(2),
        },
    );
    eprintln!("late offer, PCMA answered in the ACK: {report:?}");
    server.wait_log("reason=tone finished", Duration::from_secs(3));

    // No answer in the ACK: BYE at once, nothing sent.
    let sink = RtpSink::bind();
    let sc = scenario(
        "uac_late_offer_no_answer.xml",
        &[("RTP_PORT", sink.port().to_string())],
        &dir,
    );
    let started = Instant::now();
    let run = sipp(&server, &sc, &[], Duration::from_secs(20));
    run.assert_ok();
    assert!(
        run.elapsed < Duration::from_secs(3),
        "our BYE came {:?} after the INVITE",
        started.elapsed()
    );
    server.wait_log(
        "reason=no usable SDP answer in the ACK",
        Duration::from_secs(3),
    );
    std::thread::sleep(Duration::from_millis(200));
    assert!(sink.finish().is_empty(), "no RTP without an answer");
}

/// Sets the Request-URI of a scenario: user part and parameters.
fn dial(sc: &std::path::Path, user: &str, params: &str) {
    let text = std::fs::read_to_string(sc).unwrap();
    let text = text.replace(
        "INVITE sip:milliwatt@[remote_ip]:[remote_port] SIP/2.0",
        &format!("INVITE sip:{user}@[remote_ip]:[remote_port]{params} SIP/2.0"),
    );
    std::fs::write(sc, text.replace("sip:milliwatt@", &format!("sip:{user}@"))).unwrap();
}

#[test]
fn the_dialed_number_picks_its_test_plan() {
    // [[behavior.plans]]: 1004 -> 1004 Hz at 0 dBm0 for 2 s; "tone-*" -> 1000 Hz at -3 dBm0;
    // any other number the default 440 Hz at -10 dBm0.
    let mut cfg = TestConfig::new();
    cfg.tone_seconds = 2;
    cfg.extra = "[[behavior.plans]]\nnumber = \"1004\"\nfrequency = 1004\nlevel_dbm0 = 0.0\n\
                 [[behavior.plans]]\nnumber = \"tone-*\"\nfrequency = 1000\nlevel_dbm0 = -3.0\n\
                 duration_seconds = 3\n\
                 [[behavior.plans]]\nnumber = \"tone\"\nuri_parameters = true\n"
        .into();
    let server = Server::start(cfg.clone(), Mode::AllInOne);
    for (user, params, frequency, level, seconds) in [
        ("1004", "", 1004.0, 0.0, 2),
        ("tone-1000", "", 1000.0, -3.0, 3),
        ("2000", "", 440.0, -10.0, 2),
        // A plan that takes URI parameters; the same parameters elsewhere are not read.
        ("tone", ";freq=1000;level=-3;duration=3", 1000.0, -3.0, 3),
        ("1004", ";freq=1000", 1004.0, 0.0, 2),
    ] {
        let sink = RtpSink::bind();
        let dir = temp_dir("scn");
        let sc = tone_scenario(&dir, sink.port(), "0", 10_000);
        dial(&sc, user, params);
        let run = sipp(&server, &sc, &[], Duration::from_secs(20));
        std::thread::sleep(Duration::from_millis(200));
        let packets = sink.finish();
        run.assert_ok();
        let report = judge(
            &packets,
            &Expect {
                payload_type: 0,
                law: Law::Mu,
                frequency,
                level_dbm0: level,
                source: None,
                duration: Duration::from_secs(seconds),
            },
        );
        eprintln!("dialed {user}{params}: {report:?}");
    }
    // Bad parameters: 488 out of range, 400 not a number, each naming the parameter.
    for (params, status, says) in [
        (";freq=5000", 488, "freq=5000 is out of range 1..3999 Hz"),
        // (the Warning's quoted text carries the value in single quotes)
        (";level=loud", 400, "level='loud' is not a number"),
    ] {
        let dir = temp_dir("scn");
        let sc = reject_scenario(&dir, "0", status);
        dial(&sc, "tone", params);
        let run = sipp(&server, &sc, &[], Duration::from_secs(10));
        run.assert_ok();
        let refusal = run
            .received()
            .find(|m| m.contains(&format!("SIP/2.0 {status}")))
            .unwrap_or_else(|| panic!("no {status}:\n{}", run.messages));
        assert!(
            refusal.contains(says),
            "{params}: the Warning says why:\n{refusal}"
        );
    }
    let log = server.log_text();
    for plan in ["plan=\"1004\"", "plan=\"tone-*\"", "plan=\"default\""] {
        assert!(log.contains(plan), "the log names {plan}:\n{log}");
    }
}

/// The signal at each packet: its RTP timestamp's offset from the stream's first (in samples),
/// its arrival, and its decoded audio.
fn packet_audio(packets: &[common::rtp::Packet]) -> Vec<(u32, Instant, Vec<f64>)> {
    let ts0 = packets[0].timestamp();
    packets
        .iter()
        .map(|p| {
            let audio = p.data[12..].iter().map(|&b| common::rtp::decode_mu(b));
            (p.timestamp().wrapping_sub(ts0), p.at, audio.collect())
        })
        .collect()
}

#[test]
fn dual_tones_cadences_and_sweeps_are_plans() {
    // Plans: North American dial tone (350 + 440 Hz at -13 dBm0 each); a UK-style double ring
    // (400 + 450 Hz, 400 ms on, 200 off, 400 on, 2000 off); a 300 -> 3300 Hz sweep in 2 s.
    let mut cfg = TestConfig::new();
    cfg.tone_seconds = 4;
    cfg.extra = "[[behavior.plans]]\nnumber = \"dial\"\nfrequency = 350\nlevel_dbm0 = -13.0\n\
                 second_frequency = 440\nduration_seconds = 2\n\
                 [[behavior.plans]]\nnumber = \"ring\"\nfrequency = 400\nlevel_dbm0 = -19.0\n\
                 second_frequency = 450\ncadence_ms = [400, 200, 400, 2000]\n\
                 [[behavior.plans]]\nnumber = \"sweep\"\nfrequency = 300\n\
                 sweep_to_frequency = 3300\nsweep_ms = 2000\n"
        .into();
    let server = Server::start(cfg.clone(), Mode::AllInOne);
    let call = |user: &str, seconds: u64| {
        let sink = RtpSink::bind();
        let dir = temp_dir("scn");
        let sc = tone_scenario(&dir, sink.port(), "0", 10_000);
        dial(&sc, user, "");
        let run = sipp(&server, &sc, &[], Duration::from_secs(20));
        std::thread::sleep(Duration::from_millis(200));
        let packets = sink.finish();
        run.assert_ok();
        // Headers, 50 packets/s, the packet count; the level and frequency checks below.
        let (audio, report) = common::rtp::judge_stream(
            &packets,
            &Expect {
                duration: Duration::from_secs(seconds),
                ..Expect::pcmu_440(Duration::ZERO)
            },
        );
        eprintln!("{user}: {report:?}");
        (packets, audio)
    };

    // Dial tone: both frequencies at -13 dBm0, nothing else.
    let (_, audio) = call("dial", 2);
    for f in [350.0, 440.0] {
        let l = common::rtp::component_dbm0(&audio, f, Law::Mu);
        assert!((l + 13.0).abs() <= 0.5, "dial tone: {f} Hz at {l:.2} dBm0");
    }
    for f in [395.0, 1000.0] {
        let l = common::rtp::component_dbm0(&audio, f, Law::Mu);
        assert!(l < -40.0, "dial tone: {f} Hz at {l:.2} dBm0");
    }

    // The cadence: every packet on or off as the schedule says at its timestamp (a skipped
    // packet time keeps the schedule), both tones in each "on" burst, and every burst's start
    // arriving within 20 ms of its time.
    let (packets, _) = call("ring", 4);
    let cycle = 3000 * 8;
    let on_at = |pos: u32| {
        let p = pos % cycle;
        p < 400 * 8 || (600 * 8..1000 * 8).contains(&p)
    };
    let per = packet_audio(&packets);
    let offset_of = |ts: u32, at: Instant| {
        at.duration_since(per[0].1).as_secs_f64() * 1000.0 - f64::from(ts) / 8.0
    };
    let mut offsets: Vec<f64> = per.iter().map(|(ts, at, _)| offset_of(*ts, *at)).collect();
    offsets.sort_by(f64::total_cmp);
    let median = offsets[offsets.len() / 2];
    let mut bursts = 0;
    let mut burst_audio: Vec<f64> = Vec::new();
    for (i, (ts, at, audio)) in per.iter().enumerate() {
        let loud = audio.iter().any(|v| *v != 0.0);
        assert_eq!(
            loud,
            on_at(*ts),
            "packet {i} (at {} ms of the signal) should be {}",
            ts / 8,
            if on_at(*ts) { "on" } else { "silence" }
        );
        if loud {
            burst_audio.extend(audio);
        }
        if loud && (i == 0 || !on_at(per[i - 1].0)) {
            bursts += 1;
            let late = offset_of(*ts, *at) - median;
            assert!(
                late.abs() <= 20.0,
                "the burst at {} ms of the signal came {late:.1} ms off its time",
                ts / 8
            );
        } else if !loud && on_at(per[i - 1].0) {
            let late = offset_of(*ts, *at) - median;
            assert!(
                late.abs() <= 20.0,
                "the silence at {} ms of the signal came {late:.1} ms off its time",
                ts / 8
            );
        }
    }
    assert!(bursts >= 4, "{bursts} bursts in 4 s of double ring");
    for f in [400.0, 450.0] {
        let l = common::rtp::component_dbm0(&burst_audio, f, Law::Mu);
        assert!((l + 19.0).abs() <= 0.5, "ring: {f} Hz at {l:.2} dBm0");
    }

    // The sweep: each 100 ms window's frequency (zero crossings) is the sweep's at the window's
    // middle, twice round.
    let (packets, _) = call("sweep", 4);
    let per = packet_audio(&packets);
    let mut windows = 0;
    for w in per.windows(5) {
        let (start, end) = (w[0].0, w[4].0);
        // Whole windows of one sweep, without a skipped packet time.
        if start % (5 * 160) != 0 || end - start != 4 * 160 || start % 16_000 > 16_000 - 800 {
            continue;
        }
        let x: Vec<f64> = w.iter().flat_map(|p| p.2.iter().copied()).collect();
        let got = common::rtp::zero_crossing_frequency(&x, 8000.0);
        let middle = f64::from(start % 16_000 + 400) / 16_000.0;
        let expected = 300.0 + 3000.0 * middle;
        assert!(
            (got - expected).abs() <= 25.0,
            "sweep at {} ms: {got:.0} Hz, expected {expected:.0}",
            start / 8
        );
        windows += 1;
    }
    assert!(windows >= 35, "only {windows} whole windows judged");
    let log = server.log_text();
    for shape in [
        "shape=+440 Hz at -13.0 dBm0",
        "shape=+450 Hz at -19.0 dBm0, cadence 400/200/400/2000 ms",
        "shape=sweep to 3300 Hz in 2000 ms",
    ] {
        assert!(log.contains(shape), "the log names {shape}:\n{log}");
    }
}

#[test]
fn session_timers_end_unrefreshed_calls_and_we_refresh_when_asked() {
    // RFC 4028 with a 90 s interval (the smallest allowed), two calls at once: (a) the caller
    // refreshes once by UPDATE 2 s after the ACK and then stops: our BYE must come 60 s after
    // that refresh (90 - min(32, 30)); (b) the caller makes us the refresher: our UPDATE must
    // come 45 s after the answer, and the caller hangs up 1 s after answering it. Both tones
    // judged, their lengths within 500 ms of those times; (c) as (b) by re-INVITE, the caller
    // not allowing UPDATE. And an interval below 90 s gets 422 with Min-SE: 90.
    let mut cfg = TestConfig::new();
    cfg.tone_seconds = 120;
    let server = Server::start(cfg.clone(), Mode::AllInOne);
    let dir = temp_dir("scn");

    let expired_sink = RtpSink::bind();
    let expired = scenario(
        "uac_session_timer.xml",
        &[
            ("RTP_PORT", expired_sink.port().to_string()),
            ("REFRESH_MS", "2000".into()),
            ("BYE_TIMEOUT_MS", "75000".into()),
        ],
        &dir,
    );
    let refreshed_sink = RtpSink::bind();
    let refreshed = scenario(
        "uac_session_timer_uas.xml",
        &[
            ("RTP_PORT", refreshed_sink.port().to_string()),
            ("REFRESH_TIMEOUT_MS", "60000".into()),
            ("HANGUP_MS", "1000".into()),
        ],
        &dir,
    );
    // (c) as (b), the caller not allowing UPDATE: our refresh is a re-INVITE.
    let reinvited_sink = RtpSink::bind();
    let reinvited = scenario(
        "uac_session_timer_reinvite.xml",
        &[
            ("RTP_PORT", reinvited_sink.port().to_string()),
            ("REFRESH_TIMEOUT_MS", "60000".into()),
            ("HANGUP_MS", "1000".into()),
        ],
        &dir,
    );
    let target = cfg.sip_addr();
    let runs: Vec<_> = [expired, refreshed, reinvited]
        .into_iter()
        .map(|sc| {
            std::thread::spawn(move || common::sipp_to(target, &sc, &[], Duration::from_secs(90)))
        })
        .collect();

    // Meanwhile: 422 for an interval below 90 s.
    let sc = reject_scenario(&dir, "0", 422);
    let text = std::fs::read_to_string(&sc).unwrap().replacen(
        "Max-Forwards: 70\n",
        "Max-Forwards: 70\n      Supported: timer\n      Session-Expires: 60\n",
        1,
    );
    assert!(text.contains("Session-Expires: 60"), "{text}");
    std::fs::write(&sc, text).unwrap();
    let run = sipp(&server, &sc, &[], Duration::from_secs(10));
    run.assert_ok();
    let refusal = run
        .received()
        .find(|m| m.contains("SIP/2.0 422"))
        .unwrap_or_else(|| panic!("no 422:\n{}", run.messages));
    assert!(refusal.contains("Min-SE: 90"), "{refusal}");
    assert!(refusal.contains("below our Min-SE 90"), "{refusal}");

    for run in runs {
        run.join().unwrap().assert_ok();
    }
    std::thread::sleep(Duration::from_millis(200));
    for (sink, seconds, what) in [
        (
            expired_sink,
            62.0,
            "ended by the session timer 60 s after the refresh",
        ),
        (
            refreshed_sink,
            46.0,
            "refreshed by our UPDATE at 45 s, hung up 1 s later",
        ),
        (
            reinvited_sink,
            46.0,
            "refreshed by our re-INVITE at 45 s, hung up 1 s later",
        ),
    ] {
        let packets = sink.finish();
        let report = judge(
            &packets,
            &Expect::pcmu_440(Duration::from_secs_f64(seconds)),
        );
        let span = report.span.as_secs_f64();
        eprintln!("{what}: {report:?}");
        assert!(
            (span - seconds).abs() <= 0.5,
            "{what}: the tone lasted {span:.3} s, expected {seconds} s"
        );
    }
    server.wait_log(
        "reason=session timer expired (no refresh within Session-Expires)",
        Duration::from_secs(1),
    );
    server.wait_log("session refreshed method=UPDATE", Duration::from_secs(1));
    server.wait_log("session refreshed method=INVITE", Duration::from_secs(1));
}

#[test]
fn reliable_provisional_responses_wait_for_the_prack_and_without_one_the_call_gets_500() {
    // RFC 3262: a caller requiring 100rel gets its 180 (or an early-media plan's 183 with SDP)
    // with Require: 100rel and RSeq, its PRACK 200, then the answer and the whole tone. A
    // caller that never PRACKs (run alongside, 32 s) gets the 180 retransmitted from T1
    // doubling and, 64*T1 after it, 500; no tone, no media session left.
    let mut cfg = TestConfig::new();
    cfg.tone_seconds = 2;
    cfg.extra = "[[behavior.plans]]\nnumber = \"early\"\nearly_media = true\n".into();
    let server = Server::start(cfg.clone(), Mode::AllInOne);
    let dir = temp_dir("scn");
    let never_sink = RtpSink::bind();
    let never = scenario(
        "uac_prack_never.xml",
        &[("RTP_PORT", never_sink.port().to_string())],
        &dir,
    );
    let target = cfg.sip_addr();
    let never_run =
        std::thread::spawn(move || common::sipp_to(target, &never, &[], Duration::from_secs(60)));
    for (number, provisional, seconds) in [("milliwatt", "180", 2.0), ("early", "183", 2.3)] {
        let sink = RtpSink::bind();
        let sc = scenario(
            "uac_prack.xml",
            &[
                ("RTP_PORT", sink.port().to_string()),
                ("NUMBER", number.into()),
                ("PROVISIONAL", provisional.into()),
                ("BYE_TIMEOUT_MS", "10000".into()),
            ],
            &dir,
        );
        let run = sipp(&server, &sc, &[], Duration::from_secs(20));
        std::thread::sleep(Duration::from_millis(200));
        let packets = sink.finish();
        run.assert_ok();
        let report = judge(
            &packets,
            &Expect::pcmu_440(Duration::from_secs_f64(seconds)),
        );
        eprintln!("{number} with PRACK: {report:?}");
        let reliable = run
            .received()
            .find(|m| m.contains(&format!("SIP/2.0 {provisional}")))
            .expect("the provisional response");
        assert!(reliable.contains("RSeq:"), "{reliable}");
    }
    let run = never_run.join().unwrap();
    run.assert_ok();
    let sent_180 = run
        .received_statuses()
        .iter()
        .filter(|s| **s == 180)
        .count();
    // Sent at 0, 0.5, 1.5, 3.5, 7.5, 15.5 and 31.5 s.
    assert!(
        (6..=8).contains(&sent_180),
        "{sent_180} copies of the reliable 180 in 32 s:\n{}",
        run.messages
    );
    let secs = run.elapsed.as_secs_f64();
    assert!(
        (31.0..36.0).contains(&secs),
        "the 500 came {secs:.1} s after the INVITE (64*T1 = 32 s)"
    );
    server.wait_log(
        "no PRACK for our reliable 180 Ringing",
        Duration::from_secs(1),
    );
    assert!(
        never_sink.finish().is_empty(),
        "RTP for a call never answered"
    );
    wait_no_sessions(&server);
}

#[test]
fn the_echo_plan_sends_the_callers_rtp_straight_back() {
    // A plan with echo = true: what the caller sends (here 100 packets of a 1000 Hz PCMU signal,
    // paced at 20 ms) comes straight back, each packet once, byte for byte, in a stream of ours
    // (our SSRC, consecutive sequence numbers, the caller's timestamp steps); nothing else is
    // sent; the turnaround is reported.
    let mut cfg = TestConfig::new();
    cfg.tone_seconds = 4;
    cfg.extra = "[[behavior.plans]]\nnumber = \"echo\"\necho = true\n".into();
    let server = Server::start(cfg.clone(), Mode::AllInOne);
    let sink = RtpSink::bind();
    let dir = temp_dir("scn");
    let sc = tone_scenario(&dir, sink.port(), "0", 10_000);
    dial(&sc, "echo", "");
    let target = cfg.sip_addr();
    let call =
        std::thread::spawn(move || common::sipp_to(target, &sc, &[], Duration::from_secs(20)));
    let endpoint = server.grpc_endpoint();
    let mut media = None;
    common::wait_until("the echo session sending", Duration::from_secs(5), || {
        media = grpc::list_sessions(&endpoint)
            .into_iter()
            .find(|s| s.state == milliwatt_proto::v1::SessionState::Sending as i32)
            .map(|s| {
                assert!(s.echo, "{s:?}");
                std::net::SocketAddr::from(([127, 0, 0, 1], s.local_port as u16))
            });
        media.is_some()
    });
    let media = media.unwrap();
    let mut caller = common::rtp::Caller::new(0x5EED_0001);
    let mut sent = Vec::new();
    let t0 = Instant::now();
    for i in 1..=100u32 {
        let p = caller.tone(1000.0, 8000.0);
        sink.sender.send_to(&p, media).unwrap();
        sent.push((Instant::now(), p));
        std::thread::sleep(
            (t0 + Duration::from_millis(20) * i).saturating_duration_since(Instant::now()),
        );
    }
    let run = call.join().unwrap();
    let echoes = sink.finish();
    run.assert_ok();
    assert_eq!(
        echoes.len(),
        sent.len(),
        "every packet echoed once, nothing else sent"
    );
    let ssrc = echoes[0].ssrc();
    assert_ne!(ssrc, caller.ssrc, "the echo is a stream of ours");
    let mut turnaround = Vec::new();
    for (i, (e, (at, p))) in echoes.iter().zip(&sent).enumerate() {
        let d = &e.data;
        assert_eq!(
            d[0], 0x80,
            "packet {i}: version 2, no padding, extension or CSRC"
        );
        assert_eq!(e.payload_type(), 0, "packet {i}: PCMU");
        assert_eq!(e.ssrc(), ssrc, "packet {i}: SSRC");
        assert_eq!(
            d[12..],
            p[12..],
            "packet {i}: the caller's payload, byte for byte"
        );
        if i > 0 {
            let prev = &echoes[i - 1];
            assert_eq!(e.seq(), prev.seq().wrapping_add(1), "packet {i}: sequence");
            assert_eq!(
                e.timestamp().wrapping_sub(prev.timestamp()),
                160,
                "packet {i}: timestamp step"
            );
        }
        turnaround.push(e.at.duration_since(*at));
    }
    // What comes back decodes to the caller's signal.
    let audio: Vec<f64> = echoes
        .iter()
        .flat_map(|e| e.data[12..].iter().map(|&b| common::rtp::decode_mu(b)))
        .collect();
    let f = common::rtp::zero_crossing_frequency(&audio, 8000.0);
    assert!((f - 1000.0).abs() <= 1.0, "the echo decodes to {f:.2} Hz");
    turnaround.sort();
    let (p50, max) = (
        turnaround[turnaround.len() / 2],
        turnaround[turnaround.len() - 1],
    );
    eprintln!("echo round trip on loopback: p50 {p50:?}, max {max:?}");
    assert!(
        max < Duration::from_millis(250),
        "an echo came back {max:?} after its packet: not straight back"
    );
    server.wait_log(
        "echo test: the caller's packets sent back",
        Duration::from_secs(1),
    );
    let log = server.log_text();
    assert!(log.contains("echoed=100"), "{log}");
    assert!(log.contains("plan=\"echo\""), "{log}");
}

#[test]
fn early_media_plays_the_tone_from_the_183_on() {
    // A plan with early_media: 183 with SDP right after the allocation, the tone from then on,
    // the 200 after auto_answer_delay_ms repeating the 183's SDP, the tone's time after the ACK.
    let mut cfg = TestConfig::new();
    cfg.tone_seconds = 2;
    cfg.answer_delay_ms = 1500;
    cfg.extra = "[[behavior.plans]]\nnumber = \"early\"\nearly_media = true\n".into();
    let server = Server::start(cfg.clone(), Mode::AllInOne);
    let sink = RtpSink::bind();
    let dir = temp_dir("scn");
    let sc = scenario(
        "uac_early_media.xml",
        &[
            ("RTP_PORT", sink.port().to_string()),
            ("NUMBER", "early".into()),
            ("FORMATS", "0".into()),
            ("BYE_TIMEOUT_MS", "10000".into()),
        ],
        &dir,
    );
    let run = sipp(&server, &sc, &[], Duration::from_secs(20));
    std::thread::sleep(Duration::from_millis(200));
    let packets = sink.finish();
    run.assert_ok();
    assert_eq!(
        run.received_statuses()
            .iter()
            .filter(|s| **s == 180)
            .count(),
        0,
        "183 instead of 180"
    );
    let body_of = |status: &str| {
        let m = run
            .received()
            .find(|m| m.contains(&format!("SIP/2.0 {status}")))
            .unwrap_or_else(|| panic!("no {status}"));
        m.lines()
            .map(str::trim)
            .filter(|l| l.starts_with("o=") || l.starts_with("m=") || l.starts_with("c="))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(
        body_of("183"),
        body_of("200"),
        "the 200 repeats the 183's SDP (same o= version)"
    );
    // 1.5 s of early media and 2 s after the answer, one stream.
    let report = judge(&packets, &Expect::pcmu_440(Duration::from_millis(3500)));
    eprintln!("early media: {report:?}");
    server.wait_log(
        "early media: 183 Session Progress with SDP",
        Duration::from_secs(1),
    );
}

#[test]
fn an_in_dialog_request_requiring_an_unknown_extension_gets_420_and_the_call_goes_on() {
    let mut cfg = TestConfig::new();
    cfg.tone_seconds = 10;
    let server = Server::start(cfg.clone(), Mode::AllInOne);
    let sink = RtpSink::bind();
    let dir = temp_dir("scn");
    let sc = scenario(
        "uac_bye_require.xml",
        &[
            ("RTP_PORT", sink.port().to_string()),
            ("HOLD_MS", "1000".into()),
        ],
        &dir,
    );
    // The BYE with `Require: nonexistent-extension` gets 420 naming it (the scenario checks
    // Unsupported); the tone goes on until the plain BYE half a second later.
    let run = sipp(&server, &sc, &[], Duration::from_secs(20));
    std::thread::sleep(Duration::from_millis(200));
    let packets = sink.finish();
    run.assert_ok();
    let report = judge(&packets, &Expect::pcmu_440(Duration::from_millis(1500)));
    eprintln!("{report:?}");
    server.wait_log("hangup_by=\"caller\"", Duration::from_secs(2));
    assert!(
        server
            .log_text()
            .contains("unsupported=nonexistent-extension status=420"),
        "{}",
        server.log_text()
    );
}
