//! The signaling side of the media gRPC contract: calls media with the conversions of the proto
//! crate, bounds every call with a timeout, and renews this instance's lease.

use std::time::Duration;

use milliwatt_common::grpc_auth::{ClientInterceptor, Secret};
use milliwatt_common::prometheus_client::metrics::family::Family;
use milliwatt_common::prometheus_client::metrics::histogram::Histogram;
use milliwatt_media_core::session::{Figures, ToneRequest};
use milliwatt_media_core::SessionId;
use milliwatt_proto::convert::{media_failure, start_tone_request};
use milliwatt_proto::v1 as pb;
use milliwatt_signaling_core::media_pool::Load;
use pb::media_client::MediaClient as GrpcClient;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

/// Every call carries the caller's trace context (W3C traceparent) to media.
type Client = GrpcClient<InterceptedService<Channel, ClientInterceptor>>;

/// Bound on one media call: a media service slower than this is treated as unavailable.
const CALL_TIMEOUT: Duration = Duration::from_secs(2);

pub use milliwatt_signaling_core::call::MediaFailure as MediaError;

#[derive(Debug, Clone)]
pub struct Allocation {
    pub session_id: SessionId,
    pub host: String,
    pub port: u16,
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
    /// Lease renewals (the watchdog) on a connection of their own: a burst of allocations
    /// queued on the call connection must never make media look dead.
    watchdog: Client,
    owner: String,
    latency: Latency,
}

/// A new, empty latency family (one for the whole pool).
pub fn latency() -> Latency {
    Family::new_with_constructor(latency_histogram)
}

impl MediaClient {
    /// A lazily connecting client of one media instance at `endpoint` (made by
    /// `ClientTls::endpoint_at`): the media service may come up after signaling. `token`:
    /// `media.grpc_token`, sent with every call when set.
    pub fn new(endpoint: Endpoint, owner: String, token: &Secret, latency: Latency) -> Self {
        let endpoint = endpoint
            .connect_timeout(CALL_TIMEOUT)
            .timeout(CALL_TIMEOUT)
            .tcp_nodelay(true);
        // Two channels, two HTTP/2 connections.
        let calls = endpoint.connect_lazy();
        let watchdog = endpoint.connect_lazy();
        MediaClient {
            client: GrpcClient::with_interceptor(calls, ClientInterceptor::new(token)),
            watchdog: GrpcClient::with_interceptor(watchdog, ClientInterceptor::new(token)),
            owner,
            latency,
        }
    }

    fn observe(&self, method: &'static str, since: std::time::Instant) {
        self.latency
            .get_or_create(&vec![("method", method)])
            .observe(since.elapsed().as_secs_f64());
    }

    pub fn owner(&self) -> &str {
        &self.owner
    }

    pub async fn allocate(&self, call_id: &str, rtcp_mux: bool) -> Result<Allocation, MediaError> {
        let t = std::time::Instant::now();
        let r = self
            .client
            .clone()
            .allocate_session(pb::AllocateSessionRequest {
                call_id: call_id.to_string(),
                owner: self.owner.clone(),
                lease_seconds: 0,
                rtcp_mux,
            })
            .await;
        self.observe("AllocateSession", t);
        let r = r.map_err(|s| media_failure(&s))?.into_inner();
        let port = u16::try_from(r.rtp_port)
            .map_err(|_| MediaError::Refused(format!("media answered port {}", r.rtp_port)))?;
        let session_id = r
            .session_id
            .parse()
            .map_err(|e| MediaError::Refused(format!("media answered a bad session id: {e}")))?;
        Ok(Allocation {
            session_id,
            host: r.rtp_address,
            port,
        })
    }

    pub async fn start_tone(
        &self,
        session_id: &SessionId,
        tone: &ToneRequest,
    ) -> Result<u32, MediaError> {
        let t = std::time::Instant::now();
        let r = self
            .client
            .clone()
            .start_tone(start_tone_request(session_id, tone))
            .await;
        self.observe("StartTone", t);
        Ok(r.map_err(|s| media_failure(&s))?.into_inner().ssrc)
    }

    pub async fn stop_tone(&self, session_id: &SessionId) -> Result<(), MediaError> {
        self.client
            .clone()
            .stop_tone(pb::StopToneRequest {
                session_id: session_id.to_string(),
            })
            .await
            .map_err(|s| media_failure(&s))?;
        Ok(())
    }

    /// A DTMF digit the caller sent by SIP INFO, reported to media with the RTP ones.
    pub async fn report_dtmf(
        &self,
        session_id: &SessionId,
        digit: char,
        duration_ms: u32,
    ) -> Result<(), MediaError> {
        self.client
            .clone()
            .report_dtmf(pb::ReportDtmfRequest {
                session_id: session_id.to_string(),
                digit: digit.to_string(),
                duration_ms,
            })
            .await
            .map_err(|s| media_failure(&s))?;
        Ok(())
    }

    /// Releases the session; returns its final figures.
    pub async fn release(
        &self,
        session_id: &SessionId,
        reason: &str,
    ) -> Result<Figures, MediaError> {
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
        let r = r.map_err(|s| media_failure(&s))?.into_inner();
        Ok(r.session.unwrap_or_default().into())
    }

    /// Renews this instance's lease; returns the media process's instance id and its load.
    pub async fn renew(&self, timeout: Duration) -> Result<(String, Load), MediaError> {
        let mut req = tonic::Request::new(pb::RenewLeaseRequest {
            owner: self.owner.clone(),
        });
        req.set_timeout(timeout);
        let r = self
            .watchdog
            .clone()
            .renew_lease(req)
            .await
            .map_err(|s| media_failure(&s))?
            .into_inner();
        let load = Load {
            sessions: r.total_sessions,
            free_ports: r.free_ports,
            draining: r.draining,
        };
        Ok((r.media_instance, load))
    }
}
