//! The one configuration schema of both services: embedded defaults (the repository's
//! `config.toml`) < a file given with `--config` < `MILLIWATT_*` environment variables <
//! `--set key=value` flags. Unknown keys and impossible values are errors naming the key.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;

use serde::Deserialize;

/// The defaults: the repository's `config.toml`, embedded at build time.
pub const DEFAULT_CONFIG_TOML: &str = include_str!("../../config.toml");

/// Prefix of environment overrides: `MILLIWATT_SIP__PORT=5070` sets `sip.port`.
pub const ENV_PREFIX: &str = "MILLIWATT";

/// Keys that take a comma-separated list when given in the environment.
const LIST_KEYS: &[&str] = &["media.preferred_codecs", "media.endpoint"];

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read configuration: {0}")]
    Load(#[from] config::ConfigError),
    #[error("bad --set argument {0:?}: expected key=value")]
    BadOverride(String),
    #[error("configuration key `{key}`: {reason}")]
    Invalid { key: String, reason: String },
}

fn invalid(key: &str, reason: impl Into<String>) -> ConfigError {
    invalid_owned(key.to_string(), reason.into())
}

fn invalid_owned(key: String, reason: String) -> ConfigError {
    ConfigError::Invalid { key, reason }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub sip: SipConfig,
    pub behavior: BehaviorConfig,
    pub media: MediaConfig,
    pub log: LogConfig,
    pub admin: AdminConfig,
    pub shutdown: ShutdownConfig,
    pub telemetry: TelemetryConfig,
    pub overload: OverloadConfig,
    pub runtime: RuntimeConfig,
    pub sources: SourcesConfig,
}

/// Limits by the source address of SIP requests (`[sources]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourcesConfig {
    /// CIDR networks or addresses allowed to send SIP requests; empty: all.
    pub allowed_networks: Vec<String>,
    pub refused_action: RefusedAction,
    /// 0: no limit.
    pub max_new_calls_per_second: u32,
    /// 0: no limit.
    pub max_concurrent_calls: u32,
}

impl SourcesConfig {
    /// `allowed_networks` parsed (`validate` has checked each); a bare address is its /32 or
    /// /128.
    pub fn networks(&self) -> Vec<ipnet::IpNet> {
        self.allowed_networks
            .iter()
            .filter_map(|s| parse_network(s).ok())
            .collect()
    }
}

fn parse_network(s: &str) -> Result<ipnet::IpNet, String> {
    let s = s.trim();
    s.parse::<ipnet::IpNet>()
        .or_else(|_| s.parse::<IpAddr>().map(ipnet::IpNet::from))
        .map(|n| n.trunc())
        .map_err(|_| {
            format!("{s:?} is not a network (CIDR such as \"192.0.2.0/24\") or an IP address")
        })
}

/// What a request from outside `sources.allowed_networks` gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RefusedAction {
    /// 403 Forbidden.
    Forbidden,
    /// No answer.
    Silence,
}

/// The process's async runtime (tokio). RTP pacing has its own threads (`media.pacing_threads`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeConfig {
    /// Worker threads of the async runtime (SIP, gRPC, admin HTTP, RTP receive); 0: one per core.
    pub worker_threads: usize,
}

/// Admission by measured load (signaling): a new INVITE gets 503 with Retry-After at once when
/// any threshold is reached. 0 turns a check off.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OverloadConfig {
    /// Calls admitted but not yet answered (INVITE received, no ACK yet).
    pub max_calls_in_setup: u32,
    /// AllocateSession calls to media in flight.
    pub max_pending_allocations: u32,
    /// Lateness of signaling's event loop (a 10 ms timer), in ms.
    pub max_event_loop_lag_ms: u64,
    /// How far past its answer time (INVITE + answer delay) the oldest admitted, unanswered
    /// call may be, in ms.
    pub max_answer_lateness_ms: u64,
    /// How long a new INVITE may have waited between reaching the host (the kernel's receive
    /// time over UDP) and its admission, in ms.
    pub max_invite_wait_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    pub otlp_endpoint: String,
    pub service_name: String,
    pub sampling_ratio: f64,
}

/// When the tone starts (`media.rtp_start`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RtpStart {
    /// As soon as the call is answered.
    OnAnswer,
    /// When the caller's first RTP packet reaches the session's port (toward its source).
    OnCallerRtp,
}

/// The scheduling class of the pacing threads (`media.pacing_priority`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PacingPriority {
    /// SCHED_FIFO (priority 10) where the system permits it (root, CAP_SYS_NICE or an
    /// RLIMIT_RTPRIO); otherwise normal, with a warning.
    Realtime,
    /// The default time-sharing class.
    Normal,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Plain,
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    pub address: SocketAddr,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShutdownConfig {
    pub grace_seconds: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SipConfig {
    pub bind_address: IpAddr,
    pub port: u16,
    pub domain: String,
    pub transport: Transport,
    pub advertised_address: String,
    /// Port put in Contact and Via; 0: `port`.
    pub advertised_port: u16,
    pub max_message_bytes: u32,
    pub tcp_max_connections: u32,
    pub tcp_idle_timeout_seconds: u64,
    pub tcp_message_timeout_seconds: u64,
    /// An RFC 6035 quality collector's SIP URI: each answered call's `vq-rtcpxr` report is
    /// PUBLISHed there when it ends. Empty: none.
    pub quality_collector: String,
    /// SIP over TLS: the certificate chain and private key (PEM files, reloaded when they
    /// change); both empty: no TLS. Listens on `tls_port`.
    pub tls_certificate_file: String,
    pub tls_key_file: String,
    pub tls_port: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Udp,
    Tcp,
    Both,
}

impl Transport {
    pub fn udp(self) -> bool {
        matches!(self, Transport::Udp | Transport::Both)
    }
    pub fn tcp(self) -> bool {
        matches!(self, Transport::Tcp | Transport::Both)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BehaviorConfig {
    pub auto_answer: bool,
    pub auto_answer_delay_ms: u64,
    pub tone_duration_seconds: u64,
    pub tone_frequency: u32,
    pub tone_level_dbm0: f64,
    pub max_concurrent_calls: u32,
    /// Test plans by dialed number (`[[behavior.plans]]`): the first whose `number` matches the
    /// Request-URI's user part plays its tone.
    pub plans: Vec<PlanConfig>,
}

impl PlanConfig {
    /// The plan's signal shape; `level_dbm0` is the plan's (or `[behavior]`'s) level, the second
    /// tone's when it has none of its own. Checked in validation.
    pub fn shape(&self, level_dbm0: f64) -> Shape {
        Shape {
            second: self
                .second_frequency
                .map(|f| (f, self.second_level_dbm0.unwrap_or(level_dbm0))),
            sweep: self.sweep_to_frequency.map(|to_hz| Sweep {
                to_hz,
                ms: self.sweep_ms.unwrap_or(0),
            }),
            cadence_ms: self.cadence_ms.clone(),
        }
    }
}

/// One test plan: which numbers, and the tone they get (unset: the `[behavior]` tone's).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PlanConfig {
    /// The Request-URI user part: exact, or with `*` standing for any run of characters.
    pub number: String,
    pub frequency: Option<u32>,
    pub level_dbm0: Option<f64>,
    pub duration_seconds: Option<u64>,
    /// A second tone added to the first (dual tones: dial tone 350 + 440 Hz).
    pub second_frequency: Option<u32>,
    /// The second tone's level (unset: the first's).
    pub second_level_dbm0: Option<f64>,
    /// A sweep from `frequency` to this frequency in `sweep_ms`, then again.
    pub sweep_to_frequency: Option<u32>,
    pub sweep_ms: Option<u32>,
    /// On/off times in ms, alternating, starting with on (ringback: `[2000, 4000]`).
    #[serde(default)]
    pub cadence_ms: Vec<u32>,
    /// The echo test: the caller's RTP comes straight back instead of a tone.
    #[serde(default)]
    pub echo: bool,
    /// The caller may set the tone with Request-URI parameters `freq`, `level`, `duration`.
    #[serde(default)]
    pub uri_parameters: bool,
    /// 183 Session Progress with SDP and the tone before the answer.
    #[serde(default)]
    pub early_media: bool,
}

use milliwatt_media_core::tone::{Shape, Sweep};
pub use milliwatt_media_core::Codec;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MediaConfig {
    pub rtp_port_range_start: u16,
    pub rtp_port_range_end: u16,
    pub preferred_codecs: Vec<Codec>,
    pub enable_dtmf: bool,
    pub audio_sample_rate: u32,
    pub bind_address: IpAddr,
    pub advertised_address: String,
    pub grpc_listen: SocketAddr,
    /// One URL or several (a pool of media instances); never empty once validated.
    #[serde(deserialize_with = "one_or_many")]
    pub endpoint: Vec<String>,
    pub pacing_threads: usize,
    pub pacing_priority: PacingPriority,
    /// After a stall, a stream still sends the packets due this far back (whole packet times).
    pub pacing_catch_up_ms: u32,
    pub lease_seconds: u32,
    pub session_grace_seconds: u32,
    pub rtp_start: RtpStart,
    /// Bearer token the media gRPC API requires (empty: none).
    pub grpc_token: Secret,
    /// Offers naming a private address get 488; StartTone to one INVALID_ARGUMENT.
    pub refuse_private_destinations: bool,
    /// TLS on the media gRPC API ([`crate::grpc_tls`]); empty: none.
    pub grpc_tls_cert_file: String,
    pub grpc_tls_key_file: String,
    pub grpc_tls_client_ca_file: String,
    pub grpc_tls_ca_file: String,
    pub grpc_tls_client_cert_file: String,
    pub grpc_tls_client_key_file: String,
    pub grpc_tls_server_name: String,
}

impl MediaConfig {
    /// The gRPC TLS keys come in pairs and build on each other; the files themselves are
    /// checked where they are used ([`crate::grpc_tls`]).
    fn validate_grpc_tls(&self) -> Result<(), ConfigError> {
        let set = |v: &String| !v.trim().is_empty();
        let pairs = [
            (
                "media.grpc_tls_cert_file",
                &self.grpc_tls_cert_file,
                "media.grpc_tls_key_file",
                &self.grpc_tls_key_file,
            ),
            (
                "media.grpc_tls_client_cert_file",
                &self.grpc_tls_client_cert_file,
                "media.grpc_tls_client_key_file",
                &self.grpc_tls_client_key_file,
            ),
        ];
        for (a, va, b, vb) in pairs {
            if set(va) != set(vb) {
                let (given, missing) = if set(va) { (a, b) } else { (b, a) };
                return Err(invalid(
                    missing,
                    format!("must be set with {given} (a certificate and its key go together)"),
                ));
            }
        }
        let needs = [
            (
                "media.grpc_tls_client_ca_file",
                &self.grpc_tls_client_ca_file,
                "media.grpc_tls_cert_file",
                &self.grpc_tls_cert_file,
                "client certificates are checked only on a TLS listener",
            ),
            (
                "media.grpc_tls_client_cert_file",
                &self.grpc_tls_client_cert_file,
                "media.grpc_tls_ca_file",
                &self.grpc_tls_ca_file,
                "a client certificate is presented only over TLS, which needs the CA",
            ),
            (
                "media.grpc_tls_server_name",
                &self.grpc_tls_server_name,
                "media.grpc_tls_ca_file",
                &self.grpc_tls_ca_file,
                "the name is checked only over TLS, which needs the CA",
            ),
        ];
        for (key, v, needed, nv, why) in needs {
            if set(v) && !set(nv) {
                return Err(invalid(key, format!("needs {needed}: {why}")));
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    pub level: String,
    pub format: LogFormat,
    pub stats_interval_seconds: u64,
}

/// The embedded defaults, the first layer of every load.
/// The tone keys' ranges; `prefix` names them (`behavior.tone_` + `frequency`, or
/// `behavior.plans[0].` + `frequency`).
fn check_tone(prefix: &str, frequency: u32, level: f64, duration: u64) -> Result<(), ConfigError> {
    let name = |k: &str| format!("{prefix}{k}");
    if frequency == 0 || frequency >= 4000 {
        return Err(invalid_owned(
            name("frequency"),
            format!("{frequency} Hz cannot be carried at 8000 Hz sampling: must be 1..3999"),
        ));
    }
    if !(-60.0..=3.0).contains(&level) {
        return Err(invalid_owned(
            name("level_dbm0"),
            format!("{level} dBm0 is out of range -60..3 (G.711 clips above +3.17 dBm0)"),
        ));
    }
    if duration == 0 || duration > 86_400 {
        return Err(invalid_owned(
            name("duration_seconds"),
            "must be 1..86400".to_string(),
        ));
    }
    Ok(())
}

/// A string or a list of strings (`media.endpoint = "http://m:50051"` still works).
fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
    })
}

fn defaults() -> config::ConfigBuilder<config::builder::DefaultState> {
    config::Config::builder().add_source(config::File::from_str(
        DEFAULT_CONFIG_TOML,
        config::FileFormat::Toml,
    ))
}

impl Config {
    /// Loads the layers. `file` is the `--config` path, `overrides` the `--set key=value` flags.
    pub fn load(file: Option<&Path>, overrides: &[String]) -> Result<Config, ConfigError> {
        Self::load_with_env(file, overrides, std::env::vars())
    }

    /// As [`Config::load`], with the environment given (tests).
    pub fn load_with_env(
        file: Option<&Path>,
        overrides: &[String],
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let mut builder = defaults();
        if let Some(path) = file {
            builder = builder.add_source(
                config::File::from(path)
                    .format(config::FileFormat::Toml)
                    .required(true),
            );
        }
        Self::finish(builder, overrides, env)
    }

    /// The embedded defaults and `toml` as the file's text: what `--config` with that file
    /// gives without environment or flags (the configuration fuzz target's entry point).
    pub fn from_toml(toml: &str) -> Result<Config, ConfigError> {
        let builder = defaults().add_source(config::File::from_str(toml, config::FileFormat::Toml));
        Self::finish(builder, &[], std::iter::empty())
    }

    /// The environment and flag layers on top of `builder`, then deserialization and checks.
    fn finish(
        mut builder: config::ConfigBuilder<config::builder::DefaultState>,
        overrides: &[String],
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let env: config::Map<String, String> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with(&format!("{ENV_PREFIX}_")))
            .collect();
        let mut environment = config::Environment::with_prefix(ENV_PREFIX)
            .prefix_separator("_")
            .separator("__")
            .try_parsing(true)
            .list_separator(",")
            .source(Some(env));
        for key in LIST_KEYS {
            environment = environment.with_list_parse_key(key);
        }
        builder = builder.add_source(environment);
        for o in overrides {
            let (key, value) = o
                .split_once('=')
                .filter(|(k, _)| !k.trim().is_empty())
                .ok_or_else(|| ConfigError::BadOverride(o.clone()))?;
            let key = key.trim();
            if LIST_KEYS.contains(&key) {
                let list: Vec<String> = value.split(',').map(|s| s.trim().to_string()).collect();
                builder = builder.set_override(key, list)?;
            } else {
                builder = builder.set_override(key, value)?;
            }
        }
        let cfg: Config = builder.build()?.try_deserialize()?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks what types cannot: ranges and relations between keys.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let b = &self.behavior;
        let m = &self.media;
        if self.sip.port == 0 {
            return Err(invalid("sip.port", "must be 1..65535"));
        }
        if !(8192..=65535).contains(&self.sip.max_message_bytes) {
            return Err(invalid(
                "sip.max_message_bytes",
                format!(
                    "{} is not 8192..65535 (SIP requires at least the 1300 bytes of a datagram; \
                     a test line takes 8 KB at least; UDP carries at most 65535)",
                    self.sip.max_message_bytes
                ),
            ));
        }
        for (key, v) in [
            (
                "sip.tcp_max_connections",
                u64::from(self.sip.tcp_max_connections),
            ),
            (
                "sip.tcp_idle_timeout_seconds",
                self.sip.tcp_idle_timeout_seconds,
            ),
            (
                "sip.tcp_message_timeout_seconds",
                self.sip.tcp_message_timeout_seconds,
            ),
        ] {
            if v == 0 {
                return Err(invalid(key, "must be at least 1"));
            }
        }
        match (
            self.sip.tls_certificate_file.is_empty(),
            self.sip.tls_key_file.is_empty(),
        ) {
            (true, true) => {}
            (false, true) => {
                return Err(invalid(
                    "sip.tls_key_file",
                    "is empty while sip.tls_certificate_file is set: TLS needs both",
                ))
            }
            (true, false) => {
                return Err(invalid(
                    "sip.tls_certificate_file",
                    "is empty while sip.tls_key_file is set: TLS needs both",
                ))
            }
            (false, false) => {
                if self.sip.tls_port == 0 {
                    return Err(invalid("sip.tls_port", "must be 1..65535"));
                }
                if self.sip.transport.tcp() && self.sip.tls_port == self.sip.port {
                    return Err(invalid(
                        "sip.tls_port",
                        format!(
                            "{} is sip.port, where SIP over TCP listens: TLS needs a port of its own",
                            self.sip.tls_port
                        ),
                    ));
                }
            }
        }
        if !self.sip.quality_collector.is_empty() {
            check_sip_uri("sip.quality_collector", &self.sip.quality_collector)?;
        }
        let token = self.media.grpc_token.expose();
        if !token.is_empty() && (token.len() < 16 || !token.bytes().all(|b| b.is_ascii_graphic())) {
            return Err(invalid(
                "media.grpc_token",
                "must be at least 16 printable ASCII characters without spaces, or empty for none",
            ));
        }
        self.media.validate_grpc_tls()?;
        for n in &self.sources.allowed_networks {
            parse_network(n).map_err(|why| invalid("sources.allowed_networks", why))?;
        }
        if self.sip.domain.trim().is_empty() {
            return Err(invalid("sip.domain", "must not be empty"));
        }
        if !self.sip.advertised_address.is_empty() {
            check_host("sip.advertised_address", &self.sip.advertised_address)?;
        }
        check_tone(
            "behavior.tone_",
            b.tone_frequency,
            b.tone_level_dbm0,
            b.tone_duration_seconds,
        )?;
        for (i, p) in b.plans.iter().enumerate() {
            let key = format!("behavior.plans[{i}]");
            let number_ok = !p.number.is_empty()
                && p.number.len() <= 64
                && p.number
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "*#+-._~!$&'()=,;?/".contains(c));
            if !number_ok {
                return Err(invalid_owned(
                    format!("{key}.number"),
                    format!(
                        "{:?} is not a Request-URI user part (1..64 of letters, digits, \
                         -_.!~'()+#*$&=,;?/; `*` matches any run)",
                        p.number
                    ),
                ));
            }
            if b.plans[..i].iter().any(|q| q.number == p.number) {
                return Err(invalid_owned(
                    format!("{key}.number"),
                    format!("{:?} is already the number of an earlier plan", p.number),
                ));
            }
            let (frequency, level) = (
                p.frequency.unwrap_or(b.tone_frequency),
                p.level_dbm0.unwrap_or(b.tone_level_dbm0),
            );
            check_tone(
                &format!("{key}."),
                frequency,
                level,
                p.duration_seconds.unwrap_or(b.tone_duration_seconds),
            )?;
            if p.echo {
                let tone_keys = [
                    ("frequency", p.frequency.is_some()),
                    ("level_dbm0", p.level_dbm0.is_some()),
                    ("second_frequency", p.second_frequency.is_some()),
                    ("second_level_dbm0", p.second_level_dbm0.is_some()),
                    ("sweep_to_frequency", p.sweep_to_frequency.is_some()),
                    ("sweep_ms", p.sweep_ms.is_some()),
                    ("cadence_ms", !p.cadence_ms.is_empty()),
                    ("uri_parameters", p.uri_parameters),
                ];
                if let Some((k, _)) = tone_keys.iter().find(|(_, set)| *set) {
                    return Err(invalid_owned(
                        format!("{key}.{k}"),
                        "an echo plan sends the caller's own audio back, not a tone: remove it"
                            .into(),
                    ));
                }
            }
            if p.second_level_dbm0.is_some() && p.second_frequency.is_none() {
                return Err(invalid_owned(
                    format!("{key}.second_level_dbm0"),
                    "is the level of a second tone: set second_frequency too".into(),
                ));
            }
            if p.sweep_ms.is_some() && p.sweep_to_frequency.is_none() {
                return Err(invalid_owned(
                    format!("{key}.sweep_ms"),
                    "is the time of a sweep: set sweep_to_frequency too".into(),
                ));
            }
            if p.sweep_to_frequency.is_some() && p.sweep_ms.is_none() {
                return Err(invalid_owned(
                    format!("{key}.sweep_ms"),
                    "a sweep needs its time (100..60000 ms)".into(),
                ));
            }
            p.shape(level)
                .check(frequency, level)
                .map_err(|e| invalid_owned(format!("{key}.{}", e.field.config_key()), e.reason))?;
        }
        if b.auto_answer_delay_ms > 300_000 {
            return Err(invalid(
                "behavior.auto_answer_delay_ms",
                "must be at most 300000 (5 minutes)",
            ));
        }
        if b.max_concurrent_calls == 0 {
            return Err(invalid(
                "behavior.max_concurrent_calls",
                "must be at least 1",
            ));
        }
        if m.audio_sample_rate != 8000 {
            return Err(invalid(
                "media.audio_sample_rate",
                format!(
                    "{} Hz: G.711 (PCMU/PCMA) runs at 8000 Hz only",
                    m.audio_sample_rate
                ),
            ));
        }
        if m.preferred_codecs.is_empty() {
            return Err(invalid(
                "media.preferred_codecs",
                "must name at least one codec",
            ));
        }
        for (i, c) in m.preferred_codecs.iter().enumerate() {
            if m.preferred_codecs[..i].contains(c) {
                return Err(invalid(
                    "media.preferred_codecs",
                    format!("{c:?} is listed twice"),
                ));
            }
        }
        if m.rtp_port_range_start < 1024 {
            return Err(invalid(
                "media.rtp_port_range_start",
                "must be at least 1024",
            ));
        }
        if m.rtp_port_range_start >= m.rtp_port_range_end {
            return Err(invalid(
                "media.rtp_port_range_end",
                format!(
                    "range {}..{} is empty or inverted: the end must be above the start",
                    m.rtp_port_range_start, m.rtp_port_range_end
                ),
            ));
        }
        if self.rtp_port_pairs() == 0 {
            return Err(invalid(
                "media.rtp_port_range_end",
                "the range holds no even RTP port with its RTCP port",
            ));
        }
        if !m.advertised_address.is_empty() {
            check_host("media.advertised_address", &m.advertised_address)?;
        }
        if m.endpoint.is_empty() {
            return Err(invalid("media.endpoint", "names no media service"));
        }
        for (i, e) in m.endpoint.iter().enumerate() {
            if !(e.starts_with("http://") || e.starts_with("https://")) {
                return Err(invalid(
                    "media.endpoint",
                    format!("{e:?} must be an http:// or https:// URL"),
                ));
            }
            if m.endpoint[..i].contains(e) {
                return Err(invalid("media.endpoint", format!("{e:?} is listed twice")));
            }
        }
        if m.pacing_threads > 64 {
            return Err(invalid(
                "media.pacing_threads",
                "must be 0 (one per core) to 64",
            ));
        }
        if self.runtime.worker_threads > 256 {
            return Err(invalid(
                "runtime.worker_threads",
                "must be 0 (one per core) to 256",
            ));
        }
        if m.pacing_catch_up_ms > 200 || !m.pacing_catch_up_ms.is_multiple_of(20) {
            return Err(invalid(
                "media.pacing_catch_up_ms",
                format!(
                    "{} must be a whole number of 20 ms packet times from 0 to 200",
                    m.pacing_catch_up_ms
                ),
            ));
        }
        if m.lease_seconds < 2 {
            return Err(invalid("media.lease_seconds", "must be at least 2"));
        }
        let t = &self.telemetry;
        if !(0.0..=1.0).contains(&t.sampling_ratio) {
            return Err(invalid(
                "telemetry.sampling_ratio",
                format!("{} is not 0..1", t.sampling_ratio),
            ));
        }
        let url = |e: &str| e.starts_with("http://") || e.starts_with("https://");
        if !(t.otlp_endpoint.is_empty() || url(&t.otlp_endpoint)) {
            return Err(invalid(
                "telemetry.otlp_endpoint",
                format!(
                    "{:?} must be an http:// or https:// URL (OTLP/gRPC), or empty",
                    t.otlp_endpoint
                ),
            ));
        }
        if !(1..=3600).contains(&self.log.stats_interval_seconds) {
            return Err(invalid("log.stats_interval_seconds", "must be 1..3600"));
        }
        if self.overload.max_event_loop_lag_ms > 60_000 {
            return Err(invalid(
                "overload.max_event_loop_lag_ms",
                "must be at most 60000 (0 turns the check off)",
            ));
        }
        if self.overload.max_answer_lateness_ms > 60_000 {
            return Err(invalid(
                "overload.max_answer_lateness_ms",
                "must be at most 60000 (0 turns the check off)",
            ));
        }
        if self.overload.max_invite_wait_ms > 60_000 {
            return Err(invalid(
                "overload.max_invite_wait_ms",
                "must be at most 60000 (0 turns the check off)",
            ));
        }
        if self.shutdown.grace_seconds > 3600 {
            return Err(invalid("shutdown.grace_seconds", "must be at most 3600"));
        }
        if self
            .log
            .level
            .parse::<tracing_subscriber::EnvFilter>()
            .is_err()
        {
            return Err(invalid(
                "log.level",
                format!("{:?} is not a tracing filter", self.log.level),
            ));
        }
        Ok(())
    }

    /// Number of (RTP, RTCP) port pairs in the configured range.
    pub fn rtp_port_pairs(&self) -> usize {
        rtp_ports(
            self.media.rtp_port_range_start,
            self.media.rtp_port_range_end,
        )
        .count()
    }

    /// The host to put in SIP Contact and Via headers.
    /// The port in Contact and Via: `sip.advertised_port`, or `sip.port` when it is 0.
    pub fn sip_advertised_port(&self) -> u16 {
        if self.sip.advertised_port == 0 {
            self.sip.port
        } else {
            self.sip.advertised_port
        }
    }

    pub fn sip_advertised_host(&self) -> String {
        advertised(&self.sip.advertised_address, self.sip.bind_address)
    }

    /// The address to put in the SDP c= line.
    pub fn media_advertised_host(&self) -> String {
        advertised(&self.media.advertised_address, self.media.bind_address)
    }
}

/// Even RTP ports of the range whose RTCP port (+1) is inside it too.
pub fn rtp_ports(start: u16, end: u16) -> impl Iterator<Item = u16> {
    let first = start + (start % 2);
    (first..end).step_by(2).filter(move |p| *p < end)
}

/// `sip:[user@]host[:port][;transport=udp|tcp]`, the host an IP address (IPv6 in brackets) or a
/// name.
fn check_sip_uri(key: &'static str, uri: &str) -> Result<(), ConfigError> {
    let bad = |why: &str| invalid(key, format!("{uri:?} {why}"));
    let rest = uri
        .strip_prefix("sip:")
        .ok_or_else(|| bad("is not a sip: URI (sip:[user@]host[:port])"))?;
    let (addr, params) = rest.split_once(';').unwrap_or((rest, ""));
    for p in params.split(';').filter(|p| !p.is_empty()) {
        match p.to_ascii_lowercase().as_str() {
            "transport=udp" | "transport=tcp" => {}
            _ => {
                return Err(bad(
                    "has a parameter other than transport=udp or transport=tcp",
                ))
            }
        }
    }
    let hostport = match addr.rsplit_once('@') {
        Some((user, hp)) if !user.is_empty() => hp,
        Some(_) => return Err(bad("has an empty user part")),
        None => addr,
    };
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (h, rest) = v6
            .split_once(']')
            .ok_or_else(|| bad("has an IPv6 address without its closing bracket"))?;
        if h.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(bad("has a bracketed host that is not an IPv6 address"));
        }
        (None, rest.strip_prefix(':'))
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (Some(h), Some(p)),
            None => (Some(hostport), None),
        }
    };
    if let Some(h) = host {
        check_host(key, h)?;
    }
    if let Some(p) = port {
        if p.parse::<u16>().ok().filter(|p| *p != 0).is_none() {
            return Err(bad("has a port that is not 1..65535"));
        }
    }
    Ok(())
}

fn check_host(key: &'static str, host: &str) -> Result<(), ConfigError> {
    if host.parse::<IpAddr>().is_ok() {
        return Ok(());
    }
    let valid = !host.is_empty()
        && host.len() <= 253
        && host
            .split('.')
            .all(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
    if valid {
        Ok(())
    } else {
        Err(invalid(
            key,
            format!("{host:?} is neither an IP address nor a host name"),
        ))
    }
}

fn advertised(configured: &str, bind: IpAddr) -> String {
    if !configured.is_empty() {
        return configured.to_string();
    }
    if !bind.is_unspecified() {
        return bind.to_string();
    }
    first_non_loopback_ipv4()
        .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
        .to_string()
}

/// This host's first non-loopback IPv4 address, read from the interfaces (nothing is sent).
pub fn first_non_loopback_ipv4() -> Option<IpAddr> {
    if_addrs::get_if_addrs()
        .ok()?
        .into_iter()
        .filter(|i| !i.is_loopback())
        .map(|i| i.ip())
        .find(|ip| ip.is_ipv4())
}

/// A secret from the configuration: printed as `"(set)"` or `"(empty)"`, never itself
/// (`--check-config` prints the configuration).
#[derive(Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(transparent)]
pub struct Secret(pub(crate) String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_empty() {
            "(empty)"
        } else {
            "(set)"
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(
        file: Option<&str>,
        sets: &[&str],
        env: &[(&str, &str)],
    ) -> Result<Config, ConfigError> {
        let dir = std::env::temp_dir().join(format!(
            "milliwatt-config-test-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.toml");
        if let Some(text) = file {
            std::fs::write(&path, text).unwrap();
        }
        let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        Config::load_with_env(file.map(|_| path.as_path()), &sets, env)
    }

    fn err(r: Result<Config, ConfigError>) -> String {
        r.expect_err("expected a configuration error").to_string()
    }

    #[test]
    fn grpc_tls_keys_go_in_pairs_and_need_what_they_build_on() {
        let ok = load(
            None,
            &[
                "media.grpc_tls_cert_file=/c.pem",
                "media.grpc_tls_key_file=/k.pem",
                "media.grpc_tls_client_ca_file=/ca.pem",
                "media.grpc_tls_ca_file=/ca.pem",
                "media.grpc_tls_client_cert_file=/cc.pem",
                "media.grpc_tls_client_key_file=/ck.pem",
                "media.grpc_tls_server_name=media.example",
            ],
            &[],
        )
        .unwrap();
        assert_eq!(ok.media.grpc_tls_server_name, "media.example");
        let cases: &[(&[&str], &str, &str)] = &[
            (
                &["media.grpc_tls_cert_file=/c.pem"],
                "media.grpc_tls_key_file",
                "media.grpc_tls_cert_file",
            ),
            (
                &["media.grpc_tls_key_file=/k.pem"],
                "media.grpc_tls_cert_file",
                "media.grpc_tls_key_file",
            ),
            (
                &[
                    "media.grpc_tls_ca_file=/ca.pem",
                    "media.grpc_tls_client_key_file=/ck.pem",
                ],
                "media.grpc_tls_client_cert_file",
                "media.grpc_tls_client_key_file",
            ),
            (
                &["media.grpc_tls_client_ca_file=/ca.pem"],
                "media.grpc_tls_client_ca_file",
                "needs media.grpc_tls_cert_file",
            ),
            (
                &[
                    "media.grpc_tls_client_cert_file=/cc.pem",
                    "media.grpc_tls_client_key_file=/ck.pem",
                ],
                "media.grpc_tls_client_cert_file",
                "needs media.grpc_tls_ca_file",
            ),
            (
                &["media.grpc_tls_server_name=media"],
                "media.grpc_tls_server_name",
                "needs media.grpc_tls_ca_file",
            ),
        ];
        for (sets, key, says) in cases {
            let e = err(load(None, sets, &[]));
            assert!(
                e.starts_with(&format!("configuration key `{key}`")) && e.contains(says),
                "{sets:?}: {e}"
            );
        }
        // The environment form of a key, as Compose and the chart set it.
        let e = err(load(
            None,
            &[],
            &[("MILLIWATT_MEDIA__GRPC_TLS_CERT_FILE", "/c.pem")],
        ));
        assert!(e.contains("media.grpc_tls_key_file"), "{e}");
    }

    #[test]
    fn embedded_defaults_are_valid() {
        let c = load(None, &[], &[]).unwrap();
        assert_eq!(c.sip.port, 5060);
        assert_eq!(c.behavior.tone_frequency, 440);
        assert_eq!(c.media.preferred_codecs, vec![Codec::Pcmu, Codec::Pcma]);
    }

    #[test]
    fn sip_limits_are_checked() {
        let c = load(None, &[], &[]).unwrap();
        assert_eq!(
            (
                c.sip.max_message_bytes,
                c.sip.tcp_max_connections,
                c.sip.tcp_idle_timeout_seconds,
                c.sip.tcp_message_timeout_seconds
            ),
            (65535, 1000, 900, 30)
        );
        for (file, key) in [
            ("[sip]\nmax_message_bytes = 4096\n", "sip.max_message_bytes"),
            (
                "[sip]\nmax_message_bytes = 70000\n",
                "sip.max_message_bytes",
            ),
            (
                "[sip]\ntcp_max_connections = 0\n",
                "sip.tcp_max_connections",
            ),
            (
                "[sip]\ntcp_idle_timeout_seconds = 0\n",
                "sip.tcp_idle_timeout_seconds",
            ),
            (
                "[sip]\ntcp_message_timeout_seconds = 0\n",
                "sip.tcp_message_timeout_seconds",
            ),
        ] {
            let e = err(load(Some(file), &[], &[]));
            assert!(e.contains(key), "{file}: {e}");
        }
    }

    #[test]
    fn tls_needs_a_certificate_and_a_key_and_a_port_of_its_own() {
        let c = load(None, &[], &[]).unwrap();
        assert_eq!(
            (
                c.sip.tls_certificate_file.as_str(),
                c.sip.tls_key_file.as_str(),
                c.sip.tls_port
            ),
            ("", "", 5061),
            "TLS off by default, 5061 when on"
        );
        let both = "[sip]\ntls_certificate_file = \"/c.pem\"\ntls_key_file = \"/k.pem\"\n";
        assert!(load(Some(both), &[], &[]).is_ok());
        for (file, key) in [
            (
                "[sip]\ntls_certificate_file = \"/c.pem\"\n",
                "sip.tls_key_file",
            ),
            (
                "[sip]\ntls_key_file = \"/k.pem\"\n",
                "sip.tls_certificate_file",
            ),
            (&format!("{both}tls_port = 5060\n"), "sip.tls_port"),
            (&format!("{both}tls_port = 0\n"), "sip.tls_port"),
        ] {
            let e = err(load(Some(file), &[], &[]));
            assert!(e.contains(&format!("`{key}`")), "{file}: {e}");
        }
    }

    #[test]
    fn a_quality_collector_must_be_a_sip_uri() {
        assert_eq!(load(None, &[], &[]).unwrap().sip.quality_collector, "");
        for ok in [
            "sip:collector@192.0.2.9:5060",
            "sip:192.0.2.9",
            "sip:vq@collector.example.net;transport=tcp",
            "sip:[2001:db8::9]:5062",
        ] {
            let file = format!("[sip]\nquality_collector = \"{ok}\"\n");
            assert!(load(Some(&file), &[], &[]).is_ok(), "{ok}");
        }
        for bad in [
            "collector@192.0.2.9",
            "sips:192.0.2.9",
            "sip:@192.0.2.9",
            "sip:192.0.2.9:0",
            "sip:192.0.2.9:port",
            "sip:[2001:db8::9:5062",
            "sip:bad host",
            "sip:192.0.2.9;lr",
        ] {
            let file = format!("[sip]\nquality_collector = \"{bad}\"\n");
            let e = err(load(Some(&file), &[], &[]));
            assert!(e.contains("`sip.quality_collector`"), "{bad}: {e}");
        }
    }

    #[test]
    fn source_networks_are_checked_and_parsed() {
        let c = load(None, &[], &[]).unwrap();
        assert!(c.sources.networks().is_empty(), "everyone by default");
        assert_eq!(c.sources.refused_action, RefusedAction::Forbidden);
        assert_eq!(
            (
                c.sources.max_new_calls_per_second,
                c.sources.max_concurrent_calls
            ),
            (0, 0),
            "no limits by default"
        );
        let file = "[sources]\nallowed_networks = [\"10.1.2.3/8\", \"192.0.2.7\", \"2001:db8::/32\"]\nrefused_action = \"silence\"\n";
        let c = load(Some(file), &[], &[]).unwrap();
        let nets: Vec<String> = c.sources.networks().iter().map(|n| n.to_string()).collect();
        assert_eq!(nets, ["10.0.0.0/8", "192.0.2.7/32", "2001:db8::/32"]);
        assert_eq!(c.sources.refused_action, RefusedAction::Silence);
        let e = err(load(
            Some("[sources]\nallowed_networks = [\"10.0.0.0/33\"]\n"),
            &[],
            &[],
        ));
        assert!(
            e.contains("sources.allowed_networks") && e.contains("10.0.0.0/33"),
            "{e}"
        );
        let e = err(load(
            Some("[sources]\nrefused_action = \"403\"\n"),
            &[],
            &[],
        ));
        assert!(e.contains("refused_action") && e.contains("403"), "{e}");
    }

    #[test]
    fn from_toml_is_the_file_layer() {
        let file = "[sip]\nport = 5070\n[behavior]\ntone_frequency = 1004\n";
        let c = Config::from_toml(file).unwrap();
        assert_eq!((c.sip.port, c.behavior.tone_frequency), (5070, 1004));
        assert_eq!(
            err(Config::from_toml("[sip]\nport = 0\n")),
            err(load(Some("[sip]\nport = 0\n"), &[], &[]))
        );
        assert!(err(Config::from_toml("[sip]\nprot = 1\n")).contains("prot"));
    }

    #[test]
    fn layers_apply_in_order() {
        let file = "[sip]\nport = 5070\n[behavior]\ntone_frequency = 1004\n";
        let c = load(Some(file), &[], &[]).unwrap();
        assert_eq!(c.sip.port, 5070);
        assert_eq!(c.behavior.tone_frequency, 1004);
        let c = load(Some(file), &[], &[("MILLIWATT_SIP__PORT", "5080")]).unwrap();
        assert_eq!(c.sip.port, 5080);
        let c = load(
            Some(file),
            &["sip.port=5090"],
            &[("MILLIWATT_SIP__PORT", "5080")],
        )
        .unwrap();
        assert_eq!(c.sip.port, 5090);
        let c = load(
            None,
            &[],
            &[("MILLIWATT_MEDIA__PREFERRED_CODECS", "PCMA,PCMU")],
        )
        .unwrap();
        assert_eq!(c.media.preferred_codecs, vec![Codec::Pcma, Codec::Pcmu]);
        let c = load(None, &["media.preferred_codecs=PCMA"], &[]).unwrap();
        assert_eq!(c.media.preferred_codecs, vec![Codec::Pcma]);
    }

    #[test]
    fn plans_take_dual_tones_cadences_and_sweeps() {
        let file = "[[behavior.plans]]\nnumber = \"busy\"\nfrequency = 480\nlevel_dbm0 = -24.0\n\
                    second_frequency = 620\ncadence_ms = [500, 500]\n\
                    [[behavior.plans]]\nnumber = \"sweep\"\nfrequency = 300\n\
                    sweep_to_frequency = 3400\nsweep_ms = 10000\n";
        let c = load(Some(file), &[], &[]).unwrap();
        let busy = &c.behavior.plans[0];
        assert_eq!(
            busy.shape(-24.0),
            Shape {
                second: Some((620, -24.0)),
                sweep: None,
                cadence_ms: vec![500, 500],
            },
            "the second tone takes the plan's level"
        );
        assert_eq!(
            c.behavior.plans[1].shape(-10.0).sweep,
            Some(Sweep {
                to_hz: 3400,
                ms: 10_000
            })
        );
    }

    #[test]
    fn plans_by_dialed_number_parse_and_their_bad_keys_are_named() {
        let c = load(None, &[], &[]).unwrap();
        assert!(c.behavior.plans.is_empty(), "no plan by default");
        let file = "[[behavior.plans]]\nnumber = \"1004\"\nfrequency = 1004\nlevel_dbm0 = 0.0\n\
                    [[behavior.plans]]\nnumber = \"tone-*\"\nduration_seconds = 3\n";
        let c = load(Some(file), &[], &[]).unwrap();
        assert_eq!(
            c.behavior.plans,
            [
                PlanConfig {
                    number: "1004".into(),
                    frequency: Some(1004),
                    level_dbm0: Some(0.0),
                    duration_seconds: None,
                    uri_parameters: false,
                    early_media: false,
                    ..PlanConfig::default()
                },
                PlanConfig {
                    number: "tone-*".into(),
                    frequency: None,
                    level_dbm0: None,
                    duration_seconds: Some(3),
                    uri_parameters: false,
                    early_media: false,
                    ..PlanConfig::default()
                },
            ]
        );
        for (file, key) in [
            ("[[behavior.plans]]\nnumber = \"\"\n", "behavior.plans[0].number"),
            ("[[behavior.plans]]\nnumber = \"a b\"\n", "behavior.plans[0].number"),
            (
                "[[behavior.plans]]\nnumber = \"1\"\n[[behavior.plans]]\nnumber = \"1\"\n",
                "behavior.plans[1].number",
            ),
            (
                "[[behavior.plans]]\nnumber = \"1\"\n[[behavior.plans]]\nnumber = \"2\"\nfrequency = 4000\n",
                "behavior.plans[1].frequency",
            ),
            (
                "[[behavior.plans]]\nnumber = \"1\"\nlevel_dbm0 = 4.0\n",
                "behavior.plans[0].level_dbm0",
            ),
            (
                "[[behavior.plans]]\nnumber = \"1\"\nduration_seconds = 0\n",
                "behavior.plans[0].duration_seconds",
            ),
            (
                "[[behavior.plans]]\nnumber = \"1\"\nsecond_frequency = 5000\n",
                "behavior.plans[0].second_frequency",
            ),
            (
                "[[behavior.plans]]\nnumber = \"1\"\nsecond_level_dbm0 = -13.0\n",
                "behavior.plans[0].second_level_dbm0",
            ),
            (
                // Two sines at 0 dBm0 would clip.
                "[[behavior.plans]]\nnumber = \"1\"\nlevel_dbm0 = 0.0\nsecond_frequency = 350\n",
                "behavior.plans[0].second_level_dbm0",
            ),
            (
                "[[behavior.plans]]\nnumber = \"1\"\nsweep_to_frequency = 3000\n",
                "behavior.plans[0].sweep_ms",
            ),
            (
                "[[behavior.plans]]\nnumber = \"1\"\nsweep_ms = 3000\n",
                "behavior.plans[0].sweep_ms",
            ),
            (
                "[[behavior.plans]]\nnumber = \"1\"\nsweep_to_frequency = 3000\nsweep_ms = 50\n",
                "behavior.plans[0].sweep_ms",
            ),
            (
                "[[behavior.plans]]\nnumber = \"1\"\ncadence_ms = [500, 510]\n",
                "behavior.plans[0].cadence_ms",
            ),
            (
                "[[behavior.plans]]\nnumber = \"1\"\ncadence_ms = [500]\n",
                "behavior.plans[0].cadence_ms",
            ),
            (
                "[[behavior.plans]]\nnumber = \"echo\"\necho = true\nfrequency = 1000\n",
                "behavior.plans[0].frequency",
            ),
            (
                "[[behavior.plans]]\nnumber = \"echo\"\necho = true\nuri_parameters = true\n",
                "behavior.plans[0].uri_parameters",
            ),
        ] {
            let e = err(load(Some(file), &[], &[]));
            assert!(e.contains(&format!("`{key}`")), "{file}: {e}");
        }
        let e = err(load(
            Some("[[behavior.plans]]\nnumber = \"1\"\nfreq = 1\n"),
            &[],
            &[],
        ));
        assert!(e.contains("freq"), "unknown plan keys are refused: {e}");
        let c = load(
            Some("[[behavior.plans]]\nnumber = \"tone\"\nuri_parameters = true\n"),
            &[],
            &[],
        )
        .unwrap();
        assert!(c.behavior.plans[0].uri_parameters);
    }

    #[test]
    fn the_advertised_sip_port_is_sip_port_unless_set() {
        let c = load(None, &["sip.port=5070"], &[]).unwrap();
        assert_eq!(c.sip_advertised_port(), 5070);
        let c = load(None, &["sip.port=5070", "sip.advertised_port=31060"], &[]).unwrap();
        assert_eq!(c.sip_advertised_port(), 31060);
    }

    #[test]
    fn the_media_endpoint_is_one_url_or_a_pool() {
        let c = load(None, &[], &[]).unwrap();
        assert_eq!(c.media.endpoint, ["http://127.0.0.1:50051"]);
        let pool = ["http://m1:50051", "http://m2:50051"];
        let c = load(
            Some("[media]\nendpoint = [\"http://m1:50051\", \"http://m2:50051\"]\n"),
            &[],
            &[],
        )
        .unwrap();
        assert_eq!(c.media.endpoint, pool);
        let c = load(
            None,
            &[],
            &[(
                "MILLIWATT_MEDIA__ENDPOINT",
                "http://m1:50051,http://m2:50051",
            )],
        )
        .unwrap();
        assert_eq!(c.media.endpoint, pool);
        let c = load(
            None,
            &["media.endpoint=http://m1:50051, http://m2:50051"],
            &[],
        )
        .unwrap();
        assert_eq!(c.media.endpoint, pool);
        let c = load(
            None,
            &[],
            &[("MILLIWATT_MEDIA__ENDPOINT", "http://m1:50051")],
        )
        .unwrap();
        assert_eq!(c.media.endpoint, ["http://m1:50051"]);
    }

    #[test]
    fn unknown_keys_are_rejected_with_their_name() {
        let e = err(load(Some("[sip]\nprot = 5070\n"), &[], &[]));
        assert!(e.contains("prot"), "{e}");
        let e = err(load(Some("[sipp]\nport = 5070\n"), &[], &[]));
        assert!(e.contains("sipp"), "{e}");
        let e = err(load(None, &[], &[("MILLIWATT_SIP__PROT", "1")]));
        assert!(e.contains("prot"), "{e}");
    }

    #[test]
    fn impossible_values_name_the_key() {
        let cases: &[(&str, &str)] = &[
            (
                "[media]\nrtp_port_range_start = 20000\nrtp_port_range_end = 10000\n",
                "media.rtp_port_range_end",
            ),
            (
                "[behavior]\ntone_frequency = 4000\n",
                "behavior.tone_frequency",
            ),
            (
                "[behavior]\ntone_frequency = 0\n",
                "behavior.tone_frequency",
            ),
            (
                "[media]\naudio_sample_rate = 16000\n",
                "media.audio_sample_rate",
            ),
            ("[media]\npreferred_codecs = []\n", "media.preferred_codecs"),
            (
                "[media]\npreferred_codecs = [\"PCMU\", \"PCMU\"]\n",
                "media.preferred_codecs",
            ),
            (
                "[behavior]\ntone_level_dbm0 = 6.0\n",
                "behavior.tone_level_dbm0",
            ),
            (
                "[behavior]\nmax_concurrent_calls = 0\n",
                "behavior.max_concurrent_calls",
            ),
            (
                "[media]\nendpoint = \"127.0.0.1:50051\"\n",
                "media.endpoint",
            ),
            ("[media]\nendpoint = []\n", "media.endpoint"),
            (
                "[media]\nendpoint = [\"http://a:1\", \"ftp://b:1\"]\n",
                "media.endpoint",
            ),
            (
                "[media]\nendpoint = [\"http://a:1\", \"http://a:1\"]\n",
                "media.endpoint",
            ),
            (
                "[sip]\nadvertised_address = \"bad host!\"\n",
                "sip.advertised_address",
            ),
            ("[log]\nlevel = \"=[\"\n", "log.level"),
            (
                "[shutdown]\ngrace_seconds = 7200\n",
                "shutdown.grace_seconds",
            ),
            (
                "[runtime]\nworker_threads = 1000\n",
                "runtime.worker_threads",
            ),
            (
                "[overload]\nmax_answer_lateness_ms = 70000\n",
                "overload.max_answer_lateness_ms",
            ),
            (
                "[media]\npacing_catch_up_ms = 30\n",
                "media.pacing_catch_up_ms",
            ),
            (
                "[media]\npacing_catch_up_ms = 220\n",
                "media.pacing_catch_up_ms",
            ),
        ];
        for (file, key) in cases {
            let e = err(load(Some(file), &[], &[]));
            assert!(e.contains(key), "{file:?}: {e}");
        }
        let e = err(load(
            Some("[media]\npreferred_codecs = [\"G729\"]\n"),
            &[],
            &[],
        ));
        assert!(e.contains("G729") && e.contains("preferred_codecs"), "{e}");
        let e = err(load(Some("[sip]\ntransport = \"sctp\"\n"), &[], &[]));
        assert!(e.contains("sctp") && e.contains("transport"), "{e}");
        let e = err(load(Some("[sip]\nport = \"x\"\n"), &[], &[]));
        assert!(e.contains("port"), "{e}");
        let e = err(load(
            Some("[media]\npacing_priority = \"fast\"\n"),
            &[],
            &[],
        ));
        assert!(e.contains("fast") && e.contains("pacing_priority"), "{e}");
        let c = load(Some("[media]\npacing_priority = \"normal\"\n"), &[], &[]).unwrap();
        assert_eq!(c.media.pacing_priority, PacingPriority::Normal);
        assert_eq!(
            load(None, &[], &[]).unwrap().media.pacing_priority,
            PacingPriority::Realtime,
            "the embedded default"
        );
        assert_eq!(load(None, &[], &[]).unwrap().media.pacing_catch_up_ms, 60);
        let c = load(Some("[media]\npacing_catch_up_ms = 0\n"), &[], &[]).unwrap();
        assert_eq!(c.media.pacing_catch_up_ms, 0);
        let e = err(load(Some("[media]\nrtp_start = \"later\"\n"), &[], &[]));
        assert!(e.contains("later") && e.contains("rtp_start"), "{e}");
        let c = load(Some("[media]\nrtp_start = \"on_caller_rtp\"\n"), &[], &[]).unwrap();
        assert_eq!(c.media.rtp_start, RtpStart::OnCallerRtp);
        assert_eq!(
            load(None, &[], &[]).unwrap().media.rtp_start,
            RtpStart::OnAnswer,
            "the embedded default"
        );
    }

    #[test]
    fn bad_override_syntax() {
        assert!(err(load(None, &["sip.port"], &[])).contains("key=value"));
    }

    #[test]
    fn port_pairs_are_even_with_rtcp_inside() {
        assert_eq!(
            rtp_ports(10000, 10004).collect::<Vec<_>>(),
            vec![10000, 10002]
        );
        assert_eq!(
            rtp_ports(10001, 10006).collect::<Vec<_>>(),
            vec![10002, 10004]
        );
        assert_eq!(rtp_ports(10000, 10001).count(), 1);
    }
}
