//! End to end with Linphone's command-line client (Debian `linphone-cli`, `linphonec`): a real
//! SIP user agent of another family than baresip dials the server, records what it receives and
//! decodes (file sound mode: `soundcard use files`, `record`), and the test judges the tone.
//!
//! Linphone picks the address it puts in its SDP from the host's routes (an IPv6 or LAN address,
//! not the loopback the server is bound to), so the test runs in a network namespace of its own
//! with only loopback up: there Linphone has nothing else to choose.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::wav::{judge_recording, read_wav};
use common::{
    free_port, reexec_in_loopback_namespace, require_tool, rtp_port_block, temp_dir, wait_bounded,
    Mode, Server, TestConfig,
};

#[test]
fn linphone_records_the_tone() {
    if reexec_in_loopback_namespace("linphone_records_the_tone") {
        return;
    }
    let exe = require_tool("linphonec", "linphone-cli");
    let mut cfg = TestConfig::new();
    cfg.tone_seconds = 3;
    let server = Server::start(cfg.clone(), Mode::AllInOne);
    let dir = temp_dir("linphone");
    let home = dir.join("home");
    std::fs::create_dir_all(home.join(".local/share/linphone")).unwrap();
    let rc = dir.join("linphonerc");
    // Its own SIP port (UDP only) and RTP port, no IPv6, no video.
    std::fs::write(
        &rc,
        format!(
            "[sip]\nsip_port={}\nsip_tcp_port=-1\nsip_tls_port=-1\nuse_ipv6=0\n\
             [rtp]\naudio_rtp_port={}\n[video]\nenabled=0\n",
            free_port(),
            rtp_port_block(2).0
        ),
    )
    .unwrap();
    let rec = dir.join("received.wav");
    let log = dir.join("linphonec.log");
    let mut child = Command::new(exe)
        .arg("-c")
        .arg(&rc)
        .args(["-d", "0"])
        .env("HOME", &home)
        .stdin(Stdio::piped())
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting linphonec");
    let mut stdin = child.stdin.take().unwrap();
    let mut say = |line: String| {
        stdin.write_all(format!("{line}\n").as_bytes()).unwrap();
        stdin.flush().unwrap();
        std::thread::sleep(Duration::from_millis(300));
    };
    say("soundcard use files".into());
    say(format!("record {}", rec.display()));
    say(format!("call sip:milliwatt@127.0.0.1:{}", cfg.sip_port));
    // The server hangs up after the tone; Linphone then ends the call (and the recording).
    let output = || std::fs::read_to_string(&log).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !(server.log_text().contains("call ended") && output().contains("ended")) {
        assert!(
            Instant::now() < deadline,
            "no call ended within 20 s; linphonec said:\n{}",
            output()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    say("quit".into());
    drop(stdin);
    wait_bounded(child, Duration::from_secs(10), "linphonec");
    let said = output();
    assert!(
        said.contains("connected") && said.contains("Media streams established"),
        "Linphone never established the call:\n{said}"
    );
    let log = server.log_text();
    for needle in [
        "reason=tone finished",
        "hangup_by=\"milliwatt\"",
        "remote_rtp=127.0.0.1:",
    ] {
        assert!(log.contains(needle), "server log lacks {needle:?}:\n{log}");
    }
    let codec = if log.contains("codec=PCMA") {
        "PCMA"
    } else {
        "PCMU"
    };
    let wav = read_wav(&rec);
    // linphonec's WAV writer counts the 44-byte header in the data chunk's size; more missing
    // would mean a recording cut short.
    assert!(
        wav.missing <= 44,
        "the recording misses {} bytes (not closed?)",
        wav.missing
    );
    let heard = judge_recording(
        &wav,
        codec,
        f64::from(cfg.frequency),
        cfg.tone_seconds as f64,
    );
    eprintln!("linphone recorded {codec}: {heard}");
    let _ = std::fs::remove_dir_all(&dir);
}
