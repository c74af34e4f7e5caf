//! Hostile input that names foreign addresses. The brief's rule: a test that feeds foreign SDP
//! runs the server in a network namespace with loopback only, so a server that obeyed such an
//! SDP would have nowhere to send. Each test here re-executes itself under `unshare -n` (root,
//! util-linux) with `lo` up (iproute2), and runs the server and SIPp inside.

mod common;

use std::time::Duration;

use common::rtp::{judge, Caller, Expect, RtpSink};
use common::sip::RawSip;
use common::*;

#[test]
fn offers_naming_groups_networks_or_no_one_get_488_and_nothing_is_sent() {
    if reexec_in_loopback_namespace(
        "offers_naming_groups_networks_or_no_one_get_488_and_nothing_is_sent",
    ) {
        return;
    }
    let cfg = TestConfig::new();
    let server = Server::start(cfg.clone(), Mode::AllInOne);
    let dir = temp_dir("hostile");
    for (addr, why) in [
        ("224.0.0.1", "multicast"),
        ("239.255.255.250", "multicast"),
        ("255.255.255.255", "broadcast"),
        ("ff02::1", "multicast"),
        ("0.0.0.0", "names no destination"),
    ] {
        let sc = reject_scenario_to(&dir, "0", addr, 488);
        sipp(&server, &sc, &[], Duration::from_secs(10)).assert_ok();
        server.wait_log(why, Duration::from_secs(2));
    }
    // Nothing was allocated for any of them, so nothing was ever sent.
    assert!(grpc::list_sessions(&server.grpc_endpoint()).is_empty());
    // A unicast offer still gets its call (the namespace's loopback).
    let sink = RtpSink::bind();
    sipp(
        &server,
        &tone_scenario(&dir, sink.port(), "0", 5000),
        &[],
        Duration::from_secs(15),
    )
    .assert_ok();
    judge(
        &sink.finish(),
        &Expect::pcmu_440(Duration::from_secs(cfg.tone_seconds)),
    );
}

/// `media.rtp_start = "on_caller_rtp"`: the address an INVITE names gets nothing until the
/// caller's own RTP reaches our port, and then the tone goes where that RTP comes from. A forged
/// INVITE naming a third party therefore makes the service send nothing: the forger never learns
/// the port. A caller that never sends RTP hears nothing, and the log says why.
#[test]
fn with_rtp_start_on_caller_rtp_the_tone_waits_for_the_caller_and_goes_to_it() {
    if reexec_in_loopback_namespace(
        "with_rtp_start_on_caller_rtp_the_tone_waits_for_the_caller_and_goes_to_it",
    ) {
        return;
    }
    let mut cfg = TestConfig::new();
    cfg.rtp_start = "on_caller_rtp";
    cfg.tone_seconds = 3;
    cfg.answer_delay_ms = 0;
    let server = Server::start(cfg.clone(), Mode::AllInOne);
    let sec = Duration::from_secs(1);

    // A call whose caller never sends RTP (a forged INVITE's shape): nothing is sent at all.
    let named = RtpSink::bind();
    let c = RawSip::new(cfg.sip_addr());
    c.call(
        &c.invite("silent@test", "silent", named.port()),
        "silent@test",
    );
    std::thread::sleep(sec);
    let sessions = grpc::list_sessions(&server.grpc_endpoint());
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    assert_eq!(
        sessions[0].state,
        milliwatt_proto::v1::SessionState::WaitingForCaller as i32,
        "{sessions:?}"
    );
    let bye = c
        .recv_until(4 * sec, |m| m.method() == Some("BYE"))
        .pop()
        .filter(|m| m.method() == Some("BYE"))
        .expect("our BYE at the end of the tone time");
    c.ok_to(&bye);
    server.wait_log("the caller sent no RTP, so no tone was sent", 2 * sec);
    assert!(
        named.finish().is_empty(),
        "RTP went to the address the INVITE named"
    );

    // A caller that sends RTP from another port than its SDP names: the tone starts with its
    // first packet and goes there; the SDP's address still gets nothing.
    let named = RtpSink::bind();
    let caller = RtpSink::bind();
    let c = RawSip::new(cfg.sip_addr());
    let media = c.call(
        &c.invite("speaks@test", "speaks", named.port()),
        "speaks@test",
    );
    std::thread::sleep(sec / 2);
    assert!(
        caller.packets().is_empty() && named.packets().is_empty(),
        "sent before the caller's RTP"
    );
    let mut rtp = Caller::new(0x5eed);
    let first_sent = std::time::Instant::now();
    caller.sender.send_to(&rtp.audio(), media).unwrap();
    let bye = c
        .recv_until(4 * sec, |m| m.method() == Some("BYE"))
        .pop()
        .filter(|m| m.method() == Some("BYE"))
        .expect("our BYE at the end of the tone time");
    c.ok_to(&bye);
    std::thread::sleep(Duration::from_millis(100));
    let report = judge(
        &caller.finish(),
        &Expect {
            source: Some(media),
            ..Expect::pcmu_440(bye.at.duration_since(first_sent))
        },
    );
    eprintln!("{report:?}");
    assert!(
        named.finish().is_empty(),
        "RTP went to the SDP's address, not the caller's"
    );
    server.wait_log("the caller's first RTP packet arrived: tone started", sec);
}

/// `media.refuse_private_destinations = true`: an offer naming a private address (RFC 1918,
/// shared, link-local, unique local) gets 488 with the reason, before any answer or session;
/// loopback is never refused (a caller on this host still gets its judged tone).
#[test]
fn private_destinations_are_refused_when_asked() {
    if reexec_in_loopback_namespace("private_destinations_are_refused_when_asked") {
        return;
    }
    let mut cfg = TestConfig::new();
    cfg.media_extra = "refuse_private_destinations = true\n".into();
    let server = Server::start(cfg.clone(), Mode::AllInOne);
    let dir = temp_dir("private");
    for addr in [
        "10.0.0.1",
        "192.168.1.20",
        "172.16.0.9",
        "100.64.1.1",
        "fd00::5",
    ] {
        let sc = reject_scenario_to(&dir, "0", addr, 488);
        sipp(&server, &sc, &[], Duration::from_secs(10)).assert_ok();
        server.wait_log(&format!("{addr} is"), Duration::from_secs(2));
    }
    server.wait_log("media.refuse_private_destinations", Duration::from_secs(1));
    assert!(grpc::list_sessions(&server.grpc_endpoint()).is_empty());
    let sink = RtpSink::bind();
    sipp(
        &server,
        &tone_scenario(&dir, sink.port(), "0", 5000),
        &[],
        Duration::from_secs(15),
    )
    .assert_ok();
    judge(&sink.finish(), &Expect::pcmu_440(Duration::from_secs(3)));
}
