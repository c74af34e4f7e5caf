//! A flood from many source addresses (sockets on 127.0.1.1 .. 127.0.1.N, all loopback): a mix
//! of INVITEs that never ACK, OPTIONS, REGISTERs, requests without a Call-ID and junk, with the
//! recommended public-exposure settings (`[sources]` limits, `media.rtp_start =
//! "on_caller_rtp"`). Calls established before it keep their whole tone (every RTP packet
//! judged) and get their BYE on time; a real call placed every second during the flood is
//! answered; the server's memory stays bounded.
//!
//! Bounded: `FLOOD_SECONDS` (default 8) at `FLOOD_RATE` messages a second (default 1,000) from
//! `FLOOD_SOURCES` addresses (default 50). `scripts/bench.sh flood` runs it longer and harder on
//! the release build (README, Benchmark).

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::rtp::{judge, Caller, Expect, RtpSink};
use common::sip::{Msg, RawSip};
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

/// The flood's messages, in turn; `n` makes each unique.
fn flood_message(kind: u64, n: u64, from: SocketAddr, to: SocketAddr) -> Vec<u8> {
    let head = |method: &str, call_id: &str| {
        format!(
            "{method} sip:milliwatt@{to} SIP/2.0\r\nVia: SIP/2.0/UDP {from};branch=z9hG4bK-f{n}\r\n\
             From: <sip:flood@{from}>;tag=f{n}\r\nTo: <sip:milliwatt@{to}>\r\n{call_id}\
             CSeq: 1 {method}\r\nContact: <sip:flood@{from}>\r\nMax-Forwards: 70\r\n"
        )
    };
    let call_id = format!("Call-ID: flood-{n}@test\r\n");
    match kind % 5 {
        0 => {
            // Its SDP names the discard port on loopback; with on_caller_rtp nothing is sent.
            let sdp = "v=0\r\no=f 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
                       m=audio 9 RTP/AVP 0\r\n";
            format!(
                "{}Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
                head("INVITE", &call_id),
                sdp.len()
            )
            .into_bytes()
        }
        1 => format!("{}Content-Length: 0\r\n\r\n", head("OPTIONS", &call_id)).into_bytes(),
        2 => format!("{}Content-Length: 0\r\n\r\n", head("REGISTER", &call_id)).into_bytes(),
        3 => format!("{}Content-Length: 0\r\n\r\n", head("OPTIONS", "")).into_bytes(),
        _ => (0..300u64).map(|i| ((i * 7919 + n) % 251) as u8).collect(),
    }
}

/// BYE for a call `c` placed and ACKed (its 200 is `ok`); the 200 to it.
fn hang_up(c: &RawSip, ok: &Msg, call_id: &str) -> Option<u16> {
    let to = ok.header("To").expect("To in the 200");
    c.send(&format!(
        "BYE sip:milliwatt@{server} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {local};branch=z9hG4bK-bye-{call_id}\r\n\
         From: <sip:raw@{local}>;tag=rawfrom\r\nTo: {to}\r\nCall-ID: {call_id}\r\n\
         CSeq: 2 BYE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
        server = c.server,
        local = c.local,
    ));
    c.recv_until(2 * SEC, |m| {
        m.cseq_method() == Some("BYE") && m.status().is_some()
    })
    .into_iter()
    .find(|m| m.cseq_method() == Some("BYE"))
    .and_then(|m| m.status())
}

#[test]
fn a_flood_from_many_sources_leaves_calls_alone() {
    let seconds = env_or("FLOOD_SECONDS", 8);
    let rate = env_or("FLOOD_RATE", 1000);
    let sources = env_or("FLOOD_SOURCES", 50).clamp(1, 250);
    let mut cfg = TestConfig::new();
    cfg.answer_delay_ms = 0;
    cfg.tone_seconds = seconds + 4;
    cfg.max_calls = 1000;
    // A flooding address holds up to max_concurrent_calls sessions (INVITEs never ACKed live
    // 64*T1); the port range must hold them all besides the real calls (README, Security).
    cfg.rtp_range = rtp_port_block(2 * 2 * sources as u16 + 40);
    cfg.rtp_start = "on_caller_rtp";
    cfg.extra = "[sources]\nmax_new_calls_per_second = 2\nmax_concurrent_calls = 2\n".into();
    let server = Server::start(cfg.clone(), Mode::AllInOne);
    let sip = cfg.sip_addr();

    // Four calls established before the flood; each caller sends RTP once (the tone starts).
    let mut established = Vec::new();
    for i in 0..4 {
        let sink = RtpSink::bind();
        // Each from an address of its own: the per-source limits are for the flood.
        let c = RawSip::new_from([127, 0, 0, 10 + i as u8], sip);
        let id = format!("established-{i}@test");
        let media = c.call(&c.invite(&id, &id, sink.port()), &id);
        let acked = Instant::now();
        // A few packets, as a caller's stream starts (one alone may come before StartTone).
        let mut rtp = Caller::new(0x1000 + i);
        let first = Instant::now();
        for _ in 0..5 {
            sink.sender.send_to(&rtp.audio(), media).unwrap();
            std::thread::sleep(Duration::from_millis(20));
        }
        established.push((c, sink, media, first, acked));
    }
    std::thread::sleep(SEC / 2);
    let rss_before = server.rss_kib();

    // The flood.
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let flood = {
        let (stop, sent) = (stop.clone(), sent.clone());
        std::thread::spawn(move || {
            let sockets: Vec<UdpSocket> = (1..=sources)
                .map(|i| UdpSocket::bind(("127.0.1.".to_string() + &i.to_string(), 0)).unwrap())
                .collect();
            let start = Instant::now();
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) && start.elapsed() < Duration::from_secs(seconds) {
                // Batches every 10 ms, paced to the rate.
                let due = (start.elapsed().as_secs_f64() * rate as f64) as u64;
                while n < due {
                    let s = &sockets[(n % sources) as usize];
                    let from = s.local_addr().unwrap();
                    let _ = s.send_to(&flood_message(n / sources, n, from, sip), sip);
                    n += 1;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            sent.store(n, Ordering::Relaxed);
        })
    };

    // A real call every second during the flood: answered, then hung up.
    let mut answered = 0;
    // The server's RSS each second of the flood.
    let mut rss: Vec<u64> = Vec::new();
    let flood_start = Instant::now();
    let mut k = 0;
    while flood_start.elapsed() < Duration::from_secs(seconds.saturating_sub(1)) {
        let c = RawSip::new_from([127, 0, 0, 2], sip);
        let id = format!("during-{k}@test");
        let sink = RtpSink::bind();
        c.send(&c.invite(&id, &id, sink.port()));
        let fin = c
            .recv_until(2 * SEC, |m| m.status().is_some_and(|s| s >= 200))
            .into_iter()
            .find(|m| m.status().is_some_and(|s| s >= 200))
            .unwrap_or_else(|| panic!("call {id} during the flood: no final answer within 2 s"));
        assert_eq!(
            fin.status(),
            Some(200),
            "call {id} during the flood:\n{}",
            fin.text
        );
        c.send(&c.ack_for(&fin, &id, &format!("ack-{id}")));
        assert_eq!(hang_up(&c, &fin, &id), Some(200), "BYE of {id}");
        answered += 1;
        rss.push(server.rss_kib());
        k += 1;
        std::thread::sleep(SEC.saturating_sub(Duration::from_millis(100)));
    }
    stop.store(true, Ordering::Relaxed);
    flood.join().unwrap();
    let sent = sent.load(Ordering::Relaxed);
    let rss_after = server.rss_kib();
    eprintln!(
        "flood: {sent} messages in {seconds} s from {sources} addresses; {answered} calls \
         answered during it; RSS {} -> {} MiB, each second (MiB): {:?}",
        rss_before / 1024,
        rss_after / 1024,
        rss.iter().map(|k| k / 1024).collect::<Vec<_>>()
    );
    assert!(
        sent as f64 >= 0.9 * (rate * seconds) as f64,
        "only {sent} flood messages sent"
    );

    // The established calls: their BYE on time, every packet of their tone.
    let tone = Duration::from_secs(cfg.tone_seconds);
    for (i, (c, sink, media, first_rtp, acked)) in established.into_iter().enumerate() {
        let bye = c
            .recv_until(tone + 3 * SEC, |m| m.method() == Some("BYE"))
            .pop()
            .filter(|m| m.method() == Some("BYE"))
            .unwrap_or_else(|| panic!("established call {i}: no BYE"));
        c.ok_to(&bye);
        let late = bye.at.duration_since(acked).as_secs_f64() - tone.as_secs_f64();
        assert!(
            late.abs() <= 0.25,
            "established call {i}: BYE {late:+.3} s from its tone's end"
        );
        std::thread::sleep(Duration::from_millis(50));
        let report = judge(
            &sink.finish(),
            &Expect {
                source: Some(media),
                ..Expect::pcmu_440(bye.at.duration_since(first_rtp))
            },
        );
        eprintln!("established call {i}: {report:?}");
    }
    // Bounded: no more than 64 MiB over the flood (sessions, SIP transactions, source table).
    assert!(
        rss_after <= rss_before + 64 * 1024,
        "RSS grew from {} to {} MiB during the flood",
        rss_before / 1024,
        rss_after / 1024
    );
    let log = server.log_text();
    assert!(
        log.contains("call refused by a source limit"),
        "the source limits never acted"
    );
}
