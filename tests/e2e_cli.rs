//! `milliwatt-ctl sessions list|get|watch` (and its alias `milliwatt-media sessions`), the
//! inspection client, run as a user would run it against a media service with a live SIPp call.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::rtp::RtpSink;
use common::{
    bin_path, grpc, output_bounded, read_all, temp_dir, tone_scenario, wait_bounded, Mode, Server,
    TestConfig,
};
use serde_json::Value;

const SEC: Duration = Duration::from_secs(1);

/// `milliwatt-ctl [--config FILE] sessions ARGS...`, stdout and stderr piped.
fn spawn_cli(config: Option<&Path>, args: &[&str]) -> Child {
    spawn_bin("milliwatt-ctl", config, args)
}

/// `BINARY [--config FILE] sessions ARGS...` (`milliwatt-media sessions` is an alias).
fn spawn_bin(binary: &str, config: Option<&Path>, args: &[&str]) -> Child {
    let mut c = Command::new(bin_path(binary));
    if let Some(config) = config {
        c.arg("--config").arg(config);
    }
    c.arg("sessions")
        .args(args)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {binary} sessions: {e}"))
}

/// Runs the client to the end (at most 20 s): (exit code, stdout, stderr).
fn run_cli(config: Option<&Path>, args: &[&str]) -> (i32, String, String) {
    run_bin("milliwatt-ctl", config, args)
}

fn run_bin(binary: &str, config: Option<&Path>, args: &[&str]) -> (i32, String, String) {
    let (status, out, err) = output_bounded(
        spawn_bin(binary, config, args),
        20 * SEC,
        &format!("sessions {args:?}"),
    );
    let code = status
        .code()
        .unwrap_or_else(|| panic!("sessions {args:?} died: {status}\n{err}"));
    (code, out, err)
}

fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// The value of `name:` in `sessions get` text.
fn field<'a>(text: &'a str, name: &str) -> &'a str {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .unwrap_or_else(|| panic!("no {name:?} in\n{text}"))
        .trim()
}

#[test]
fn sessions_list_get_and_watch_show_a_live_call() {
    let mut cfg = TestConfig::new();
    cfg.tone_seconds = 4;
    let server = Server::start(cfg, Mode::Split);
    let config = server.dir.join("config.toml");

    // `watch` first; it says so on stderr once media has subscribed it, then the call starts.
    let mut watch = spawn_cli(
        Some(&config),
        &["watch", "--count", "3", "--timeout", "10", "--json"],
    );
    let watch_out = read_all(watch.stdout.take().unwrap());
    let (tx, rx) = mpsc::channel();
    let watch_err = {
        let stderr = watch.stderr.take().unwrap();
        std::thread::spawn(move || {
            let mut all = String::new();
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line.clone());
                all.push_str(&line);
                all.push('\n');
            }
            all
        })
    };
    let deadline = Instant::now() + 10 * SEC;
    loop {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) if line.contains("watching sessions at") => break,
            Ok(_) => {}
            Err(e) => panic!("`sessions watch` never started watching ({e})"),
        }
    }

    let sink = RtpSink::bind();
    let dir = temp_dir("scn");
    let sc = tone_scenario(&dir, sink.port(), "0", 15000);
    let remote = format!("127.0.0.1:{}", sink.port());
    let (session_id, call_id) = std::thread::scope(|s| {
        let caller = s.spawn(|| common::sipp(&server, &sc, &[], 15 * SEC));
        let deadline = Instant::now() + 10 * SEC;
        while sink.packets().is_empty() {
            assert!(Instant::now() < deadline, "the call never got RTP");
            std::thread::sleep(Duration::from_millis(50));
        }
        // What media itself says, to compare the client's output with.
        let sessions = grpc::list_sessions(&server.grpc_endpoint());
        assert_eq!(sessions.len(), 1, "{sessions:#?}");
        let live = &sessions[0];
        assert!(!live.call_id.is_empty());
        let id = live.session_id.clone();
        let local = format!("127.0.0.1:{}", live.local_port);

        // list, text: a header and one line with the call.
        let (code, out, err) = run_cli(Some(&config), &["list"]);
        assert_eq!(code, 0, "{err}");
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 2, "{out}");
        assert!(lines[0].starts_with("SESSION"), "{out}");
        let cols: Vec<&str> = lines[1].split_whitespace().collect();
        assert_eq!(
            cols[..6],
            [
                id.as_str(),
                live.call_id.as_str(),
                "sending",
                "PCMU/0",
                &local,
                &remote
            ]
        );

        // list, JSON lines.
        let (code, out, err) = run_cli(Some(&config), &["--json", "list"]);
        assert_eq!(code, 0, "{err}");
        let listed = json_lines(&out);
        assert_eq!(listed.len(), 1, "{out}");
        let v = &listed[0];
        assert_eq!(v["session_id"], id.as_str());
        assert_eq!(v["call_id"], live.call_id.as_str());
        // The proto3 JSON mapping (as grpcurl prints it): enums by name, 64-bit as strings.
        assert_eq!(v["state"], "SESSION_STATE_SENDING");
        assert_eq!(v["codec"], "CODEC_PCMU");
        assert_eq!(v["payload_type"], 0);
        assert!(v["packets_sent"]
            .as_str()
            .is_some_and(|n| n.parse::<u64>().unwrap() > 0));
        assert_eq!(v["local_address"], "127.0.0.1");
        assert_eq!(v["local_port"], live.local_port);
        assert_eq!(v["remote_address"], "127.0.0.1");
        assert_eq!(v["remote_port"], u32::from(sink.port()));

        // The alias prints the same session.
        let (code, out, err) = run_bin("milliwatt-media", Some(&config), &["--json", "list"]);
        assert_eq!(code, 0, "{err}");
        let aliased = json_lines(&out);
        assert_eq!(aliased.len(), 1, "{out}");
        assert_eq!(aliased[0]["session_id"], id.as_str());
        assert_eq!(aliased[0]["state"], "SESSION_STATE_SENDING");

        // get, text and JSON.
        let (code, out, err) = run_cli(Some(&config), &["get", &id]);
        assert_eq!(code, 0, "{err}");
        assert_eq!(field(&out, "session"), id);
        assert_eq!(field(&out, "call-id"), live.call_id);
        assert_eq!(field(&out, "state"), "sending");
        assert_eq!(field(&out, "codec/PT"), "PCMU/0");
        assert_eq!(field(&out, "local"), local);
        assert_eq!(field(&out, "remote"), remote);
        assert_eq!(field(&out, "tone"), "440 Hz at -10.0 dBm0");
        for name in ["received", "lost", "RTCP received", "remote loss", "RTT"] {
            field(&out, name);
        }
        let (code, out, err) = run_cli(Some(&config), &["get", &id, "--json"]);
        assert_eq!(code, 0, "{err}");
        let got = json_lines(&out);
        assert_eq!(got.len(), 1, "{out}");
        assert_eq!(got[0]["call_id"], live.call_id.as_str());
        assert_eq!(got[0]["codec"], "CODEC_PCMU");
        assert!(got[0]["quality"].is_object(), "{out}");

        // Unknown and malformed session ids.
        let (code, out, err) = run_cli(Some(&config), &["get", "00000000000000aa"]);
        assert_eq!(code, 1, "{out}{err}");
        assert!(err.contains("no session 00000000000000aa"), "{err}");
        assert!(out.is_empty(), "{out}");
        let (code, _, err) = run_cli(Some(&config), &["get", "not-an-id"]);
        assert_eq!(code, 2, "{err}");
        assert!(
            err.contains("session_id: \"not-an-id\" is not a session id"),
            "{err}"
        );

        caller.join().unwrap().assert_ok();
        (id, live.call_id.clone())
    });

    // watch: the call's three events, in order, then it exits by itself (--count 3).
    let status = wait_bounded(watch, 15 * SEC, "sessions watch");
    let (out, err) = (watch_out.join().unwrap(), watch_err.join().unwrap());
    assert!(status.success(), "watch: {status}\n{err}\n{out}");
    let events = json_lines(&out);
    let kinds: Vec<&str> = events.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        ["KIND_ALLOCATED", "KIND_TONE_STARTED", "KIND_RELEASED"],
        "{out}"
    );
    for e in &events {
        assert_eq!(e["session"]["call_id"], call_id.as_str(), "{e}");
        assert_eq!(e["session"]["session_id"], session_id.as_str(), "{e}");
        assert!(
            e["at"].as_str().is_some_and(|t| t.ends_with("+00:00")),
            "{e}"
        );
    }
    assert_eq!(events[1]["session"]["codec"], "CODEC_PCMU");
    assert_eq!(events[1]["session"]["remote_port"], u32::from(sink.port()));
    assert_eq!(events[2]["reason"], "tone finished");
    assert_eq!(events[2]["session"]["state"], "SESSION_STATE_RELEASED");

    // And no session is left.
    let (code, out, err) = run_cli(Some(&config), &["list"]);
    assert_eq!((code, out.trim()), (0, "no sessions"), "{err}");
}

#[test]
fn an_unreachable_media_service_exits_2_naming_the_endpoint() {
    let endpoint = format!("http://127.0.0.1:{}", common::free_port());
    for args in [
        &["--endpoint", &endpoint, "list"][..],
        &["get", "0123456789abcdef", "--endpoint", &endpoint],
        &[
            "watch",
            "--count",
            "1",
            "--timeout",
            "5",
            "--endpoint",
            &endpoint,
        ],
    ] {
        let (code, out, err) = run_cli(None, args);
        assert_eq!(code, 2, "{args:?}: {out}{err}");
        assert!(
            err.contains(&format!("cannot reach the media service at {endpoint}")),
            "{args:?}: {err}"
        );
        assert!(out.is_empty(), "{out}");
    }
}
