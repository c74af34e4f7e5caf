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
use common::{
    free_port, require_tool, rtp_port_block, temp_dir, wait_bounded, Mode, Server, TestConfig,
};

/// A 16-bit PCM WAV file.
struct Wav {
    rate: u32,
    channels: u16,
    samples: Vec<i16>,
}

fn le16(b: &[u8]) -> u16 {
    u16::from_le_bytes([b[0], b[1]])
}

fn le32(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

/// Reads a RIFF/WAVE file holding 16-bit PCM.
fn read_wav(path: &Path) -> Wav {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(
        bytes.len() >= 12 && &bytes[0..4] == b"RIFF" && &bytes[8..12] == b"WAVE",
        "{} is not a RIFF/WAVE file",
        path.display()
    );
    let mut fmt: Option<(u16, u16, u32, u16)> = None;
    let mut pos = 12;
    while pos + 8 <= bytes.len() {
        let id = &bytes[pos..pos + 4];
        let size = le32(&bytes[pos + 4..pos + 8]) as usize;
        let body = pos + 8;
        let end = body.saturating_add(size).min(bytes.len());
        if id == b"fmt " {
            assert!(size >= 16, "fmt chunk of {size} bytes");
            let b = &bytes[body..];
            fmt = Some((le16(&b[0..]), le16(&b[2..]), le32(&b[4..]), le16(&b[14..])));
        } else if id == b"data" {
            let (format, channels, rate, bits) = fmt.expect("a data chunk before the fmt chunk");
            assert_eq!(format, 1, "WAV format {format}, expected 1 (PCM)");
            assert_eq!(bits, 16, "{bits} bits per sample, expected 16");
            assert_eq!(
                end - body,
                size,
                "the data chunk is cut short (the file was not closed?)"
            );
            let samples = bytes[body..end]
                .chunks_exact(2)
                .map(|c| i16::from_le_bytes([c[0], c[1]]))
                .collect();
            return Wav {
                rate,
                channels,
                samples,
            };
        }
        pos = body + size + size % 2;
    }
    panic!("{}: no data chunk", path.display());
}

/// Writes a mono 16-bit PCM WAV file.
fn write_wav(path: &Path, rate: u32, samples: &[i16]) {
    let data_len = (samples.len() * 2) as u32;
    let mut b = Vec::with_capacity(44 + samples.len() * 2);
    b.extend_from_slice(b"RIFF");
    b.extend_from_slice(&(36 + data_len).to_le_bytes());
    b.extend_from_slice(b"WAVEfmt ");
    b.extend_from_slice(&16u32.to_le_bytes());
    b.extend_from_slice(&1u16.to_le_bytes()); // PCM
    b.extend_from_slice(&1u16.to_le_bytes()); // mono
    b.extend_from_slice(&rate.to_le_bytes());
    b.extend_from_slice(&(rate * 2).to_le_bytes());
    b.extend_from_slice(&2u16.to_le_bytes());
    b.extend_from_slice(&16u16.to_le_bytes());
    b.extend_from_slice(b"data");
    b.extend_from_slice(&data_len.to_le_bytes());
    for s in samples {
        b.extend_from_slice(&s.to_le_bytes());
    }
    std::fs::write(path, b).unwrap();
}

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
    std::fs::write(conf.join("accounts"), "<sip:test@127.0.0.1>;regint=0\n").unwrap();
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
    (read_wav(&dumps[0]), codec, dir)
}

/// A private CA and a certificate for localhost and 127.0.0.1 (scripts/grpc-certs.sh, whose
/// server certificate serves SIP over TLS as well): `ca.pem`, `media.pem`, `media.key` in `dir`.
fn make_certs(dir: &Path) {
    require_tool("openssl", "openssl");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/grpc-certs.sh");
    let out = Command::new("bash")
        .arg(&script)
        .arg(dir)
        .args(["localhost", "127.0.0.1"])
        .output()
        .expect("running scripts/grpc-certs.sh");
    assert!(
        out.status.success(),
        "scripts/grpc-certs.sh failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
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
    baresip_hears_the_tone_over(frequency, false)
}

/// A baresip call to the default tone; over TLS when `tls` (the service's certificate from a
/// private CA baresip is given; a client that opened a TLS connection and never handshakes is
/// kept waiting meanwhile, and must not stop the call).
fn baresip_hears_the_tone_over(frequency: u32, tls: bool) {
    let exe = require_tool("baresip", "baresip-core");
    let mut cfg = TestConfig::new();
    cfg.frequency = frequency;
    let certs = temp_dir("sip-tls");
    let tls_port = free_port();
    if tls {
        make_certs(&certs);
        cfg.sip_extra = format!(
            "tls_certificate_file = \"{}\"\ntls_key_file = \"{}\"\ntls_port = {tls_port}\n",
            certs.join("media.pem").display(),
            certs.join("media.key").display()
        );
    }
    let server = Server::start(cfg.clone(), Mode::AllInOne);
    let (uri, extra) = if tls {
        (
            format!("sip:milliwatt@127.0.0.1:{tls_port};transport=tls"),
            format!("sip_cafile\t\t{}\n", certs.join("ca.pem").display()),
        )
    } else {
        (
            format!("sip:milliwatt@127.0.0.1:{}", server.cfg.sip_port),
            String::new(),
        )
    };
    // A client that connects to the TLS port and never says a word.
    let _stalled = tls.then(|| {
        std::net::TcpStream::connect(("127.0.0.1", tls_port)).expect("connecting to the TLS port")
    });
    let (wav, codec, dir) = baresip_call(&exe, &server, &uri, &[0; 8000 * 20], &extra);
    if tls {
        let log = server.log_text();
        assert!(
            log.contains("incoming INVITE") && log.contains("transport=\"TLS\""),
            "the INVITE came over TLS:\n{log}"
        );
        // Reloaded on change: a new pair in place of the old, and the next handshake gets it.
        let fresh = temp_dir("sip-tls-new");
        make_certs(&fresh);
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

    assert_eq!(wav.channels, 1, "recording channels");
    assert_eq!(wav.rate, 8000, "recording sample rate");
    let rate = f64::from(wav.rate);
    let audio: Vec<f64> = wav.samples.iter().map(|&s| f64::from(s)).collect();
    let peak = audio.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    assert!(
        peak >= 2000.0,
        "no tone in the recording: peak {peak} over {} samples",
        audio.len()
    );
    // The tone segment: from the first to the last sample above a quarter of the peak.
    let threshold = peak / 4.0;
    let first = audio.iter().position(|v| v.abs() > threshold).unwrap();
    let last = audio.iter().rposition(|v| v.abs() > threshold).unwrap();
    let tone = &audio[first..=last];
    let duration = tone.len() as f64 / rate;
    let expected = cfg.tone_seconds as f64;
    assert!(
        (duration - expected).abs() <= 0.5,
        "the tone lasted {duration:.3} s in baresip's recording, expected {expected} s ±0.5"
    );
    let measured = zero_crossing_frequency(tone, rate);
    assert!(
        (measured - f64::from(frequency)).abs() <= 1.0,
        "baresip heard {measured:.2} Hz, expected {frequency} Hz ±1"
    );
    let on = goertzel_power(tone, f64::from(frequency), rate);
    let off = goertzel_power(tone, f64::from(frequency) * 1.5, rate);
    assert!(
        on > 1000.0 * off,
        "the tone does not dominate the recording (on {on}, off {off})"
    );
    // The level: the recording holds the G.711 decoder's output. G.711 overload points:
    // +3.17 dBm0 (μ-law, peak 8159 << 2), +3.14 dBm0 (A-law, 4096 << 3).
    let rms = (tone.iter().map(|v| v * v).sum::<f64>() / tone.len() as f64).sqrt();
    #[allow(clippy::approx_constant)] // 3.14 is A-law's overload level, not pi
    let (overload_peak, overload_dbm0) = if codec == "PCMU" {
        (32636.0, 3.17)
    } else {
        (32768.0, 3.14)
    };
    let peak0: f64 = overload_peak / 10f64.powf(overload_dbm0 / 20.0);
    let level_dbm0 = 20.0 * (rms * 2f64.sqrt() / peak0).log10();
    assert!(
        (level_dbm0 + 10.0).abs() <= 0.5,
        "tone level {level_dbm0:.2} dBm0 in the recording, expected -10 dBm0"
    );
    eprintln!(
        "baresip recorded {codec}: {measured:.3} Hz, {duration:.3} s of tone \
         (recording {:.3} s), {level_dbm0:.2} dBm0",
        audio.len() as f64 / rate
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn baresip_over_tls_records_the_tone() {
    baresip_hears_the_tone_over(440, true);
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
    let (wav, codec, dir) = baresip_call(&exe, &server, &uri, &voice, "");
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
