//! End to end with baresip (Debian `baresip-core`) on loopback: a real SIP user agent dials the
//! server, its `sndfile` module records the audio it received and decoded, and the test reads that
//! recording back and judges the tone: frequency, purity, level and duration.
//!
//! baresip is configured for loopback only: SIP on 127.0.0.1, no registration, no STUN/TURN/ICE,
//! no DNS server but 127.0.0.1, no sound card (no audio player; a silent WAV file as the source).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::rtp::{goertzel_power, zero_crossing_frequency};
use common::tls::Pki;
use common::wav::{judge_recording, read_wav, write_wav, Wav};
use common::{
    free_port, require_tool, rtp_port_block, temp_dir, wait_bounded, Mode, Server, TestConfig,
};

/// Two consecutive free ports: baresip listens for SIP on UDP and TCP at `port` and for SIP over
/// TLS at `port + 1`.
fn free_port_pair() -> u16 {
    loop {
        let p = free_port();
        if free_port() == p + 1 {
            return p;
        }
    }
}

/// baresip's configuration: loopback only, no network helpers, no sound card, G.711 only.
fn baresip_config(
    sip_port: u16,
    rtp: (u16, u16),
    conf: &Path,
    rec: &Path,
    source: &Path,
) -> String {
    format!(
        "# baresip 1.0.0 for the Milliwatt end-to-end test: loopback only.
poll_method\t\tepoll
sip_listen\t\t127.0.0.1:{sip_port}
net_interface\t\t127.0.0.1
dns_server\t\t127.0.0.1:53
call_local_timeout\t20
call_max_calls\t\t1
audio_path\t\t{conf}
audio_player\t\t
audio_alert\t\t
audio_source\t\taufile,{source}
ausrc_srate\t\t8000
ausrc_channels\t\t1
auplay_srate\t\t8000
auplay_channels\t\t1
audio_level\t\tno
rtp_tos\t\t\t0
rtp_ports\t\t{rs}-{re}
rtcp_mux\t\tno
rtp_stats\t\tno
module_path\t\t/usr/lib/baresip/modules
# the only audio codec: PCMU and PCMA
module\t\t\tg711.so
# audio source: a WAV file of silence
module\t\t\taufile.so
# records the decoded received audio to <snd_path>/dump-<time>-dec.wav
module\t\t\tsndfile.so
# reads the accounts file
module_app\t\taccount.so
# the /dial command
module_app\t\tmenu.so
snd_path\t\t{rec}
",
        conf = conf.display(),
        source = source.display(),
        rec = rec.display(),
        rs = rtp.0,
        re = rtp.1 - 1,
    )
}

/// A running baresip, killed if the test fails before it is stopped.
struct Baresip {
    child: Option<Child>,
    log: PathBuf,
}

impl Baresip {
    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn exited(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(Some(_))))
    }

    /// Asks baresip to quit (SIGINT, as Ctrl-C) and waits for it, bounded.
    fn stop(&mut self) {
        let child = self.child.take().expect("baresip running");
        let _ = Command::new("kill")
            .arg("-INT")
            .arg(child.id().to_string())
            .status();
        let status = wait_bounded(child, Duration::from_secs(10), "baresip");
        assert!(
            status.success(),
            "baresip exited with {status}; its output:\n{}",
            self.log_text()
        );
    }
}

impl Drop for Baresip {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            eprintln!("---- baresip output ----\n{}", self.log_text());
        }
    }
}

/// Dials `uri` with baresip (`extra` appended to its configuration), which sends `source` (8 kHz
/// samples) as its audio, and returns the WAV recording of what baresip received, the codec
/// baresip decoded, and the working directory (kept when the test fails).
fn baresip_call(
    exe: &Path,
    server: &Server,
    uri: &str,
    source: &[i16],
    extra: &str,
    account_params: &str,
) -> (Wav, String, PathBuf) {
    let dir = temp_dir("baresip");
    let conf = dir.join("conf");
    let rec = dir.join("rec");
    std::fs::create_dir_all(&conf).unwrap();
    std::fs::create_dir_all(&rec).unwrap();
    let source_path = dir.join("source.wav");
    write_wav(&source_path, 8000, source);
    let source = source_path;
    let sip_port = free_port_pair();
    std::fs::write(
        conf.join("config"),
        baresip_config(sip_port, rtp_port_block(4), &conf, &rec, &source) + extra,
    )
    .unwrap();
    // regint=0: the account never registers.
    std::fs::write(
        conf.join("accounts"),
        format!("<sip:test@127.0.0.1>;regint=0{account_params}\n"),
    )
    .unwrap();
    let log = dir.join("baresip.log");
    let out = std::fs::File::create(&log).unwrap();
    let child = Command::new(exe)
        .current_dir(&dir)
        .arg("-4")
        .arg("-f")
        .arg(&conf)
        // A bound of its own, beyond the one below.
        .args(["-t", "30"])
        .arg("-e")
        .arg(format!("/dial {uri}"))
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .expect("starting baresip");
    let mut baresip = Baresip {
        child: Some(child),
        log,
    };
    // The server hangs up after the tone; baresip then closes the call (and the recording).
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let ended = server.log_text().contains("call ended");
        let closed = baresip.log_text().contains("terminated");
        if ended && closed {
            break;
        }
        assert!(
            !baresip.exited(),
            "baresip exited before the call ended; its output:\n{}",
            baresip.log_text()
        );
        assert!(
            Instant::now() < deadline,
            "no call ended within 20 s (server: {ended}, baresip: {closed})"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    baresip.stop();
    let output = baresip.log_text();
    assert!(
        output.contains("Call established"),
        "baresip never established the call:\n{output}"
    );
    let codec = output
        .lines()
        .find_map(|l| l.split("Set audio decoder: ").nth(1))
        .and_then(|s| s.split_whitespace().next())
        .unwrap_or_else(|| panic!("baresip set no audio decoder:\n{output}"))
        .to_string();
    let dumps: Vec<PathBuf> = std::fs::read_dir(&rec)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with("-dec.wav"))
        .collect();
    assert_eq!(
        dumps.len(),
        1,
        "expected one recording of the received audio in {}, found {dumps:?}; baresip:\n{output}",
        rec.display()
    );
    let wav = read_wav(&dumps[0]);
    assert_eq!(
        wav.missing, 0,
        "baresip's recording is cut short (the file was not closed?)"
    );
    (wav, codec, dir)
}

/// What a TLS server at `addr` presents: its certificate's SHA-256 fingerprint (openssl
/// s_client, bounded).
fn served_fingerprint(addr: &str) -> String {
    let child = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "openssl s_client -connect {addr} </dev/null 2>/dev/null | openssl x509 -noout -fingerprint -sha256"
        ))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting openssl s_client");
    let (_, out, _) = common::output_bounded(child, Duration::from_secs(10), "openssl s_client");
    out.trim().to_string()
}

fn file_fingerprint(pem: &Path) -> String {
    let out = Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
        .arg(pem)
        .output()
        .expect("openssl x509");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn baresip_hears_the_tone(frequency: u32) {
    baresip_hears_the_tone_over(frequency, "udp", false)
}

/// A baresip call to the default tone over `transport` (udp, tcp or tls); over TLS (the service's certificate from a
/// private CA baresip is given; a client that opened a TLS connection and never handshakes is
/// kept waiting meanwhile, and must not stop the call).
/// With `srtp` too, baresip insists on SRTP with SDES keys (`mediaenc=srtp-mand`): its offer is
/// `RTP/SAVP` with `a=crypto` lines, and it records only what decrypts and authenticates.
fn baresip_hears_the_tone_over(frequency: u32, transport: &str, srtp: bool) {
    let tls = transport == "tls";
    let exe = require_tool("baresip", "baresip-core");
    let mut cfg = TestConfig::new();
    cfg.frequency = frequency;
    let certs = temp_dir("sip-tls");
    let tls_port = free_port();
    if tls {
        // The media gRPC test PKI: its server certificate (localhost, 127.0.0.1) serves SIP too.
        Pki::generate(&certs);
        cfg.sip_extra = format!(
            "tls_certificate_file = \"{}\"\ntls_key_file = \"{}\"\ntls_port = {tls_port}\n",
            certs.join("media.pem").display(),
            certs.join("media.key").display()
        );
    }
    let server = Server::start(cfg.clone(), Mode::AllInOne);
    let (uri, mut extra) = if tls {
        (
            format!("sip:milliwatt@127.0.0.1:{tls_port};transport=tls"),
            format!("sip_cafile\t\t{}\n", certs.join("ca.pem").display()),
        )
    } else if transport == "tcp" {
        (
            format!(
                "sip:milliwatt@127.0.0.1:{};transport=tcp",
                server.cfg.sip_port
            ),
            String::new(),
        )
    } else {
        (
            format!("sip:milliwatt@127.0.0.1:{}", server.cfg.sip_port),
            String::new(),
        )
    };
    let account = if srtp {
        extra.push_str("module\t\t\tsrtp.so\n");
        ";mediaenc=srtp-mand"
    } else {
        ""
    };
    // A client that connects to the TLS port and never says a word.
    let _stalled = tls.then(|| {
        std::net::TcpStream::connect(("127.0.0.1", tls_port)).expect("connecting to the TLS port")
    });
    let (wav, codec, dir) = baresip_call(&exe, &server, &uri, &[0; 8000 * 20], &extra, account);
    if srtp {
        let log = server.log_text();
        assert!(
            log.contains("srtp=\"AES_CM_128_HMAC_SHA1_"),
            "the call's media was not SRTP:\n{log}"
        );
        // baresip's own SRTP stream authenticated and decrypted here (a packet that does not
        // is counted invalid, not received).
        let received: u64 = log
            .split("rtp_received=")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        assert!(
            received >= 100,
            "only {received} of baresip's SRTP packets decrypted:\n{log}"
        );
    }
    let upper = transport.to_ascii_uppercase();
    let log = server.log_text();
    assert!(
        log.contains("incoming INVITE") && log.contains(&format!("transport=\"{upper}\"")),
        "the INVITE came over {upper}:\n{log}"
    );
    if tls {
        // Reloaded on change: a new pair in place of the old, and the next handshake gets it.
        let fresh = temp_dir("sip-tls-new");
        Pki::generate(&fresh);
        std::fs::copy(fresh.join("media.key"), certs.join("media.key")).unwrap();
        std::fs::copy(fresh.join("media.pem"), certs.join("media.pem")).unwrap();
        server.wait_log("SIP TLS certificate reloaded", Duration::from_secs(10));
        let want = file_fingerprint(&fresh.join("media.pem"));
        assert!(want.contains("Fingerprint"), "{want}");
        assert_eq!(served_fingerprint(&format!("127.0.0.1:{tls_port}")), want);
        let _ = std::fs::remove_dir_all(&fresh);
    }
    let _ = std::fs::remove_dir_all(&certs);

    server.wait_log("reason=tone finished", Duration::from_secs(2));
    let log = server.log_text();
    for needle in ["BYE sent", "hangup_by=\"milliwatt\"", "tone started"] {
        assert!(log.contains(needle), "server log lacks {needle:?}:\n{log}");
    }
    assert!(
        codec == "PCMU" || codec == "PCMA",
        "baresip decoded {codec}, not G.711"
    );
    assert!(
        log.contains(&format!("codec={codec}")),
        "the server did not send {codec}:\n{log}"
    );

    let heard = judge_recording(&wav, &codec, f64::from(frequency), cfg.tone_seconds as f64);
    eprintln!("baresip recorded {codec}: {heard}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn baresip_over_tcp_records_the_tone() {
    baresip_hears_the_tone_over(440, "tcp", false);
}

#[test]
fn baresip_over_tls_records_the_tone() {
    baresip_hears_the_tone_over(440, "tls", false);
}

#[test]
fn baresip_over_tls_with_srtp_records_the_tone() {
    baresip_hears_the_tone_over(440, "tls", true);
}

#[test]
fn baresip_records_the_440_hz_tone() {
    baresip_hears_the_tone(440);
}

#[test]
fn baresip_records_a_1004_hz_tone() {
    baresip_hears_the_tone(1004);
}

#[test]
fn baresip_hears_its_own_voice_from_the_echo_plan() {
    // baresip sends a 700 Hz tone (its aufile source) to a number whose plan is the echo test;
    // what it receives and decodes must be that tone, for the call's time, and the server must
    // have sent no tone of its own.
    let exe = require_tool("baresip", "baresip-core");
    let mut cfg = TestConfig::new();
    cfg.extra = "[[behavior.plans]]\nnumber = \"echo\"\necho = true\n".into();
    let server = Server::start(cfg.clone(), Mode::AllInOne);
    let voice: Vec<i16> = (0..8000 * 20)
        .map(|n| {
            (8000.0 * (2.0 * std::f64::consts::PI * 700.0 * f64::from(n) / 8000.0).sin()) as i16
        })
        .collect();
    let uri = format!("sip:echo@127.0.0.1:{}", server.cfg.sip_port);
    let (wav, codec, dir) = baresip_call(&exe, &server, &uri, &voice, "", "");
    server.wait_log(
        "echo test: the caller's packets sent back",
        Duration::from_secs(2),
    );
    let log = server.log_text();
    assert!(log.contains("echo=true"), "{log}");
    let rate = f64::from(wav.rate);
    let audio: Vec<f64> = wav.samples.iter().map(|&s| f64::from(s)).collect();
    let peak = audio.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    assert!(peak >= 2000.0, "nothing came back: peak {peak} ({codec})");
    let threshold = peak / 4.0;
    let first = audio.iter().position(|v| v.abs() > threshold).unwrap();
    let last = audio.iter().rposition(|v| v.abs() > threshold).unwrap();
    let heard = &audio[first..=last];
    let duration = heard.len() as f64 / rate;
    let expected = cfg.tone_seconds as f64;
    assert!(
        (duration - expected).abs() <= 0.5,
        "the echo lasted {duration:.3} s in baresip's recording, expected about {expected} s"
    );
    let measured = zero_crossing_frequency(heard, rate);
    assert!(
        (measured - 700.0).abs() <= 1.0,
        "baresip heard {measured:.2} Hz, its own voice is 700 Hz"
    );
    let on = goertzel_power(heard, 700.0, rate);
    let off = goertzel_power(heard, 440.0, rate);
    assert!(
        on > 1000.0 * off,
        "not its own voice (700 Hz {on}, 440 Hz {off})"
    );
    eprintln!("baresip heard its own 700 Hz back ({codec}): {measured:.3} Hz for {duration:.3} s");
    let _ = std::fs::remove_dir_all(&dir);
}
