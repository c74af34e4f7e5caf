//! Interop with a real proxy: the service behind Kamailio (Debian `kamailio`) as a
//! record-routing stateful proxy, a SIPp caller in front of it, over UDP and over TCP. The
//! service's 200 must carry the proxy's Record-Route back, the caller's ACK (routed by that
//! route set) must reach the service, the tone must be whole, and the service's BYE must go out
//! through the proxy (the caller sees the proxy's Via on top of ours).
//!
//! Kamailio listens on loopback only; it forwards every new request to the service's address.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::rtp::{judge, Expect, RtpSink};
use common::{
    free_port, require_tool, scenario, sipp_to, temp_dir, wait_bounded, wait_until, Mode, Server,
    TestConfig,
};

/// Where Debian's kamailio keeps its modules.
fn kamailio_modules() -> PathBuf {
    for dir in [
        "/usr/lib/x86_64-linux-gnu/kamailio/modules",
        "/usr/lib/aarch64-linux-gnu/kamailio/modules",
        "/usr/lib/kamailio/modules",
    ] {
        if Path::new(dir).join("tm.so").exists() {
            return PathBuf::from(dir);
        }
    }
    panic!("kamailio's modules (tm.so) were not found: install the Debian package `kamailio`");
}

/// A record-routing stateful proxy: Max-Forwards checked, in-dialog requests loose-routed, new
/// requests record-routed and relayed to `target` over `transport`.
fn kamailio_config(port: u16, target: SocketAddr, transport: &str, modules: &Path) -> String {
    format!(
        r#"#!KAMAILIO
# Kamailio for the Milliwatt interop test: loopback only.
debug=2
log_stderror=yes
children=2
tcp_children=2
disable_sctp=yes
auto_aliases=no
listen=udp:127.0.0.1:{port}
listen=tcp:127.0.0.1:{port}
mpath="{modules}/"
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "maxfwd.so"
loadmodule "siputils.so"
loadmodule "pv.so"
loadmodule "xlog.so"
loadmodule "textops.so"
modparam("rr", "enable_full_lr", 1)

request_route {{
    if (!mf_process_maxfwd_header("10")) {{
        sl_send_reply("483", "Too Many Hops");
        exit;
    }}
    if (has_totag()) {{
        if (loose_route()) {{
            xlog("L_INFO", "milliwatt-interop: in-dialog $rm routed\n");
            t_relay();
            exit;
        }}
        if (is_method("ACK") && t_check_trans()) {{
            t_relay();
            exit;
        }}
        sl_send_reply("404", "No route");
        exit;
    }}
    if (is_method("CANCEL")) {{
        if (t_check_trans()) {{
            t_relay();
        }}
        exit;
    }}
    t_check_trans();
    record_route();
    $du = "sip:{target};transport={transport}";
    xlog("L_INFO", "milliwatt-interop: new $rm relayed to $du\n");
    t_relay();
    exit;
}}
"#,
        modules = modules.display(),
    )
}

/// A running Kamailio, stopped when dropped.
struct Kamailio {
    child: Option<Child>,
    log: PathBuf,
    addr: SocketAddr,
}

impl Kamailio {
    fn start(target: SocketAddr, transport: &str) -> Kamailio {
        let exe = require_tool("kamailio", "kamailio");
        let modules = kamailio_modules();
        let dir = temp_dir("kamailio");
        let port = free_port();
        let cfg = dir.join("kamailio.cfg");
        std::fs::write(&cfg, kamailio_config(port, target, transport, &modules)).unwrap();
        let log = dir.join("kamailio.log");
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(exe)
            .arg("-f")
            .arg(&cfg)
            // Foreground, logging to stderr; small memory pools; its runtime files here.
            .args(["-DD", "-E", "-m", "64", "-M", "8"])
            .arg("-Y")
            .arg(&dir)
            .arg("-P")
            .arg(dir.join("kamailio.pid"))
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("starting kamailio");
        let mut k = Kamailio {
            child: Some(child),
            log,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        };
        wait_until("kamailio listening", Duration::from_secs(10), || {
            if let Some(Ok(Some(status))) = k.child.as_mut().map(|c| c.try_wait()) {
                panic!("kamailio exited with {status}:\n{}", k.log_text());
            }
            std::net::TcpStream::connect(k.addr).is_ok()
        });
        k
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        if let Some(child) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
            wait_bounded(child, Duration::from_secs(5), "kamailio");
        }
        if std::thread::panicking() {
            eprintln!("---- kamailio output ----\n{}", self.log_text());
        }
    }
}

fn call_through_kamailio(transport: &str, sipp_transport: &str) {
    let mut cfg = TestConfig::new();
    cfg.tone_seconds = 2;
    let server = Server::start(cfg.clone(), Mode::AllInOne);
    let kamailio = Kamailio::start(cfg.sip_addr(), transport);
    let sink = RtpSink::bind();
    let dir = temp_dir("scn");
    let sc = scenario(
        "uac_tone_proxied.xml",
        &[
            ("TARGET", cfg.sip_addr().to_string()),
            ("RTP_PORT", sink.port().to_string()),
            ("BYE_TIMEOUT_MS", "10000".into()),
        ],
        &dir,
    );
    let run = sipp_to(
        kamailio.addr,
        &sc,
        &["-t", sipp_transport],
        Duration::from_secs(20),
    );
    std::thread::sleep(Duration::from_millis(200));
    let packets = sink.finish();
    run.assert_ok();
    let report = judge(&packets, &Expect::pcmu_440(Duration::from_secs(2)));
    eprintln!("through kamailio ({transport}): {report:?}");
    let ok = run
        .received()
        .find(|m| m.starts_with("SIP/2.0 200") || m.contains("\nSIP/2.0 200"))
        .expect("a 200");
    assert!(
        ok.contains(&format!(
            "Record-Route: <sip:127.0.0.1:{}",
            kamailio.addr.port()
        )),
        "the 200 carries the proxy's Record-Route back:\n{ok}"
    );
    let bye = run
        .received()
        .find(|m| m.contains("BYE sip:"))
        .expect("our BYE");
    let vias: Vec<&str> = bye
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("Via:"))
        .collect();
    assert_eq!(vias.len(), 2, "the proxy's Via and ours:\n{bye}");
    assert!(
        vias[0].contains(&format!("127.0.0.1:{}", kamailio.addr.port())),
        "our BYE came through the proxy:\n{bye}"
    );
    let log = kamailio.log_text();
    assert!(
        log.contains("milliwatt-interop: new INVITE relayed"),
        "{log}"
    );
    for routed in ["ACK", "BYE"] {
        assert!(
            log.contains(&format!("milliwatt-interop: in-dialog {routed} routed")),
            "the {routed} followed the route set:\n{log}"
        );
    }
    server.wait_log("reason=tone finished", Duration::from_secs(2));
}

#[test]
fn a_caller_behind_kamailio_over_udp_hears_the_tone() {
    call_through_kamailio("udp", "u1");
}

#[test]
fn a_caller_behind_kamailio_over_tcp_hears_the_tone() {
    call_through_kamailio("tcp", "t1");
}
