//! Receive side: a test caller sends RTP (with induced loss), RFC 4733 DTMF, RTCP and bad
//! packets; media's statistics, MOS, DTMF events, symmetric RTP latching and RTCP sender reports
//! are checked through the gRPC API, WatchSessions and the logs. All on loopback.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use common::rtp::{judge, Caller, Expect, RtpSink};
use common::sip::RawSip;
use common::{grpc, Mode, Server, TestConfig};
use milliwatt_proto::v1 as pb;
use tokio_stream::StreamExt;

const SEC: Duration = Duration::from_secs(1);
const PTIME: Duration = Duration::from_millis(20);

/// Sends `n` packet times of audio from `socket` to `media`, losing those for which `lose(i)`.
fn send_audio(
    socket: &UdpSocket,
    media: SocketAddr,
    caller: &mut Caller,
    n: usize,
    lose: impl Fn(usize) -> bool,
) {
    let start = Instant::now();
    for i in 0..n {
        if lose(i) {
            caller.lose();
        } else {
            socket.send_to(&caller.audio(), media).unwrap();
        }
        let next = start + PTIME * (i as u32 + 1);
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
}

fn session_of(server: &Server) -> pb::Session {
    let sessions = grpc::list_sessions(&server.grpc_endpoint());
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    sessions.into_iter().next().unwrap()
}

/// The fields of an `X-RTP-Stat` header in `msg`, by name.
fn rtp_stat(msg: &str) -> std::collections::HashMap<String, String> {
    let value = msg
        .lines()
        .find_map(|l| l.strip_prefix("X-RTP-Stat: "))
        .unwrap_or_else(|| panic!("no X-RTP-Stat in\n{msg}"));
    value
        .trim()
        .split(',')
        .map(|f| {
            let (k, v) = f.split_once('=').unwrap_or_else(|| panic!("{value}"));
            (k.to_string(), v.to_string())
        })
        .collect()
}

/// The session's quality near the call's end, and the `X-RTP-Stat` fields of our BYE.
fn quality_after(
    loss_every: Option<usize>,
    call_id: &str,
) -> (pb::Quality, std::collections::HashMap<String, String>) {
    let mut cfg = TestConfig::new();
    cfg.tone_seconds = 5;
    cfg.answer_delay_ms = 0;
    let server = Server::start(cfg.clone(), Mode::AllInOne);
    let sink = RtpSink::bind();
    let c = RawSip::new(cfg.sip_addr());
    let media = c.call(&c.invite(call_id, "quality", sink.port()), call_id);
    let mut caller = Caller::new(0x1234_5678);
    send_audio(&sink.sender, media, &mut caller, 150, |i| {
        loss_every.is_some_and(|k| i % k == k - 1)
    });
    std::thread::sleep(Duration::from_millis(100));
    let q = session_of(&server).quality.expect("quality in GetSession");
    let bye = c
        .recv_until(5 * SEC, |m| m.method() == Some("BYE"))
        .pop()
        .expect("BYE");
    c.ok_to(&bye);
    server.wait_log("media session released", 2 * SEC);
    let log = server.log_text();
    assert!(
        log.contains("rtp_received="),
        "release logged without receive counts:\n{log}"
    );
    (q, rtp_stat(&bye.text))
}

#[test]
fn induced_loss_shows_in_loss_percent_and_lowers_the_mos() {
    let (clean, clean_stat) = quality_after(None, "clean@test");
    let (lossy, lossy_stat) = quality_after(Some(10), "lossy@test");
    eprintln!("our BYE's X-RTP-Stat: clean {clean_stat:?}\nlossy {lossy_stat:?}");
    // Our BYE tells the caller what we measured of its stream: the figures media released.
    for (q, stat) in [(&clean, &clean_stat), (&lossy, &lossy_stat)] {
        let num = |k: &str| -> f64 { stat[k].parse().unwrap_or_else(|_| panic!("{k}: {stat:?}")) };
        assert_eq!(num("PR") as u64, q.packets_received, "{stat:?} {q:?}");
        assert_eq!(num("PL") as u64, q.packets_lost, "{stat:?} {q:?}");
        assert!((num("LP") - q.loss_percent).abs() < 0.01, "{stat:?} {q:?}");
        assert!((num("MO") - q.mos).abs() < 0.01, "{stat:?} {q:?}");
        assert_eq!(num("OR") as u64, 172 * q.packets_received, "{stat:?}");
        // 5 s of tone at 50 packets/s.
        assert!((245.0..=255.0).contains(&num("PS")), "{stat:?}");
        assert_eq!(stat["EN"], "PCMU");
        assert_eq!(stat["DU"], "5");
    }
    eprintln!("clean {clean:?}\nlossy {lossy:?}");
    assert!(clean.packets_received >= 148, "{clean:?}");
    assert_eq!(clean.packets_lost, 0, "{clean:?}");
    assert!(clean.loss_percent < 0.1, "{clean:?}");
    assert!(clean.mos > 4.2, "clean MOS {}", clean.mos);
    assert!(clean.jitter_ms < 5.0, "{clean:?}");
    assert_eq!(
        clean.rtp_source,
        format!("127.0.0.1:{}", 0).replace(":0", "").to_string() + &clean.rtp_source[9..]
    );
    // 15 of 150 packets lost: 10 %.
    assert!(
        (lossy.loss_percent - 10.0).abs() <= 1.0,
        "loss {}",
        lossy.loss_percent
    );
    assert!((13..=16).contains(&lossy.packets_lost), "{lossy:?}");
    assert!(
        lossy.mos < clean.mos - 0.5,
        "MOS clean {} lossy {}",
        clean.mos,
        lossy.mos
    );
}

#[test]
fn dtmf_digits_are_reported_once_each_in_order() {
    let mut cfg = TestConfig::new();
    cfg.tone_seconds = 6;
    cfg.answer_delay_ms = 0;
    let server = Server::start(cfg.clone(), Mode::AllInOne);
    let rt = grpc::runtime();
    let mut watch = rt.block_on(async {
        pb::media_client::MediaClient::connect(server.grpc_endpoint())
            .await
            .unwrap()
            .watch_sessions(pb::WatchSessionsRequest {})
            .await
            .unwrap()
            .into_inner()
    });
    let sink = RtpSink::bind();
    let c = RawSip::new(cfg.sip_addr());
    let media = c.call(
        &c.invite_with_dtmf("dtmf@test", "dtmf", sink.port()),
        "dtmf@test",
    );
    let mut caller = Caller::new(42);
    send_audio(&sink.sender, media, &mut caller, 10, |_| false);
    for event in [1u8, 2, 11] {
        for p in caller.dtmf(101, event, 5) {
            sink.sender.send_to(&p, media).unwrap();
            std::thread::sleep(Duration::from_millis(10));
        }
        send_audio(&sink.sender, media, &mut caller, 10, |_| false);
    }
    let digits: Vec<pb::SessionEvent> = rt.block_on(async {
        let mut out = Vec::new();
        let deadline = tokio::time::Instant::now() + 3 * SEC;
        while out.len() < 3 {
            match tokio::time::timeout_at(deadline, watch.next()).await {
                Ok(Some(Ok(e))) if e.kind == pb::session_event::Kind::Dtmf as i32 => out.push(e),
                Ok(Some(Ok(_))) => {}
                _ => break,
            }
        }
        // Nothing more: each digit once.
        while let Ok(Some(Ok(e))) =
            tokio::time::timeout(Duration::from_millis(500), watch.next()).await
        {
            assert_ne!(
                e.kind,
                pb::session_event::Kind::Dtmf as i32,
                "extra DTMF event {e:?}"
            );
        }
        out
    });
    let got: Vec<&str> = digits.iter().map(|e| e.digit.as_str()).collect();
    assert_eq!(got, vec!["1", "2", "#"]);
    for e in &digits {
        assert_eq!(e.session.as_ref().unwrap().call_id, "dtmf@test");
        assert!((60..=120).contains(&e.digit_duration_ms), "{e:?}");
    }
    assert_eq!(session_of(&server).quality.unwrap().dtmf_digits, "12#");
    // Quality is streamed too (every 5 s for sessions that receive RTP).
    let quality = rt.block_on(async {
        let deadline = tokio::time::Instant::now() + 6 * SEC;
        loop {
            match tokio::time::timeout_at(deadline, watch.next()).await {
                Ok(Some(Ok(e))) if e.kind == pb::session_event::Kind::Quality as i32 => {
                    break Some(e)
                }
                Ok(Some(Ok(_))) => {}
                _ => break None,
            }
        }
    });
    let q = quality.expect("no quality event within 6 s");
    let q = q.session.unwrap().quality.unwrap();
    assert!(q.packets_received >= 40, "{q:?}");
    assert_eq!(q.dtmf_digits, "12#");
    server.wait_log("DTMF digit", SEC);
    let bye = c
        .recv_until(8 * SEC, |m| m.method() == Some("BYE"))
        .pop()
        .expect("BYE");
    c.ok_to(&bye);
    server.wait_log("dtmf=12#", 3 * SEC);
}

#[test]
fn symmetric_rtp_follows_the_real_source_and_bad_packets_are_counted() {
    let mut cfg = TestConfig::new();
    cfg.tone_seconds = 5;
    cfg.answer_delay_ms = 0;
    let server = Server::start(cfg.clone(), Mode::AllInOne);
    // The SDP names `advertised`, but the caller's RTP comes from `nat` (as behind a NAT).
    let advertised = RtpSink::bind();
    let nat = RtpSink::bind();
    let c = RawSip::new(cfg.sip_addr());
    let media = c.call(&c.invite("sym@test", "sym", advertised.port()), "sym@test");
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !advertised.packets().is_empty(),
        "tone goes to the SDP address first"
    );
    let mut caller = Caller::new(7);
    send_audio(&nat.sender, media, &mut caller, 5, |_| false);
    std::thread::sleep(Duration::from_millis(200));
    let before = advertised.packets().len();
    let nat_before = nat.packets().len();
    std::thread::sleep(SEC);
    assert!(
        advertised.packets().len() <= before + 1,
        "still sending to the SDP address"
    );
    assert!(
        nat.packets().len() >= nat_before + 45,
        "not sending to the latched source"
    );
    server.wait_log("symmetric RTP", SEC);
    // The stream moved, it did not restart: packets at both addresses come from the address
    // of our SDP answer, with one SSRC and one gap-free sequence across the switch.
    let (to_sdp, to_nat) = (advertised.packets(), nat.packets());
    for p in to_sdp.iter().chain(&to_nat) {
        assert_eq!(
            p.from, media,
            "RTP from {} instead of the SDP answer's address",
            p.from
        );
    }
    let mut all: Vec<(u32, u16)> = to_sdp
        .iter()
        .chain(&to_nat)
        .map(|p| (p.ssrc(), p.seq()))
        .collect();
    assert!(
        all.iter().all(|(ssrc, _)| *ssrc == all[0].0),
        "SSRC changed at the switch"
    );
    let first = all[0].1;
    all.sort_by_key(|(_, seq)| seq.wrapping_sub(first));
    for w in all.windows(2) {
        assert_eq!(
            w[1].1,
            w[0].1.wrapping_add(1),
            "sequence gap or repeat at the switch: {} then {}",
            w[0].1,
            w[1].1
        );
    }

    // Bad packets: too short, wrong version, unknown payload type, from a third address.
    let third = UdpSocket::bind("127.0.0.1:0").unwrap();
    nat.sender.send_to(&[0x80, 0x00, 0x01], media).unwrap();
    let mut wrong_version = caller.audio();
    wrong_version[0] = 0x40;
    nat.sender.send_to(&wrong_version, media).unwrap();
    let mut wrong_pt = caller.audio();
    wrong_pt[1] = 96;
    nat.sender.send_to(&wrong_pt, media).unwrap();
    third.send_to(&caller.audio(), media).unwrap();
    third.send_to(&caller.audio(), media).unwrap();
    nat.sender.send_to(&[0u8; 1500], media).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let q = session_of(&server).quality.unwrap();
    assert_eq!(q.packets_invalid, 4, "{q:?}");
    assert_eq!(q.packets_from_unexpected_source, 2, "{q:?}");
    assert_eq!(q.rtp_source, nat.addr.to_string());
    // The tone goes on.
    let n = nat.packets().len();
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        nat.packets().len() >= n + 20,
        "tone stopped after bad packets"
    );
    let bye = c
        .recv_until(6 * SEC, |m| m.method() == Some("BYE"))
        .pop()
        .expect("BYE");
    c.ok_to(&bye);
}

/// The first RTCP sender report `sink` receives within 7 s; panics with `missing` otherwise.
fn sender_report(sink: &RtpSink, missing: &str) -> common::rtp::Packet {
    let deadline = Instant::now() + 7 * SEC;
    loop {
        if let Some(p) = sink
            .packets()
            .into_iter()
            .find(|p| p.data.len() >= 28 && p.data[1] == 200)
        {
            return p;
        }
        assert!(Instant::now() < deadline, "{missing}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A caller's RTCP receiver report about `ssrc`: 25 % (64/256) lost, jitter 80 units (10 ms).
fn receiver_report(ssrc: u32) -> Vec<u8> {
    let mut rr = vec![0x81, 201, 0, 7];
    rr.extend_from_slice(&0xCAFEu32.to_be_bytes());
    rr.extend_from_slice(&ssrc.to_be_bytes());
    rr.extend_from_slice(&[64, 0, 0, 10]);
    rr.extend_from_slice(&1000u32.to_be_bytes());
    rr.extend_from_slice(&80u32.to_be_bytes());
    rr.extend_from_slice(&[0; 8]);
    rr
}

#[test]
fn media_sends_rtcp_sender_reports_and_reads_receiver_reports() {
    let mut cfg = TestConfig::new();
    cfg.tone_seconds = 8;
    cfg.answer_delay_ms = 0;
    let server = Server::start(cfg.clone(), Mode::AllInOne);
    // RTP to an even port, RTCP on the next one.
    let (rtp_port, _) = common::rtp_port_block(2);
    let rtp = RtpSink::bind_on(SocketAddr::from(([127, 0, 0, 1], rtp_port)));
    let rtcp = RtpSink::bind_on(SocketAddr::from(([127, 0, 0, 1], rtp_port + 1)));
    let c = RawSip::new(cfg.sip_addr());
    let media = c.call(&c.invite("rtcp@test", "rtcp", rtp_port), "rtcp@test");
    let ssrc = {
        let deadline = Instant::now() + 2 * SEC;
        while rtp.packets().is_empty() {
            assert!(Instant::now() < deadline, "no RTP");
            std::thread::sleep(Duration::from_millis(20));
        }
        rtp.packets()[0].ssrc()
    };
    let sr = sender_report(&rtcp, "no RTCP sender report within 7 s");
    assert_eq!(sr.data[0] >> 6, 2, "RTCP version");
    assert_eq!(
        u32::from_be_bytes(sr.data[4..8].try_into().unwrap()),
        ssrc,
        "SR SSRC is the RTP SSRC"
    );
    let sender_packets = u32::from_be_bytes(sr.data[20..24].try_into().unwrap());
    assert!(
        (200..=350).contains(&sender_packets),
        "SR packet count {sender_packets}"
    );
    assert_eq!(sr.from.port() % 2, 1, "RTCP from the odd port next to RTP");
    // The caller's receiver report: 25 % (64/256) lost, jitter 80 units (10 ms).
    let rr = receiver_report(ssrc);
    let media_rtcp = SocketAddr::new(media.ip(), media.port() + 1);
    rtcp.sender.send_to(&rr, media_rtcp).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let q = session_of(&server).quality.unwrap();
    assert_eq!(q.rtcp_received, 1, "{q:?}");
    assert!((q.remote_loss_percent - 25.0).abs() < 0.01, "{q:?}");
    assert!((q.remote_jitter_ms - 10.0).abs() < 0.01, "{q:?}");
    let bye = c
        .recv_until(8 * SEC, |m| m.method() == Some("BYE"))
        .pop()
        .expect("BYE");
    c.ok_to(&bye);
}

#[test]
fn with_rtcp_mux_rtcp_shares_the_rtp_port_and_media_holds_one_socket() {
    let mut cfg = TestConfig::new();
    cfg.tone_seconds = 8;
    cfg.answer_delay_ms = 0;
    let server = Server::start(cfg.clone(), Mode::AllInOne);
    let sink = RtpSink::bind();
    let c = RawSip::new(cfg.sip_addr());
    c.send(&c.invite_with_rtcp_mux("mux@test", "mux", sink.port()));
    let ok = c
        .recv_until(5 * SEC, |m| m.status() == Some(200))
        .pop()
        .filter(|m| m.status() == Some(200))
        .expect("no 200 OK");
    assert!(
        ok.text.contains("a=rtcp-mux"),
        "rtcp-mux accepted: {}",
        ok.text
    );
    c.send(&c.ack_for(&ok, "mux@test", "ack"));
    let media = common::answered_media(&ok.text);
    // One descriptor: media's RTP port + 1 is not bound (the port stays reserved in its pool).
    UdpSocket::bind(SocketAddr::new(media.ip(), media.port() + 1))
        .expect("media holds no RTCP socket with rtcp-mux");
    // Sender reports come on the RTP port, from media's RTP port.
    let sr = sender_report(&sink, "no multiplexed RTCP sender report within 7 s");
    assert_eq!(sr.from, media, "RTCP from the RTP port");
    let ssrc = sink.packets()[0].ssrc();
    assert_eq!(u32::from_be_bytes(sr.data[4..8].try_into().unwrap()), ssrc);
    // The caller's receiver report, sent to the RTP port, is read there.
    let rr = receiver_report(ssrc);
    sink.sender.send_to(&rr, media).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let q = session_of(&server).quality.unwrap();
    assert_eq!(q.rtcp_received, 1, "{q:?}");
    assert!((q.remote_loss_percent - 25.0).abs() < 0.01, "{q:?}");
    // The tone itself is judged as for any call (the SR in the sink is not RTP: filter it).
    let bye = c
        .recv_until(8 * SEC, |m| m.method() == Some("BYE"))
        .pop()
        .expect("BYE");
    c.ok_to(&bye);
    let rtp: Vec<_> = sink
        .finish()
        .into_iter()
        .filter(|p| p.data.len() > 1 && !(192..=223).contains(&p.data[1]))
        .collect();
    judge(&rtp, &Expect::pcmu_440(Duration::from_secs(8)));
}

#[test]
fn an_rfc_6035_report_goes_to_the_quality_collector_when_the_call_ends() {
    // sip.quality_collector points at a SIPp collector (tests/sipp/uas_vq_collector.xml: checks
    // Event, Content-Type and the CallTerm line, answers 200). A SIPp call listens to the tone
    // while the test sends the caller's RTP from the SDP's address, 5 packets of 100 lost: the
    // PUBLISH after the call must report that stream (NLR=5.0) and both ends' addresses and
    // SSRCs, in the call's dialog.
    let collector_port = common::free_port();
    let mut cfg = TestConfig::new();
    cfg.tone_seconds = 3;
    cfg.sip_extra = format!("quality_collector = \"sip:collector@127.0.0.1:{collector_port}\"\n");
    let server = Server::start(cfg.clone(), Mode::AllInOne);
    let dir = common::temp_dir("scn");
    let collector_sc = common::scenario("uas_vq_collector.xml", &[], &dir);
    let collector =
        std::thread::spawn(move || common::sipp_listen(collector_port, &collector_sc, 30 * SEC));
    let sink = RtpSink::bind();
    let sc = common::tone_scenario(&dir, sink.port(), "0", 10_000);
    let target = cfg.sip_addr();
    let call = std::thread::spawn(move || common::sipp_to(target, &sc, &[], 20 * SEC));
    let endpoint = server.grpc_endpoint();
    let mut media = None;
    common::wait_until("the call's media session sending", 5 * SEC, || {
        media = grpc::list_sessions(&endpoint)
            .into_iter()
            .find(|s| s.state == pb::SessionState::Sending as i32)
            .map(|s| SocketAddr::from(([127, 0, 0, 1], s.local_port as u16)));
        media.is_some()
    });
    let media = media.unwrap();
    let mut caller = Caller::new(0x00C0_FFEE);
    send_audio(&sink.sender, media, &mut caller, 100, |i| i % 20 == 10);
    let call = call.join().unwrap();
    let collector = collector.join().unwrap();
    let sink_port = sink.port();
    let ours = sink.finish();
    call.assert_ok();
    collector.assert_ok();
    let publish = collector
        .received()
        .find(|m| m.contains("PUBLISH sip:collector@127.0.0.1"))
        .unwrap_or_else(|| panic!("no PUBLISH:\n{}", collector.messages));
    let header = |msg: &str, name: &str| -> String {
        msg.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}: ")))
            .unwrap_or_else(|| panic!("no {name} in:\n{msg}"))
            .trim()
            .to_string()
    };
    let invite_ok = call
        .received()
        .find(|m| m.contains("SIP/2.0 200") && m.contains("INVITE"))
        .expect("the 200 to the INVITE");
    let call_id = header(invite_ok, "Call-ID");
    let tag_of = |v: String| v.split(";tag=").nth(1).unwrap_or("").to_string();
    let (from_tag, to_tag) = (
        tag_of(header(invite_ok, "From")),
        tag_of(header(invite_ok, "To")),
    );
    // The call itself: our whole tone, judged as in every call test.
    let report = judge(&ours, &Expect::pcmu_440(3 * SEC));
    eprintln!("the reported call's tone: {report:?}");
    let our_ssrc = ours[0].ssrc();
    assert_eq!(header(publish, "Event"), "vq-rtcpxr");
    for line in [
        "VQSessionReport: CallTerm".to_string(),
        format!("CallID: {call_id}"),
        format!(
            "LocalAddr: IP=127.0.0.1 PORT={} SSRC=0x{our_ssrc:08X}",
            media.port()
        ),
        format!("RemoteAddr: IP=127.0.0.1 PORT={sink_port} SSRC=0x00C0FFEE"),
        "LocalMetrics:".into(),
        "SessionDesc: PT=0 PD=PCMU SR=8000 FD=20 FPP=1 PPS=50 SSUP=off".into(),
        format!("DialogID: {call_id};to-tag={to_tag};from-tag={from_tag}"),
    ] {
        assert!(
            publish.lines().any(|l| l.trim() == line),
            "the report lacks {line:?}:\n{publish}"
        );
    }
    // 5 of 100 lost (RFC 3550 A.3's count may leave the first packet out of "expected").
    let nlr: f64 = header(publish, "PacketLoss")
        .split_whitespace()
        .find_map(|f| f.strip_prefix("NLR="))
        .and_then(|v| v.parse().ok())
        .expect("NLR");
    assert!((4.9..=5.2).contains(&nlr), "NLR={nlr}:\n{publish}");
    let mos: f64 = header(publish, "QualityEst")
        .split_whitespace()
        .find_map(|f| f.strip_prefix("MOSLQ="))
        .and_then(|v| v.parse().ok())
        .expect("MOSLQ");
    assert!((1.0..=4.5).contains(&mos), "MOSLQ={mos}");
    assert!(
        header(publish, "Timestamps").starts_with("START=20"),
        "{publish}"
    );
    server.wait_log("quality report published (RFC 6035) status=200", 2 * SEC);
}
