//! What one peer may cost the SIP endpoint (`sip.max_message_bytes`, `sip.tcp_*`): a request
//! over the size limit gets 513 (over TCP its body is skipped and the connection goes on), a
//! head over the limit ends the connection; connections beyond the limit are closed at accept;
//! a sender too slow to finish a message ("slowloris") and a connection left unused are cut
//! off; each counted in `/metrics`, and the service answers throughout.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::sip::RawSip;
use common::*;

const SEC: Duration = Duration::from_secs(1);

fn options(
    local: std::net::SocketAddr,
    server: std::net::SocketAddr,
    n: u32,
    extra: &str,
) -> String {
    format!(
        "OPTIONS sip:milliwatt@{server} SIP/2.0\r\n\
         Via: SIP/2.0/TCP {local};branch=z9hG4bK-lim{n}\r\n\
         From: <sip:caller@{local}>;tag=l{n}\r\nTo: <sip:milliwatt@{server}>\r\n\
         Call-ID: limits-{n}@test\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n{extra}\
         Content-Length: 0\r\n\r\n"
    )
}

/// The status of the next final response on `s` within 2 s; `Err` when the server closed the
/// connection (or nothing came).
fn final_on(s: &mut TcpStream) -> Result<u16, &'static str> {
    let deadline = Instant::now() + 2 * SEC;
    let mut text = String::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        s.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        match s.read(&mut buf) {
            Ok(0) => return Err("closed"),
            Ok(n) => text.push_str(&String::from_utf8_lossy(&buf[..n])),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Err("closed"),
            Err(_) => {}
        }
        if let Some(code) = text
            .split("SIP/2.0 ")
            .skip(1)
            .filter_map(|r| r.get(..3)?.parse::<u16>().ok())
            .find(|c| *c >= 200)
        {
            return Ok(code);
        }
    }
    Err("no answer")
}

/// Whether the server closes `s` within `limit` (reads until EOF or reset).
fn closed_within(s: &mut TcpStream, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        s.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        match s.read(&mut buf) {
            Ok(0) => return true,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            _ => {}
        }
    }
    false
}

fn connect(cfg: &TestConfig) -> TcpStream {
    let s = TcpStream::connect(cfg.sip_addr()).expect("connect");
    s.set_nodelay(true).unwrap();
    s
}

fn metric(cfg: &TestConfig, line_start: &str) -> String {
    let text = http_get(cfg.admin_port, "/metrics").expect("/metrics").1;
    text.lines()
        .find(|l| l.starts_with(line_start))
        .unwrap_or_else(|| panic!("{line_start} in /metrics:\n{text}"))
        .to_string()
}

#[test]
fn size_connection_slow_sender_and_idle_limits_hold() {
    let mut cfg = TestConfig::new();
    cfg.sip_extra = "max_message_bytes = 8192\ntcp_max_connections = 3\n\
                     tcp_idle_timeout_seconds = 3\ntcp_message_timeout_seconds = 2\n"
        .into();
    let _server = Server::start(cfg.clone(), Mode::AllInOne);
    // The harness's readiness probes connected over TCP: let the server see them closed.
    std::thread::sleep(Duration::from_millis(300));
    let sip = cfg.sip_addr();

    // Connections: three are served, a fourth is closed at once, and after one of the three
    // goes, a new one is served again.
    let mut open: Vec<TcpStream> = (0..3).map(|_| connect(&cfg)).collect();
    for (i, s) in open.iter_mut().enumerate() {
        let local = s.local_addr().unwrap();
        s.write_all(options(local, sip, i as u32, "").as_bytes())
            .unwrap();
        assert_eq!(final_on(s), Ok(200), "connection {i}");
    }
    let mut fourth = connect(&cfg);
    assert!(
        closed_within(&mut fourth, 2 * SEC),
        "the fourth connection stays open"
    );
    assert_eq!(
        metric(
            &cfg,
            "milliwatt_sip_tcp_connections_closed_total{reason=\"limit\"}"
        ),
        "milliwatt_sip_tcp_connections_closed_total{reason=\"limit\"} 1"
    );
    drop(open.pop());
    std::thread::sleep(Duration::from_millis(300));
    let mut again = connect(&cfg);
    let local = again.local_addr().unwrap();
    again
        .write_all(options(local, sip, 10, "").as_bytes())
        .unwrap();
    assert_eq!(
        final_on(&mut again),
        Ok(200),
        "a connection after one closed"
    );
    drop(open);
    drop(again);
    std::thread::sleep(Duration::from_millis(300));

    // Size: a request over 8192 bytes gets 513 over UDP; over TCP too, its body is skipped
    // and the next request on the connection is answered.
    let pad = format!("X-Pad: {}\r\n", "p".repeat(9000));
    let c = RawSip::new(sip);
    c.send(&options(c.local, sip, 20, &pad).replace("SIP/2.0/TCP", "SIP/2.0/UDP"));
    let r = c
        .recv_until(2 * SEC, |m| m.status().is_some())
        .pop()
        .expect("an answer to the large datagram");
    assert_eq!(r.status(), Some(513), "{}", r.text);
    assert!(
        r.text.lines().next().unwrap().contains("8192"),
        "{}",
        r.text
    );
    let mut s = connect(&cfg);
    let local = s.local_addr().unwrap();
    let body = format!("{}\r\n", "b".repeat(9000));
    let big = options(local, sip, 21, "Content-Type: text/plain\r\n").replace(
        "Content-Length: 0",
        &format!("Content-Length: {}", body.len()),
    ) + &body;
    s.write_all(big.as_bytes()).unwrap();
    assert_eq!(final_on(&mut s), Ok(513), "a large body over TCP");
    s.write_all(options(local, sip, 22, "").as_bytes()).unwrap();
    assert_eq!(
        final_on(&mut s),
        Ok(200),
        "the request after the skipped body"
    );
    // A complete head over the limit is answered too; one still growing past the limit
    // without its end cannot be, and ends the connection.
    s.write_all(options(local, sip, 23, &pad).as_bytes())
        .unwrap();
    assert_eq!(final_on(&mut s), Ok(513), "a head over the limit");
    let endless = options(local, sip, 24, &pad);
    s.write_all(&endless.as_bytes()[..endless.len() - 2])
        .unwrap();
    assert_eq!(
        final_on(&mut s),
        Err("closed"),
        "a head without end over the limit"
    );

    // A sender too slow to finish its message is cut off after 2 s (within the 1 s check).
    let mut slow = connect(&cfg);
    let local = slow.local_addr().unwrap();
    let msg = options(local, sip, 30, "");
    slow.write_all(&msg.as_bytes()[..40]).unwrap();
    let t = Instant::now();
    assert!(
        closed_within(&mut slow, 5 * SEC),
        "the slow sender was not cut off"
    );
    assert!(t.elapsed() >= SEC, "cut off after {:?}", t.elapsed());
    assert_eq!(
        metric(
            &cfg,
            "milliwatt_sip_tcp_connections_closed_total{reason=\"slow\"}"
        ),
        "milliwatt_sip_tcp_connections_closed_total{reason=\"slow\"} 1"
    );

    // An unused connection is closed after 3 s; a used one is not cut before.
    let mut idle = connect(&cfg);
    let local = idle.local_addr().unwrap();
    idle.write_all(options(local, sip, 40, "").as_bytes())
        .unwrap();
    assert_eq!(final_on(&mut idle), Ok(200));
    let t = Instant::now();
    assert!(
        closed_within(&mut idle, 6 * SEC),
        "the idle connection stays open"
    );
    assert!(t.elapsed() >= 2 * SEC, "closed after {:?}", t.elapsed());

    // The service answered throughout.
    let c = RawSip::new(sip);
    c.send(&c.request("OPTIONS", "alive@test", "alive", 1, "tag=a", true, "", ""));
    assert_eq!(
        c.recv_until(2 * SEC, |m| m.status().is_some())
            .pop()
            .and_then(|m| m.status()),
        Some(200)
    );
    assert_eq!(
        metric(&cfg, "milliwatt_sip_responses_total{code=\"513\"}"),
        "milliwatt_sip_responses_total{code=\"513\"} 3"
    );
}
