//! `milliwatt-ctl sessions list|get|watch` (also `milliwatt-media sessions ...`): a
//! command-line client that inspects the live sessions of a media service over gRPC
//! (`ListSessions`, `GetSession`, `WatchSessions`).
//!
//! Pure: the text form of sessions and events (functions of the prost messages), and what an
//! error means (message and exit code). `--json` prints the messages themselves in the proto3
//! JSON mapping (serde implementations derived from the .proto by pbjson in `milliwatt-proto`:
//! the same JSON `grpcurl` prints, nothing mirrored by hand). Shell: [`run`] connects, calls and
//! prints.
//!
//! Exit codes: 0 done; 1 no such session (or `watch --count N` saw fewer than N events before
//! `--timeout`); 2 media unreachable, a request the server refused (its message is printed), or
//! any other failure.

use std::fmt::Write as _;
use std::io::Write as _;
use std::time::Duration;

use milliwatt_common::grpc_auth::{ClientInterceptor, Secret};
use milliwatt_common::grpc_tls::{ClientTls, TlsError};
use milliwatt_proto::v1 as pb;
use pb::media_client::MediaClient;
use tokio::time::Instant;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::Code;

/// Exit code: no such session (or too few events before the timeout).
pub const EXIT_NOT_FOUND: i32 = 1;
/// Exit code: media unreachable, request refused, or another failure.
pub const EXIT_ERROR: i32 = 2;

/// How long to wait for media to accept the connection, and for a unary answer.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// `sessions`: inspect the live sessions of a media service.
#[derive(Debug, Clone, clap::Args)]
pub struct SessionsArgs {
    /// The media service's gRPC endpoint [default: the configuration's `media.endpoint`].
    #[arg(long, value_name = "URL", global = true)]
    pub endpoint: Option<String>,
    /// Print JSON lines (one object per session or event) instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: SessionsCommand,
}

#[derive(Debug, Clone, PartialEq, clap::Subcommand)]
pub enum SessionsCommand {
    /// One line per live session: ids, state, codec, addresses, packets, loss, jitter, MOS, age.
    List,
    /// Every field of one session, with its receive quality. Exit 1 when there is no such session.
    Get {
        /// The session id (16 hex digits), as `list` shows it.
        #[arg(value_name = "SESSION_ID")]
        session_id: String,
    },
    /// Print session events as they happen (times in UTC), until Ctrl-C or the stream ends.
    Watch {
        /// Exit after this many events.
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
        count: Option<u64>,
        /// Exit after this many seconds (exit 1 if `--count` events have not been seen by then).
        #[arg(long, value_name = "SECONDS", value_parser = parse_seconds)]
        timeout: Option<Duration>,
    },
}

fn parse_seconds(s: &str) -> Result<Duration, String> {
    s.parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v > 0.0)
        .and_then(|v| Duration::try_from_secs_f64(v).ok())
        .ok_or_else(|| format!("{s:?} is not a number of seconds above 0"))
}

/// How this client proves itself to media and checks media: `media.grpc_token` (`--set
/// media.grpc_token=...` or `MILLIWATT_MEDIA__GRPC_TOKEN`) and `media.grpc_tls_*`.
#[derive(Clone, Debug, Default)]
pub struct Access {
    pub token: Secret,
    pub tls: ClientTls,
}

impl Access {
    /// From the configuration; the TLS files are read and checked now.
    pub fn from_config(m: &milliwatt_common::config::MediaConfig) -> Result<Access, TlsError> {
        Ok(Access {
            token: m.grpc_token.clone(),
            tls: ClientTls::from_config(m)?,
        })
    }

    /// As [`Access::from_config`], or the exit a command-line tool takes on a bad TLS file.
    pub fn from_config_or_exit(m: &milliwatt_common::config::MediaConfig, program: &str) -> Access {
        Access::from_config(m).unwrap_or_else(|e| {
            eprintln!("{program}: {e}");
            std::process::exit(EXIT_ERROR)
        })
    }
}

/// Runs a `sessions` command against `--endpoint` or `default_endpoint`; returns the exit code.
/// Results go to stdout, errors (and the "watching" notice) to stderr.
pub async fn run(args: &SessionsArgs, default_endpoint: &str, access: &Access) -> i32 {
    let endpoint = args.endpoint.as_deref().unwrap_or(default_endpoint);
    match execute(args, endpoint, access).await {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("milliwatt-media: {}", e.message);
            e.code
        }
    }
}

/// A failure: what to tell the user and the exit code.
#[derive(Debug, PartialEq)]
pub struct Failure {
    pub message: String,
    pub code: i32,
}

impl Failure {
    fn new(code: i32, message: impl Into<String>) -> Failure {
        Failure {
            message: message.into(),
            code,
        }
    }
}

/// Media could not be reached at `endpoint`.
pub fn unreachable(endpoint: &str, detail: &str) -> Failure {
    Failure::new(
        EXIT_ERROR,
        format!("cannot reach the media service at {endpoint}: {detail}"),
    )
}

/// What an error status from media means; `session_id` is the one asked for, if any.
pub fn from_status(status: &tonic::Status, endpoint: &str, session_id: Option<&str>) -> Failure {
    match (status.code(), session_id) {
        (Code::NotFound, Some(id)) => Failure::new(EXIT_NOT_FOUND, format!("no session {id}")),
        (Code::InvalidArgument, _) => Failure::new(EXIT_ERROR, status.message()),
        (Code::Unavailable, _) => unreachable(endpoint, &status_detail(status)),
        // The connection broke under the call: with TLS 1.3 a server that refuses the client's
        // certificate says so after the handshake, with an alert or by closing the connection
        // (through a proxy such as Docker's published ports, the close reads as a broken pipe
        // or a reset).
        (Code::Unknown | Code::Cancelled, _)
            if status_detail(status).contains("transport error") =>
        {
            let detail = status_detail(status);
            let broke = [
                "fatal alert",
                "connection closed",
                "broken pipe",
                "connection reset",
            ]
            .iter()
            .any(|s| detail.contains(s));
            let hint = if broke && endpoint.starts_with("https://") {
                " (if media requires client certificates, it refused this one: check \
                 media.grpc_tls_client_cert_file and _key_file against media's \
                 grpc_tls_client_ca_file)"
            } else {
                ""
            };
            unreachable(endpoint, &format!("{detail}{hint}"))
        }
        (Code::Unauthenticated, _) => Failure::new(
            EXIT_ERROR,
            format!(
                "the media service at {endpoint} refused the call: {} (pass the token with \
                 --set media.grpc_token=... or MILLIWATT_MEDIA__GRPC_TOKEN)",
                status.message()
            ),
        ),
        (code, _) => Failure::new(
            EXIT_ERROR,
            format!(
                "the media service at {endpoint} answered {code:?}: {}",
                status_detail(status)
            ),
        ),
    }
}

fn status_detail(status: &tonic::Status) -> String {
    let mut detail = status.message().to_string();
    let mut source = std::error::Error::source(status);
    while let Some(e) = source {
        let s = e.to_string();
        if !detail.contains(&s) {
            detail = if detail.is_empty() {
                s
            } else {
                format!("{detail}: {s}")
            };
        }
        source = e.source();
    }
    if detail.is_empty() {
        "no detail".into()
    } else {
        detail
    }
}

/// The innermost cause of an error ("Connection refused (os error 111)" rather than
/// "transport error").
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut e = e;
    while let Some(inner) = e.source() {
        e = inner;
    }
    e.to_string()
}

type Client = MediaClient<InterceptedService<Channel, ClientInterceptor>>;

async fn connect(endpoint: &str, access: &Access) -> Result<Client, Failure> {
    let ep = access.tls.endpoint(endpoint).map_err(|e| {
        Failure::new(
            EXIT_ERROR,
            match e {
                TlsError::Endpoint(_, why) => {
                    format!("{endpoint:?} is not a gRPC endpoint URL: {why}")
                }
                e => e.to_string(),
            },
        )
    })?;
    let ep = ep.connect_timeout(CONNECT_TIMEOUT);
    match tokio::time::timeout(CONNECT_TIMEOUT + Duration::from_secs(1), ep.connect()).await {
        Ok(Ok(channel)) => Ok(MediaClient::with_interceptor(
            channel,
            ClientInterceptor::new(&access.token),
        )),
        Ok(Err(e)) => Err(unreachable(endpoint, &root_cause(&e))),
        Err(_) => Err(unreachable(
            endpoint,
            &format!("no connection within {} s", CONNECT_TIMEOUT.as_secs()),
        )),
    }
}

async fn call<T>(
    endpoint: &str,
    session_id: Option<&str>,
    f: impl std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> Result<T, Failure> {
    match tokio::time::timeout(CALL_TIMEOUT, f).await {
        Ok(Ok(r)) => Ok(r.into_inner()),
        Ok(Err(status)) => Err(from_status(&status, endpoint, session_id)),
        Err(_) => Err(Failure::new(
            EXIT_ERROR,
            format!(
                "the media service at {endpoint} did not answer within {} s",
                CALL_TIMEOUT.as_secs()
            ),
        )),
    }
}

/// Prints one line to stdout; false when stdout is gone (a closed pipe: stop quietly).
fn emit(line: &str) -> bool {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}").and_then(|_| out.flush()).is_ok()
}

async fn execute(args: &SessionsArgs, endpoint: &str, access: &Access) -> Result<(), Failure> {
    let mut client = connect(endpoint, access).await?;
    match &args.command {
        SessionsCommand::List => {
            let mut sessions = call(
                endpoint,
                None,
                client.list_sessions(pb::ListSessionsRequest {}),
            )
            .await?
            .sessions;
            sort_sessions(&mut sessions);
            if args.json {
                for s in &sessions {
                    if !emit(&to_json(s)) {
                        break;
                    }
                }
            } else {
                emit(format_list(&sessions).trim_end());
            }
            Ok(())
        }
        SessionsCommand::Get { session_id } => {
            let request = pb::GetSessionRequest {
                session_id: session_id.clone(),
            };
            let s = call(endpoint, Some(session_id), client.get_session(request)).await?;
            if args.json {
                emit(&to_json(&s));
            } else {
                emit(format_session(&s).trim_end());
            }
            Ok(())
        }
        SessionsCommand::Watch { count, timeout } => {
            watch(&mut client, endpoint, args.json, *count, *timeout).await
        }
    }
}

async fn watch(
    client: &mut Client,
    endpoint: &str,
    json: bool,
    count: Option<u64>,
    timeout: Option<Duration>,
) -> Result<(), Failure> {
    let deadline = timeout.map(|t| Instant::now() + t);
    let until_deadline = async {
        match deadline {
            Some(d) => tokio::time::sleep_until(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(until_deadline);
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);

    let mut stream = tokio::select! {
        r = call(endpoint, None, client.watch_sessions(pb::WatchSessionsRequest {})) => r?,
        _ = &mut until_deadline => return timed_out(0, count, timeout),
        _ = &mut ctrl_c => return Ok(()),
    };
    // Media subscribed us before it answered: from here on no event is missed.
    eprintln!("milliwatt-media: watching sessions at {endpoint} (Ctrl-C to stop)");
    let mut seen = 0u64;
    while count.is_none_or(|n| seen < n) {
        tokio::select! {
            m = stream.message() => match m {
                Ok(Some(event)) => {
                    seen += 1;
                    let line = if json {
                        to_json(&event)
                    } else {
                        format_event(&event)
                    };
                    if !emit(&line) {
                        return Ok(());
                    }
                }
                Ok(None) => return Ok(()),
                Err(status) => {
                    return Err(Failure::new(
                        EXIT_ERROR,
                        format!(
                            "the event stream from {endpoint} failed: {}",
                            status_detail(&status)
                        ),
                    ))
                }
            },
            _ = &mut until_deadline => return timed_out(seen, count, timeout),
            _ = &mut ctrl_c => return Ok(()),
        }
    }
    Ok(())
}

fn timed_out(seen: u64, count: Option<u64>, timeout: Option<Duration>) -> Result<(), Failure> {
    match count {
        Some(n) if seen < n => Err(Failure::new(
            EXIT_NOT_FOUND,
            format!(
                "{seen} of {n} events within {} s",
                timeout.unwrap_or_default().as_secs_f64()
            ),
        )),
        _ => Ok(()),
    }
}

// ---- pure formatting ----

/// Oldest first (then by id), so the output is stable.
pub fn sort_sessions(sessions: &mut [pb::Session]) {
    sessions.sort_by(|a, b| {
        b.age_ms
            .cmp(&a.age_ms)
            .then_with(|| a.session_id.cmp(&b.session_id))
    });
}

pub fn state_name(state: i32) -> &'static str {
    match pb::SessionState::try_from(state) {
        Ok(pb::SessionState::Allocated) => "allocated",
        Ok(pb::SessionState::Sending) => "sending",
        Ok(pb::SessionState::Stopped) => "stopped",
        Ok(pb::SessionState::WaitingForCaller) => "waiting",
        Ok(pb::SessionState::Released) => "released",
        _ => "unknown",
    }
}

pub fn codec_name(codec: i32) -> Option<&'static str> {
    match pb::Codec::try_from(codec) {
        Ok(pb::Codec::Pcmu) => Some("PCMU"),
        Ok(pb::Codec::Pcma) => Some("PCMA"),
        _ => None,
    }
}

/// `PCMU/0` (codec and payload type), `-` before a tone was started.
pub fn codec_pt(s: &pb::Session) -> String {
    match codec_name(s.codec) {
        Some(c) => format!("{c}/{}", s.payload_type),
        None => "-".into(),
    }
}

/// `host:port`, `[v6]:port`, or `-` when there is no address.
pub fn host_port(host: &str, port: u32) -> String {
    if host.is_empty() {
        "-".into()
    } else if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// The caller's address from its SDP, and where its RTP really comes from when that differs
/// (symmetric RTP: we send there).
pub fn remote(s: &pb::Session) -> String {
    let sdp = host_port(&s.remote_address, s.remote_port);
    match s.quality.as_ref().map(|q| q.rtp_source.as_str()) {
        Some(src) if !src.is_empty() && src != sdp => format!("{sdp} (latched {src})"),
        _ => sdp,
    }
}

/// `850ms`, `3.2s`, `2m05s`, `1h02m`.
pub fn format_age(ms: u64) -> String {
    match ms {
        0..=999 => format!("{ms}ms"),
        1_000..=59_999 => format!("{:.1}s", ms as f64 / 1000.0),
        60_000..=3_599_999 => format!("{}m{:02}s", ms / 60_000, ms / 1000 % 60),
        _ => format!("{}h{:02}m", ms / 3_600_000, ms / 60_000 % 60),
    }
}

/// The UTC time of day of a timestamp: `12:34:56.789`.
pub fn time_of_day(at: Option<&pbjson_types::Timestamp>) -> String {
    let Some(t) = at else {
        return "--:--:--.---".into();
    };
    let day = t.seconds.rem_euclid(86_400);
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        day / 3600,
        day / 60 % 60,
        day % 60,
        t.nanos.clamp(0, 999_999_999) / 1_000_000
    )
}

fn received(s: &pb::Session) -> Option<&pb::Quality> {
    s.quality.as_ref().filter(|q| q.packets_received > 0)
}

/// The columns of one `list` line.
pub fn session_columns(s: &pb::Session) -> Vec<String> {
    let q = received(s);
    let or_dash = |v: Option<String>| v.unwrap_or_else(|| "-".into());
    vec![
        s.session_id.clone(),
        if s.call_id.is_empty() {
            "-".into()
        } else {
            s.call_id.clone()
        },
        state_name(s.state).into(),
        codec_pt(s),
        host_port(&s.local_address, s.local_port),
        remote(s),
        format!(
            "{}/{}",
            s.packets_sent,
            s.quality.as_ref().map_or(0, |q| q.packets_received)
        ),
        or_dash(q.map(|q| format!("{:.1}%", q.loss_percent))),
        or_dash(q.map(|q| format!("{:.1}ms", q.jitter_ms))),
        or_dash(q.filter(|q| q.mos > 0.0).map(|q| format!("{:.2}", q.mos))),
        format_age(s.age_ms),
    ]
}

pub const LIST_HEADER: [&str; 11] = [
    "SESSION",
    "CALL-ID",
    "STATE",
    "CODEC/PT",
    "LOCAL",
    "REMOTE",
    "SENT/RECV",
    "LOSS",
    "JITTER",
    "MOS",
    "AGE",
];

/// The `list` table: a header and one aligned line per session, or `no sessions`.
pub fn format_list(sessions: &[pb::Session]) -> String {
    if sessions.is_empty() {
        return "no sessions\n".into();
    }
    let rows: Vec<Vec<String>> = std::iter::once(LIST_HEADER.map(String::from).to_vec())
        .chain(sessions.iter().map(session_columns))
        .collect();
    let widths: Vec<usize> = (0..LIST_HEADER.len())
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in &rows {
        let mut line = String::new();
        for (cell, w) in row.iter().zip(&widths) {
            let _ = write!(line, "{cell:<w$}  ");
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Every field of one session (`get`), one `name: value` per line.
pub fn format_session(s: &pb::Session) -> String {
    let mut lines: Vec<(&str, String)> = vec![
        ("session", s.session_id.clone()),
        ("call-id", s.call_id.clone()),
        ("owner", s.owner.clone()),
        ("state", state_name(s.state).into()),
        ("codec/PT", codec_pt(s)),
        ("local", host_port(&s.local_address, s.local_port)),
        ("remote", remote(s)),
    ];
    if s.frequency_hz > 0 || s.echo {
        lines.push(("tone", tone_text(s)));
    }
    lines.extend([
        ("ssrc", format!("{:#010x}", s.ssrc)),
        (
            "sent",
            format!(
                "{} packets, {} bytes, {} skipped",
                s.packets_sent, s.bytes_sent, s.packets_skipped
            ),
        ),
        (
            "created",
            s.created_at.as_ref().map_or_else(|| "-".into(), rfc3339),
        ),
        ("age", format_age(s.age_ms)),
        (
            "DTMF PT",
            match s.dtmf_payload_type {
                0 => "none".into(),
                pt => pt.to_string(),
            },
        ),
    ]);
    match &s.quality {
        None => lines.push(("received", "nothing yet".into())),
        Some(q) => {
            let or_unknown = |v: f64, unit: &str| {
                if v > 0.0 {
                    format!("{v:.1} {unit}")
                } else {
                    "unknown".into()
                }
            };
            lines.extend([
                (
                    "received",
                    format!("{} packets, {} bytes", q.packets_received, q.bytes_received),
                ),
                (
                    "lost",
                    format!("{} packets ({:.1} %)", q.packets_lost, q.loss_percent),
                ),
                ("jitter", format!("{:.1} ms", q.jitter_ms)),
                (
                    "MOS",
                    if q.mos > 0.0 {
                        format!("{:.2}", q.mos)
                    } else {
                        "-".into()
                    },
                ),
                (
                    "ignored",
                    format!(
                        "{} invalid, {} from an unexpected source",
                        q.packets_invalid, q.packets_from_unexpected_source
                    ),
                ),
                (
                    "RTP source",
                    if q.rtp_source.is_empty() {
                        "-".into()
                    } else {
                        q.rtp_source.clone()
                    },
                ),
                ("RTCP received", q.rtcp_received.to_string()),
                (
                    "remote loss",
                    format!(
                        "{:.1} %, remote jitter {:.1} ms",
                        q.remote_loss_percent, q.remote_jitter_ms
                    ),
                ),
                ("RTT", or_unknown(q.rtt_ms, "ms")),
                (
                    "DTMF digits",
                    if q.dtmf_digits.is_empty() {
                        "none".into()
                    } else {
                        q.dtmf_digits.clone()
                    },
                ),
            ]);
            if s.echo {
                lines.push((
                    "echoed",
                    format!(
                        "{} packets, turnaround {:.3} ms mean, {:.3} ms max",
                        q.echoed_packets, q.echo_turnaround_avg_ms, q.echo_turnaround_max_ms
                    ),
                ));
            }
        }
    }
    // The longest name ("RTCP received:") sets one width, with or without the quality part.
    let mut out = String::new();
    for (k, v) in lines {
        let _ = writeln!(out, "{:<14} {v}", format!("{k}:"));
    }
    out
}

pub fn kind_name(kind: i32) -> &'static str {
    use pb::session_event::Kind;
    match Kind::try_from(kind) {
        Ok(Kind::Allocated) => "allocated",
        Ok(Kind::ToneStarted) => "tone started",
        Ok(Kind::ToneStopped) => "tone stopped",
        Ok(Kind::Released) => "released",
        Ok(Kind::Dtmf) => "DTMF",
        Ok(Kind::RtpSourceLatched) => "RTP source latched",
        Ok(Kind::Quality) => "quality",
        _ => "unknown",
    }
}

/// What a session sends: `440 Hz at -10.0 dBm0`, with its second tone, sweep and cadence.
fn tone_text(s: &pb::Session) -> String {
    let srtp = if s.srtp_suite.is_empty() {
        String::new()
    } else {
        format!(", SRTP {}", s.srtp_suite)
    };
    if s.echo {
        return format!("echo (the caller's audio sent back){srtp}");
    }
    let mut t = format!("{} Hz at {:.1} dBm0", s.frequency_hz, s.level_dbm0);
    if s.second_frequency_hz > 0 {
        t += &format!(
            " + {} Hz at {:.1} dBm0",
            s.second_frequency_hz, s.second_level_dbm0
        );
    }
    if s.sweep_to_hz > 0 {
        t += &format!(", sweeping to {} Hz in {} ms", s.sweep_to_hz, s.sweep_ms);
    }
    if !s.cadence_ms.is_empty() {
        let c: Vec<String> = s.cadence_ms.iter().map(u32::to_string).collect();
        t += &format!(", cadence {} ms on/off", c.join("/"));
    }
    t + &srtp
}

/// The key fields of an event, by kind.
fn event_details(e: &pb::SessionEvent, s: &pb::Session) -> String {
    use pb::session_event::Kind;
    let recv = s.quality.as_ref().map_or(0, |q| q.packets_received);
    match Kind::try_from(e.kind) {
        Ok(Kind::Allocated) => format!("local {}", host_port(&s.local_address, s.local_port)),
        Ok(Kind::ToneStarted) => format!(
            "{} to {}, {}, ssrc {:#010x}",
            codec_pt(s),
            host_port(&s.remote_address, s.remote_port),
            tone_text(s),
            s.ssrc
        ),
        Ok(Kind::ToneStopped) => {
            let mut d = format!("sent {}", s.packets_sent);
            if !e.reason.is_empty() {
                d = format!("{}; {d}", e.reason);
            }
            d
        }
        Ok(Kind::Released) => {
            let mut d = format!(
                "{}; sent {}, received {}",
                if e.reason.is_empty() {
                    "no reason given"
                } else {
                    &e.reason
                },
                s.packets_sent,
                recv
            );
            if let Some(q) = received(s) {
                let _ = write!(d, ", loss {:.1}%", q.loss_percent);
                if q.mos > 0.0 {
                    let _ = write!(d, ", MOS {:.2}", q.mos);
                }
            }
            d
        }
        Ok(Kind::Dtmf) => format!("digit {} ({} ms)", e.digit, e.digit_duration_ms),
        Ok(Kind::Quality) => match s.quality.as_ref() {
            Some(q) => format!(
                "received {}, loss {:.1}%, jitter {:.1} ms, MOS {:.2}",
                q.packets_received, q.loss_percent, q.jitter_ms, q.mos
            ),
            None => String::new(),
        },
        Ok(Kind::RtpSourceLatched) => match s.quality.as_ref().map(|q| q.rtp_source.as_str()) {
            Some(src) if !src.is_empty() => format!(
                "RTP from {src} (SDP said {})",
                host_port(&s.remote_address, s.remote_port)
            ),
            _ => e.reason.clone(),
        },
        _ => e.reason.clone(),
    }
}

/// One `watch` line: UTC time, kind, session id, call-id, key fields.
pub fn format_event(e: &pb::SessionEvent) -> String {
    let empty = pb::Session::default();
    let s = e.session.as_ref().unwrap_or(&empty);
    let line = format!(
        "{}  {:<18}  {}  {}  {}",
        time_of_day(e.at.as_ref()),
        kind_name(e.kind),
        if s.session_id.is_empty() {
            "-"
        } else {
            &s.session_id
        },
        if s.call_id.is_empty() {
            "-"
        } else {
            &s.call_id
        },
        event_details(e, s)
    );
    line.trim_end().to_string()
}

/// A timestamp in RFC 3339 (UTC), as its JSON mapping writes it.
pub fn rfc3339(t: &pbjson_types::Timestamp) -> String {
    match serde_json::to_value(t) {
        Ok(serde_json::Value::String(s)) => match s.strip_suffix("+00:00") {
            Some(utc) => format!("{utc}Z"),
            None => s,
        },
        _ => format!("{}.{:09}s", t.seconds, t.nanos),
    }
}

/// A message as one line of JSON (proto3 JSON mapping: proto field names, enums by name,
/// 64-bit integers as strings, timestamps in RFC 3339).
pub fn to_json<T: serde::Serialize>(message: &T) -> String {
    serde_json::to_string(message).expect("prost messages always serialize")
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[arg(long)]
        config: Option<String>,
        #[command(subcommand)]
        command: Top,
    }

    #[derive(clap::Subcommand)]
    enum Top {
        Sessions(SessionsArgs),
    }

    fn parse(args: &[&str]) -> SessionsArgs {
        let cli =
            Cli::try_parse_from(std::iter::once("milliwatt-media").chain(args.iter().copied()))
                .unwrap_or_else(|e| panic!("{args:?}: {e}"));
        let Top::Sessions(a) = cli.command;
        a
    }

    fn session() -> pb::Session {
        pb::Session {
            session_id: "0123456789abcdef".into(),
            call_id: "1-42@127.0.0.1".into(),
            owner: "signaling-1".into(),
            state: pb::SessionState::Sending as i32,
            codec: pb::Codec::Pcmu as i32,
            payload_type: 0,
            local_address: "127.0.0.1".into(),
            local_port: 20000,
            remote_address: "127.0.0.1".into(),
            remote_port: 20040,
            frequency_hz: 440,
            level_dbm0: -10.0,
            ssrc: 0xdeadbeef,
            packets_sent: 150,
            bytes_sent: 25800,
            packets_skipped: 0,
            created_at: Some(pbjson_types::Timestamp {
                seconds: 1_700_000_000,
                nanos: 123_000_000,
            }),
            age_ms: 3_250,
            dtmf_payload_type: 101,
            second_frequency_hz: 0,
            second_level_dbm0: 0.0,
            sweep_to_hz: 0,
            sweep_ms: 0,
            cadence_ms: vec![],
            echo: false,
            srtp_suite: String::new(),
            quality: Some(pb::Quality {
                packets_received: 148,
                bytes_received: 25456,
                packets_lost: 2,
                loss_percent: 1.333,
                jitter_ms: 0.42,
                mos: 4.38,
                packets_invalid: 1,
                packets_from_unexpected_source: 0,
                rtp_source: "127.0.0.1:20040".into(),
                rtcp_received: 3,
                remote_loss_percent: 0.5,
                remote_jitter_ms: 0.3,
                rtt_ms: 0.8,
                dtmf_digits: "12#".into(),
                echoed_packets: 0,
                echo_turnaround_avg_ms: 0.0,
                echo_turnaround_max_ms: 0.0,
                rtp_ssrc: 0x1234_5678,
            }),
        }
    }

    fn event(kind: pb::session_event::Kind, s: pb::Session) -> pb::SessionEvent {
        pb::SessionEvent {
            kind: kind as i32,
            session: Some(s),
            reason: String::new(),
            at: Some(pbjson_types::Timestamp {
                seconds: 1_700_000_000 + 3_600 + 61,
                nanos: 5_000_000,
            }),
            digit: String::new(),
            digit_duration_ms: 0,
        }
    }

    #[test]
    fn the_command_line_has_the_documented_shape() {
        let a = parse(&["sessions", "list"]);
        assert_eq!(a.command, SessionsCommand::List);
        assert!(!a.json && a.endpoint.is_none());
        let a = parse(&[
            "--config",
            "c.toml",
            "sessions",
            "--json",
            "--endpoint",
            "http://h:1",
            "get",
            "00000000000000aa",
        ]);
        assert!(a.json);
        assert_eq!(a.endpoint.as_deref(), Some("http://h:1"));
        assert_eq!(
            a.command,
            SessionsCommand::Get {
                session_id: "00000000000000aa".into()
            }
        );
        // The shared flags also work after the subcommand.
        let a = parse(&[
            "sessions",
            "watch",
            "--count",
            "3",
            "--timeout",
            "10",
            "--json",
        ]);
        assert!(a.json);
        assert_eq!(
            a.command,
            SessionsCommand::Watch {
                count: Some(3),
                timeout: Some(Duration::from_secs(10))
            }
        );
        let a = parse(&["sessions", "watch", "--timeout", "0.5"]);
        assert_eq!(
            a.command,
            SessionsCommand::Watch {
                count: None,
                timeout: Some(Duration::from_millis(500))
            }
        );
        for bad in [
            &["sessions", "watch", "--count", "0"][..],
            &["sessions", "watch", "--timeout", "-1"],
            &["sessions", "watch", "--timeout", "soon"],
            &["sessions", "get"],
            &["sessions"],
        ] {
            assert!(
                Cli::try_parse_from(std::iter::once("x").chain(bad.iter().copied())).is_err(),
                "{bad:?} accepted"
            );
        }
    }

    #[test]
    fn a_list_line_has_every_column() {
        let cols = session_columns(&session());
        assert_eq!(
            cols,
            vec![
                "0123456789abcdef",
                "1-42@127.0.0.1",
                "sending",
                "PCMU/0",
                "127.0.0.1:20000",
                "127.0.0.1:20040",
                "150/148",
                "1.3%",
                "0.4ms",
                "4.38",
                "3.2s",
            ]
        );
        let table = format_list(&[session()]);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].starts_with("SESSION           CALL-ID"), "{table}");
        assert!(lines[1].starts_with("0123456789abcdef  1-42@127.0.0.1"));
        // Columns line up under the header.
        let at = lines[0].find("REMOTE").unwrap();
        assert_eq!(&lines[1][at..at + 15], "127.0.0.1:20040");
        assert_eq!(format_list(&[]), "no sessions\n");
    }

    #[test]
    fn a_fresh_session_shows_dashes_and_a_latched_source_is_shown() {
        let fresh = pb::Session {
            state: pb::SessionState::Allocated as i32,
            codec: 0,
            remote_address: String::new(),
            remote_port: 0,
            quality: None,
            packets_sent: 0,
            call_id: String::new(),
            age_ms: 80,
            ..session()
        };
        let cols = session_columns(&fresh);
        assert_eq!(cols[1..4], ["-", "allocated", "-"]);
        assert_eq!(cols[5..], ["-", "0/0", "-", "-", "-", "80ms"]);

        let mut latched = session();
        latched.quality.as_mut().unwrap().rtp_source = "10.0.0.9:4000".into();
        assert_eq!(remote(&latched), "127.0.0.1:20040 (latched 10.0.0.9:4000)");
        assert_eq!(host_port("::1", 5), "[::1]:5");
    }

    #[test]
    fn a_shaped_signal_is_described_whole() {
        let busy = pb::Session {
            frequency_hz: 480,
            level_dbm0: -24.0,
            second_frequency_hz: 620,
            second_level_dbm0: -24.0,
            cadence_ms: vec![500, 500],
            ..session()
        };
        assert_eq!(
            tone_text(&busy),
            "480 Hz at -24.0 dBm0 + 620 Hz at -24.0 dBm0, cadence 500/500 ms on/off"
        );
        let sweep = pb::Session {
            frequency_hz: 300,
            sweep_to_hz: 3400,
            sweep_ms: 10_000,
            ..session()
        };
        assert_eq!(
            tone_text(&sweep),
            "300 Hz at -10.0 dBm0, sweeping to 3400 Hz in 10000 ms"
        );
        let mut echo = pb::Session {
            echo: true,
            frequency_hz: 0,
            ..session()
        };
        let q = echo.quality.as_mut().unwrap();
        (
            q.echoed_packets,
            q.echo_turnaround_avg_ms,
            q.echo_turnaround_max_ms,
        ) = (148, 0.021, 0.2);
        let text = format_session(&echo);
        assert!(
            text.contains("tone:          echo (the caller's audio sent back)"),
            "{text}"
        );
        assert!(
            text.contains("echoed:        148 packets, turnaround 0.021 ms mean, 0.200 ms max"),
            "{text}"
        );
    }

    #[test]
    fn ages_and_times_are_readable() {
        assert_eq!(format_age(999), "999ms");
        assert_eq!(format_age(1_000), "1.0s");
        assert_eq!(format_age(125_000), "2m05s");
        assert_eq!(format_age(3_720_000), "1h02m");
        let t = pbjson_types::Timestamp {
            seconds: 86_400 * 3 + 3_600 * 13 + 60 * 4 + 5,
            nanos: 678_900_000,
        };
        assert_eq!(time_of_day(Some(&t)), "13:04:05.678");
        assert_eq!(time_of_day(None), "--:--:--.---");
    }

    #[test]
    fn get_shows_every_field_and_the_quality() {
        let text = format_session(&session());
        for want in [
            "session:       0123456789abcdef",
            "call-id:       1-42@127.0.0.1",
            "owner:         signaling-1",
            "state:         sending",
            "codec/PT:      PCMU/0",
            "local:         127.0.0.1:20000",
            "remote:        127.0.0.1:20040",
            "tone:          440 Hz at -10.0 dBm0",
            "ssrc:          0xdeadbeef",
            "sent:          150 packets, 25800 bytes, 0 skipped",
            "created:       2023-11-14T22:13:20.123Z",
            "age:           3.2s",
            "DTMF PT:       101",
            "received:      148 packets, 25456 bytes",
            "lost:          2 packets (1.3 %)",
            "jitter:        0.4 ms",
            "MOS:           4.38",
            "ignored:       1 invalid, 0 from an unexpected source",
            "RTP source:    127.0.0.1:20040",
            "RTCP received: 3",
            "remote loss:   0.5 %, remote jitter 0.3 ms",
            "RTT:           0.8 ms",
            "DTMF digits:   12#",
        ] {
            assert!(text.lines().any(|l| l == want), "{want:?} not in\n{text}");
        }
        let none = format_session(&pb::Session {
            quality: None,
            ..session()
        });
        assert!(none.contains("received:      nothing yet"), "{none}");
    }

    #[test]
    fn watch_lines_name_the_event_and_its_key_fields() {
        use pb::session_event::Kind;
        let s = session();
        let line = format_event(&event(Kind::Allocated, s.clone()));
        assert_eq!(
            line,
            "23:14:21.005  allocated           0123456789abcdef  1-42@127.0.0.1  local 127.0.0.1:20000"
        );
        let line = format_event(&event(Kind::ToneStarted, s.clone()));
        assert!(
            line.contains("tone started        0123456789abcdef  1-42@127.0.0.1  PCMU/0 to 127.0.0.1:20040, 440 Hz at -10.0 dBm0, ssrc 0xdeadbeef"),
            "{line}"
        );
        let mut e = event(Kind::Released, s.clone());
        e.reason = "tone finished".into();
        assert!(
            format_event(&e).ends_with(
                "released            0123456789abcdef  1-42@127.0.0.1  tone finished; sent 150, received 148, loss 1.3%, MOS 4.38"
            ),
            "{}",
            format_event(&e)
        );
        let mut e = event(Kind::ToneStopped, s.clone());
        e.reason = "stopped by owner".into();
        assert!(format_event(&e).ends_with("stopped by owner; sent 150"));
        let mut e = event(Kind::Dtmf, s.clone());
        e.digit = "5".into();
        e.digit_duration_ms = 120;
        assert!(format_event(&e).contains("DTMF  "));
        assert!(format_event(&e).ends_with("digit 5 (120 ms)"));
        let mut latched = s;
        latched.quality.as_mut().unwrap().rtp_source = "10.0.0.9:4000".into();
        let line = format_event(&event(Kind::RtpSourceLatched, latched));
        assert!(
            line.contains("RTP source latched")
                && line.ends_with("RTP from 10.0.0.9:4000 (SDP said 127.0.0.1:20040)"),
            "{line}"
        );
    }

    #[test]
    fn json_is_the_proto3_mapping_of_the_messages() {
        use serde_json::Value;
        let line = to_json(&session());
        assert!(!line.contains('\n'), "one line");
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["session_id"], "0123456789abcdef");
        assert_eq!(v["call_id"], "1-42@127.0.0.1");
        assert_eq!(v["state"], "SESSION_STATE_SENDING");
        assert_eq!(v["codec"], "CODEC_PCMU");
        assert_eq!(v["payload_type"], 0);
        assert_eq!(v["local_port"], 20000);
        assert_eq!(v["packets_sent"], "150", "64-bit integers are strings");
        assert_eq!(v["created_at"], "2023-11-14T22:13:20.123+00:00");
        assert_eq!(v["quality"]["packets_lost"], "2");
        assert_eq!(v["quality"]["dtmf_digits"], "12#");
        // Derived, not mirrored: it parses back into the same message.
        let back: pb::Session = serde_json::from_str(&line).unwrap();
        assert_eq!(back, session());
        let fresh: Value = serde_json::from_str(&to_json(&pb::Session {
            codec: 0,
            quality: None,
            ..session()
        }))
        .unwrap();
        assert_eq!(fresh["codec"], "CODEC_UNSPECIFIED");
        assert!(fresh["quality"].is_null(), "{fresh}");

        let mut e = event(pb::session_event::Kind::ToneStarted, session());
        e.reason = "x".into();
        let v: Value = serde_json::from_str(&to_json(&e)).unwrap();
        assert_eq!(v["kind"], "KIND_TONE_STARTED");
        assert_eq!(v["session"]["session_id"], "0123456789abcdef");
        assert_eq!(v["session"]["codec"], "CODEC_PCMU");
        assert_eq!(v["reason"], "x");
        assert_eq!(v["at"], "2023-11-14T23:14:21.005+00:00");
    }

    #[test]
    fn errors_map_to_messages_and_exit_codes() {
        let ep = "http://127.0.0.1:1";
        let f = from_status(
            &tonic::Status::not_found("no session 00000000000000aa"),
            ep,
            Some("00000000000000aa"),
        );
        assert_eq!(f, Failure::new(1, "no session 00000000000000aa"));
        let msg = "session_id: \"x\" is not a session id (16 hex digits)";
        let f = from_status(&tonic::Status::invalid_argument(msg), ep, Some("x"));
        assert_eq!(f, Failure::new(2, msg));
        let f = from_status(&tonic::Status::unavailable("connection refused"), ep, None);
        assert_eq!(f.code, 2);
        assert!(f.message.contains(ep) && f.message.contains("connection refused"));
        let tls = "https://127.0.0.1:1";
        for detail in [
            "transport error: connection error: received fatal alert: CertificateRequired",
            "transport error: connection error: stream closed because of a broken pipe",
        ] {
            let f = from_status(&tonic::Status::unknown(detail), tls, None);
            assert_eq!(f.code, 2);
            assert!(
                f.message.starts_with("cannot reach the media service")
                    && f.message.contains(detail)
                    && f.message.contains("media.grpc_tls_client_cert_file"),
                "{}",
                f.message
            );
        }
        // Without TLS a broken connection says nothing about certificates.
        let f = from_status(
            &tonic::Status::unknown("transport error: connection error: connection reset"),
            ep,
            None,
        );
        assert!(
            f.message.starts_with("cannot reach the media service")
                && !f.message.contains("certificates"),
            "{}",
            f.message
        );
        let f = from_status(&tonic::Status::internal("boom"), ep, None);
        assert_eq!(f.code, 2);
        assert!(f.message.contains(ep) && f.message.contains("boom"));
        assert_eq!(timed_out(2, Some(3), None).unwrap_err().code, 1);
        assert!(timed_out(3, Some(3), None).is_ok() && timed_out(0, None, None).is_ok());
    }

    #[tokio::test]
    async fn unreachable_media_exits_2() {
        // Port 1 on loopback: nothing listens there.
        let args = parse(&["sessions", "--endpoint", "http://127.0.0.1:1", "list"]);
        assert_eq!(run(&args, "http://unused:9", &Access::default()).await, 2);
        let f = execute(&args, "http://127.0.0.1:1", &Access::default())
            .await
            .unwrap_err();
        assert!(
            f.message
                .starts_with("cannot reach the media service at http://127.0.0.1:1: "),
            "{}",
            f.message
        );
        let f = execute(&args, "not a url", &Access::default())
            .await
            .unwrap_err();
        assert_eq!(f.code, 2);
        assert!(f.message.contains("not a url"), "{}", f.message);
    }
}
