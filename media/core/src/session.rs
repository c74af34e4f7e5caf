//! What a media session is, as the engine, the gRPC edge and the inspection client see it.
//! Plain data: the proto crate converts these to and from the wire types.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use crate::codec::{Codec, SessionId};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MediaError {
    #[error("no session {0}")]
    NotFound(String),
    #[error("no free RTP port in the configured range")]
    PortsExhausted,
    /// The process's open-file limit is reached (two descriptors per session).
    #[error("no file descriptor left for RTP sockets (open-file limit reached)")]
    OutOfDescriptors,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Allocated,
    /// StartTone waits for the caller's first RTP packet (`ToneRequest::wait_for_caller_rtp`).
    WaitingForCaller,
    Sending,
    Stopped,
    Released,
}

/// A validated StartTone request.
#[derive(Debug, Clone, PartialEq)]
pub struct ToneRequest {
    pub remote: SocketAddr,
    pub codec: Codec,
    pub payload_type: u8,
    pub frequency_hz: u32,
    pub level_dbm0: f64,
    pub duration: Option<Duration>,
    /// The caller's telephone-event payload type, for DTMF detection.
    pub dtmf_payload_type: Option<u8>,
    /// Start only when the caller's first RTP packet has arrived (`media.rtp_start =
    /// "on_caller_rtp"`): an INVITE with a forged source cannot aim the tone at a third party.
    pub wait_for_caller_rtp: bool,
    /// A second tone, a sweep, a cadence (checked: [`crate::tone::Shape::check`]).
    pub shape: crate::tone::Shape,
    /// The echo test: the caller's RTP goes straight back instead of a tone (frequency, level
    /// and shape unused).
    pub echo: bool,
    /// SRTP (SDES): our stream encrypted with `send`, the caller's checked and decrypted with
    /// `recv`, RTCP as SRTCP; `None`: RTP in clear.
    pub srtp: Option<crate::srtp::SrtpKeys>,
}

/// Receive-side quality of a session, as shown by GetSession and logged at release.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Quality {
    pub packets_received: u64,
    pub bytes_received: u64,
    pub packets_lost: u64,
    pub loss_percent: f64,
    pub jitter_ms: f64,
    /// 0 before any RTP arrived.
    pub mos: f64,
    pub packets_invalid: u64,
    pub packets_from_unexpected_source: u64,
    pub rtp_source: Option<SocketAddr>,
    pub rtcp_received: u64,
    pub remote_loss_percent: f64,
    pub remote_jitter_ms: f64,
    pub rtt_ms: f64,
    pub dtmf_digits: String,
    /// Echo test: packets sent back, and the time from arrival to echo (mean, largest).
    pub echoed_packets: u64,
    pub echo_turnaround_avg_ms: f64,
    pub echo_turnaround_max_ms: f64,
    /// The SSRC of the caller's stream these figures are of (0 before any RTP arrived).
    pub rtp_ssrc: u32,
}

#[derive(Debug, Clone)]
pub struct Snapshot {
    pub id: SessionId,
    pub call_id: String,
    pub owner: String,
    pub state: State,
    pub tone: Option<ToneRequest>,
    pub local_host: String,
    pub local_port: u16,
    pub ssrc: u32,
    pub packets_sent: u64,
    pub bytes_sent: u64,
    pub packets_skipped: u64,
    pub created_at: SystemTime,
    pub age: Duration,
    /// Receive side; `None` where no receiver runs (unit tests without a runtime).
    pub quality: Option<Quality>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Allocated,
    ToneStarted,
    ToneStopped,
    Released,
    Dtmf,
    RtpSourceLatched,
    Quality,
}

#[derive(Debug, Clone)]
pub struct Event {
    pub kind: EventKind,
    pub session: Snapshot,
    pub reason: String,
    pub at: SystemTime,
    /// For [`EventKind::Dtmf`]: the digit and its duration.
    pub digit: Option<(char, Duration)>,
}

/// What a released session's owner learns of it (logged in the call's last line).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Figures {
    pub packets_sent: u64,
    pub quality: Quality,
}
