//! Limits by source address (`[sources]`), with callers on several loopback addresses
//! (127.0.0.0/8 is all loopback on Linux): the allow-list (403 or silence for the others),
//! concurrent calls per address and new calls a second per address (503 with Retry-After),
//! each counted in the statistics line and `/metrics`, and other addresses unaffected.

mod common;

use std::time::Duration;

use common::rtp::RtpSink;
use common::sip::{Msg, RawSip};
use common::*;

const SEC: Duration = Duration::from_secs(1);

fn options_from(ip: [u8; 4], server: &Server, n: u32) -> Option<u16> {
    let c = RawSip::new_from(ip, server.cfg.sip_addr());
    c.send(&c.request(
        "OPTIONS",
        &format!("src-opt-{n}@test"),
        &format!("srcopt{n}"),
        1,
        "tag=o",
        true,
        "",
        "",
    ));
    c.recv_until(SEC, |m| m.status().is_some_and(|s| s >= 200))
        .into_iter()
        .find_map(|m| m.status().filter(|s| *s >= 200))
}

/// An INVITE from `c`; its final response within 2 s (a 200 is ACKed).
fn invite(c: &RawSip, sink: &RtpSink, call_id: &str) -> Option<Msg> {
    c.send(&c.invite(call_id, call_id, sink.port()));
    let fin = c
        .recv_until(2 * SEC, |m| m.status().is_some_and(|s| s >= 200))
        .into_iter()
        .find(|m| m.status().is_some_and(|s| s >= 200))?;
    if fin.status() == Some(200) {
        c.send(&c.ack_for(&fin, call_id, &format!("ack-{call_id}")));
    }
    Some(fin)
}

fn final_stats(server: &mut Server) -> String {
    let statuses = server.terminate();
    assert!(statuses.iter().all(|s| s.success()), "{statuses:?}");
    server
        .log_text()
        .lines()
        .find(|l| l.contains("signaling stopping"))
        .expect("final statistics line")
        .to_string()
}

#[test]
fn sources_outside_the_allow_list_get_403_or_nothing_and_are_counted() {
    for (action, want) in [("forbidden", Some(403)), ("silence", None)] {
        let mut cfg = TestConfig::new();
        cfg.answer_delay_ms = 0;
        cfg.tone_seconds = 1;
        cfg.extra = format!(
            "[sources]\nallowed_networks = [\"127.0.0.1/32\", \"127.0.0.2\"]\n\
             refused_action = \"{action}\"\n"
        );
        let mut server = Server::start(cfg.clone(), Mode::AllInOne);
        let sink = RtpSink::bind();
        for (i, ip) in [[127, 0, 0, 3], [127, 0, 1, 1]].into_iter().enumerate() {
            assert_eq!(
                options_from(ip, &server, i as u32),
                want,
                "{action}: OPTIONS from {ip:?}"
            );
            let c = RawSip::new_from(ip, cfg.sip_addr());
            let got = invite(&c, &sink, &format!("refused-{action}-{i}@test"));
            assert_eq!(
                got.as_ref().and_then(Msg::status),
                want,
                "{action}: INVITE from {ip:?}"
            );
            if let Some(m) = got {
                assert!(
                    m.header("Warning")
                        .is_some_and(|w| w.contains("not allowed")),
                    "{}",
                    m.text
                );
            }
        }
        assert_eq!(options_from([127, 0, 0, 2], &server, 9), Some(200));
        let c = RawSip::new_from([127, 0, 0, 2], cfg.sip_addr());
        let ok = invite(&c, &sink, &format!("allowed-{action}@test")).expect("an answer");
        assert_eq!(ok.status(), Some(200), "{}", ok.text);
        let bye = c
            .recv_until(3 * SEC, |m| m.method() == Some("BYE"))
            .pop()
            .expect("BYE");
        c.ok_to(&bye);
        drop(sink);
        let stats = final_stats(&mut server);
        assert!(stats.contains("source_refused=4 "), "{action}: {stats}");
    }
}

#[test]
fn concurrent_calls_per_source_are_limited_with_503_and_retry_after() {
    let mut cfg = TestConfig::new();
    cfg.answer_delay_ms = 0;
    cfg.tone_seconds = 2;
    cfg.extra = "[sources]\nmax_concurrent_calls = 2\n".into();
    let mut server = Server::start(cfg.clone(), Mode::AllInOne);
    let sink = RtpSink::bind();
    let a = RawSip::new_from([127, 0, 0, 2], cfg.sip_addr());
    for call in ["cc-1@test", "cc-2@test"] {
        let ok = invite(&a, &sink, call).expect("an answer");
        assert_eq!(ok.status(), Some(200), "{}", ok.text);
    }
    let third = invite(&a, &sink, "cc-3@test").expect("an answer");
    assert_eq!(third.status(), Some(503), "{}", third.text);
    assert!(third.header("Retry-After").is_some(), "{}", third.text);
    assert!(
        third
            .header("Warning")
            .is_some_and(|w| w.contains("sources.max_concurrent_calls")),
        "{}",
        third.text
    );
    // Another address is not affected.
    let b = RawSip::new_from([127, 0, 0, 3], cfg.sip_addr());
    let ok = invite(&b, &sink, "cc-other@test").expect("an answer");
    assert_eq!(ok.status(), Some(200), "{}", ok.text);
    // When the first two calls end (our BYE after the tone), the address may call again.
    let byes = a.recv_until(4 * SEC, |_| false);
    let byes: Vec<&Msg> = byes.iter().filter(|m| m.method() == Some("BYE")).collect();
    assert!(byes.len() >= 2, "BYEs for both calls: {byes:?}");
    for bye in byes {
        a.ok_to(bye);
    }
    std::thread::sleep(Duration::from_millis(200));
    let again = invite(&a, &sink, "cc-4@test").expect("an answer");
    assert_eq!(again.status(), Some(200), "{}", again.text);
    let metrics = http_get(cfg.admin_port, "/metrics").expect("/metrics").1;
    assert!(
        metrics.contains("milliwatt_calls_source_limited_total 1"),
        "{metrics}"
    );
    let stats = final_stats(&mut server);
    assert!(stats.contains("source_limited=1 "), "{stats}");
}

#[test]
fn new_calls_a_second_per_source_are_a_token_bucket() {
    let mut cfg = TestConfig::new();
    cfg.answer_delay_ms = 0;
    cfg.tone_seconds = 1;
    cfg.extra = "[sources]\nmax_new_calls_per_second = 3\n".into();
    let mut server = Server::start(cfg.clone(), Mode::AllInOne);
    let sink = RtpSink::bind();
    let a = RawSip::new_from([127, 0, 0, 4], cfg.sip_addr());
    // Six INVITEs at once: one second's worth (3) is answered, the rest get 503 at once.
    for i in 0..6 {
        let id = format!("rate-{i}@test");
        a.send(&a.invite(&id, &id, sink.port()));
    }
    let finals: Vec<Msg> = a
        .recv_until(2 * SEC, |_| false)
        .into_iter()
        .filter(|m| m.status().is_some_and(|s| s >= 200))
        .collect();
    let mut codes: Vec<u16> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for m in &finals {
        // One final per call (a 200 is retransmitted until its ACK).
        let id = m.header("Call-ID").unwrap().to_string();
        if seen.insert(id.clone()) {
            codes.push(m.status().unwrap());
            if m.status() == Some(200) {
                a.send(&a.ack_for(m, &id, &format!("ack-{id}")));
            }
        }
    }
    codes.sort();
    assert_eq!(codes, [200, 200, 200, 503, 503, 503], "{finals:?}");
    assert!(finals.iter().filter(|m| m.status() == Some(503)).all(|m| m
        .header("Warning")
        .is_some_and(|w| w.contains("3 new calls a second"))));
    // Another address has its own bucket; this one refills within a second.
    let b = RawSip::new_from([127, 0, 0, 5], cfg.sip_addr());
    assert_eq!(
        invite(&b, &sink, "rate-other@test").and_then(|m| m.status()),
        Some(200)
    );
    std::thread::sleep(SEC);
    assert_eq!(
        invite(&a, &sink, "rate-later@test").and_then(|m| m.status()),
        Some(200)
    );
    let stats = final_stats(&mut server);
    assert!(stats.contains("source_limited=3 "), "{stats}");
}
