//! The signaling side of the media gRPC contract: converts between domain values and prost
//! messages, bounds every call with a timeout, and renews this instance's lease.

use std::net::SocketAddr;
use std::time::Duration;

use milliwatt_common::prometheus_client::metrics::family::Family;
use milliwatt_common::prometheus_client::metrics::histogram::Histogram;
use milliwatt_common::telemetry::TraceContextInterceptor;
use milliwatt_common::CodecName;
use milliwatt_proto::v1 as pb;
use pb::media_client::MediaClient as GrpcClient;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

/// Every call carries the caller's trace context (W3C traceparent) to media.
type Client = GrpcClient<InterceptedService<Channel, TraceContextInterceptor>>;

/// Bound on one media call: a media service slower than this is treated as unavailable.
const CALL_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    #[error("media service unavailable: {0}")]
    Unavailable(String),
    #[error("no free RTP port on the media service")]
    PortsExhausted,
    #[error("media session not found")]
    NotFound,
    #[error("media service refused the request: {0}")]
    Refused(String),
}

impl From<tonic::Status> for MediaError {
    fn from(s: tonic::Status) -> Self {
        match s.code() {
            tonic::Code::ResourceExhausted => MediaError::PortsExhausted,
            tonic::Code::NotFound => MediaError::NotFound,
            tonic::Code::Unavailable
            | tonic::Code::DeadlineExceeded
            | tonic::Code::Cancelled
            | tonic::Code::Unknown => MediaError::Unavailable(s.message().to_string()),
            _ => MediaError::Refused(format!("{:?}: {}", s.code(), s.message())),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Allocation {
    pub session_id: String,
    pub host: String,
    pub port: u16,
}

#[derive(Debug, Clone)]
pub struct Tone {
    pub remote: SocketAddr,
    pub codec: CodecName,
    pub payload_type: u8,
    pub frequency_hz: u32,
    pub level_dbm0: f64,
    /// Media stops by itself after this long (a safety net; signaling ends the call earlier).
    pub duration: Duration,
    /// The caller's telephone-event payload type (DTMF detection by media).
    pub dtmf_payload_type: Option<u8>,
}

/// What media says of a released session.
#[derive(Debug, Clone, Default)]
pub struct Released {
    pub packets_sent: u64,
    pub packets_received: u64,
    pub loss_percent: f64,
    pub jitter_ms: f64,
    pub mos: f64,
    pub dtmf_digits: String,
}

/// gRPC call latency by method.
pub type Latency = Family<Vec<(&'static str, &'static str)>, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    Histogram::new([
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0,
    ])
}

#[derive(Clone)]
pub struct MediaClient {
    client: Client,
    owner: String,
    latency: Latency,
}

impl MediaClient {
    /// A lazily connecting client: the media service may come up after signaling.
    pub fn new(endpoint: &str, owner: String) -> anyhow::Result<Self> {
        let channel = Endpoint::from_shared(endpoint.to_string())?
            .connect_timeout(CALL_TIMEOUT)
            .timeout(CALL_TIMEOUT)
            .tcp_nodelay(true)
            .connect_lazy();
        Ok(MediaClient {
            client: GrpcClient::with_interceptor(channel, TraceContextInterceptor),
            owner,
            latency: Family::new_with_constructor(latency_histogram),
        })
    }

    /// The latency histograms, for `/metrics`.
    pub fn latency(&self) -> Latency {
        self.latency.clone()
    }

    fn observe(&self, method: &'static str, since: std::time::Instant) {
        self.latency
            .get_or_create(&vec![("method", method)])
            .observe(since.elapsed().as_secs_f64());
    }

    pub fn owner(&self) -> &str {
        &self.owner
    }

    pub async fn allocate(&self, call_id: &str) -> Result<Allocation, MediaError> {
        let t = std::time::Instant::now();
        let r = self
            .client
            .clone()
            .allocate_session(pb::AllocateSessionRequest {
                call_id: call_id.to_string(),
                owner: self.owner.clone(),
                lease_seconds: 0,
            })
            .await;
        self.observe("AllocateSession", t);
        let r = r?.into_inner();
        let port = u16::try_from(r.rtp_port)
            .map_err(|_| MediaError::Refused(format!("media answered port {}", r.rtp_port)))?;
        Ok(Allocation {
            session_id: r.session_id,
            host: r.rtp_address,
            port,
        })
    }

    pub async fn start_tone(&self, session_id: &str, tone: &Tone) -> Result<u32, MediaError> {
        let codec = match tone.codec {
            CodecName::PCMU => pb::Codec::Pcmu,
            CodecName::PCMA => pb::Codec::Pcma,
        };
        let t = std::time::Instant::now();
        let r = self
            .client
            .clone()
            .start_tone(pb::StartToneRequest {
                session_id: session_id.to_string(),
                remote_address: tone.remote.ip().to_string(),
                remote_port: u32::from(tone.remote.port()),
                codec: codec as i32,
                payload_type: u32::from(tone.payload_type),
                frequency_hz: tone.frequency_hz,
                level_dbm0: tone.level_dbm0,
                duration_ms: u32::try_from(tone.duration.as_millis()).unwrap_or(u32::MAX),
                dtmf_payload_type: tone.dtmf_payload_type.map(u32::from).unwrap_or(0),
            })
            .await;
        self.observe("StartTone", t);
        Ok(r?.into_inner().ssrc)
    }

    pub async fn stop_tone(&self, session_id: &str) -> Result<(), MediaError> {
        self.client
            .clone()
            .stop_tone(pb::StopToneRequest {
                session_id: session_id.to_string(),
            })
            .await?;
        Ok(())
    }

    /// Releases the session; returns its final figures.
    pub async fn release(&self, session_id: &str, reason: &str) -> Result<Released, MediaError> {
        let t = std::time::Instant::now();
        let r = self
            .client
            .clone()
            .release_session(pb::ReleaseSessionRequest {
                session_id: session_id.to_string(),
                reason: reason.to_string(),
            })
            .await;
        self.observe("ReleaseSession", t);
        let r = r?.into_inner();
        let s = r.session.unwrap_or_default();
        let q = s.quality.unwrap_or_default();
        Ok(Released {
            packets_sent: s.packets_sent,
            packets_received: q.packets_received,
            loss_percent: q.loss_percent,
            jitter_ms: q.jitter_ms,
            mos: q.mos,
            dtmf_digits: q.dtmf_digits,
        })
    }

    /// Renews this instance's lease; returns the media process's instance id.
    pub async fn renew(&self, timeout: Duration) -> Result<String, MediaError> {
        let mut req = tonic::Request::new(pb::RenewLeaseRequest {
            owner: self.owner.clone(),
        });
        req.set_timeout(timeout);
        let r = self.client.clone().renew_lease(req).await?;
        Ok(r.into_inner().media_instance)
    }
}
