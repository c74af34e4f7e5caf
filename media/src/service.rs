//! The gRPC edge: converts prost messages to domain types (one precise `Status` per bad field)
//! and calls the registry.

use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::Stream;
use milliwatt_proto::v1 as pb;
use tokio_stream::wrappers::{errors::BroadcastStreamRecvError, BroadcastStream};
use tokio_stream::StreamExt;
use tonic::{Request, Response, Status};

use crate::sessions::{Registry, ToneRequest};
use milliwatt_common::admin::Health;
use milliwatt_proto::convert::{bad, session_id, status_of};

pub struct MediaService {
    registry: Arc<Registry>,
    /// `media.refuse_private_destinations`
    refuse_private: bool,
    /// Draining (SIGTERM): no new session; RenewLease says so, so signaling places elsewhere.
    health: Health,
}

impl MediaService {
    pub fn new(registry: Arc<Registry>, refuse_private: bool, health: Health) -> Self {
        MediaService {
            registry,
            refuse_private,
            health,
        }
    }
}

type EventStream = Pin<Box<dyn Stream<Item = Result<pb::SessionEvent, Status>> + Send>>;

#[tonic::async_trait]
impl pb::media_server::Media for MediaService {
    async fn allocate_session(
        &self,
        req: Request<pb::AllocateSessionRequest>,
    ) -> Result<Response<pb::AllocateSessionResponse>, Status> {
        let r = req.into_inner();
        if r.owner.is_empty() {
            return Err(bad("owner", "must name the signaling instance"));
        }
        if r.lease_seconds > 3600 {
            return Err(bad(
                "lease_seconds",
                format!("{} is more than 3600", r.lease_seconds),
            ));
        }
        if self.health.is_draining() {
            return Err(Status::unavailable(
                "media is draining (shutting down): it takes no new session",
            ));
        }
        let lease = (r.lease_seconds > 0).then(|| Duration::from_secs(u64::from(r.lease_seconds)));
        let a = self
            .registry
            .allocate(&r.call_id, &r.owner, lease, r.rtcp_mux, Instant::now())
            .map_err(status_of)?;
        Ok(Response::new(pb::AllocateSessionResponse {
            session_id: a.id.to_string(),
            rtp_address: a.host,
            rtp_port: u32::from(a.port),
            lease_seconds: a.lease.as_secs() as u32,
        }))
    }

    async fn start_tone(
        &self,
        req: Request<pb::StartToneRequest>,
    ) -> Result<Response<pb::StartToneResponse>, Status> {
        let r = req.into_inner();
        let id = session_id("session_id", &r.session_id)?;
        let tone = ToneRequest::try_from(r)?;
        if self.refuse_private {
            if let Some(why) = milliwatt_media_core::destination::private(tone.remote.ip()) {
                return Err(bad(
                    "remote_address",
                    format!("{why} (media.refuse_private_destinations)"),
                ));
            }
        }
        let ssrc = self.registry.start_tone(&id, tone).map_err(status_of)?;
        Ok(Response::new(pb::StartToneResponse { ssrc }))
    }

    async fn stop_tone(
        &self,
        req: Request<pb::StopToneRequest>,
    ) -> Result<Response<pb::StopToneResponse>, Status> {
        let id = session_id("session_id", &req.get_ref().session_id)?;
        self.registry
            .stop_tone(&id, Instant::now())
            .map_err(status_of)?;
        Ok(Response::new(pb::StopToneResponse {}))
    }

    async fn release_session(
        &self,
        req: Request<pb::ReleaseSessionRequest>,
    ) -> Result<Response<pb::ReleaseSessionResponse>, Status> {
        let r = req.into_inner();
        let id = session_id("session_id", &r.session_id)?;
        let reason = if r.reason.is_empty() {
            "released by owner"
        } else {
            &r.reason
        };
        let snap = self.registry.release(&id, reason).map_err(status_of)?;
        Ok(Response::new(pb::ReleaseSessionResponse {
            session: Some(snap.into()),
        }))
    }

    async fn renew_lease(
        &self,
        req: Request<pb::RenewLeaseRequest>,
    ) -> Result<Response<pb::RenewLeaseResponse>, Status> {
        let owner = &req.get_ref().owner;
        if owner.is_empty() {
            return Err(bad("owner", "must name the signaling instance"));
        }
        let sessions = self.registry.renew(owner, Instant::now());
        let (total_sessions, _, free_ports, _, _) = self.registry.counts();
        Ok(Response::new(pb::RenewLeaseResponse {
            sessions,
            media_instance: self.registry.instance().to_string(),
            total_sessions,
            free_ports,
            draining: self.health.is_draining(),
        }))
    }

    async fn get_session(
        &self,
        req: Request<pb::GetSessionRequest>,
    ) -> Result<Response<pb::Session>, Status> {
        let id = session_id("session_id", &req.get_ref().session_id)?;
        Ok(Response::new(
            self.registry.get(&id).map_err(status_of)?.into(),
        ))
    }

    async fn list_sessions(
        &self,
        _req: Request<pb::ListSessionsRequest>,
    ) -> Result<Response<pb::ListSessionsResponse>, Status> {
        Ok(Response::new(pb::ListSessionsResponse {
            sessions: self.registry.list().into_iter().map(Into::into).collect(),
        }))
    }

    type WatchSessionsStream = EventStream;

    async fn watch_sessions(
        &self,
        _req: Request<pb::WatchSessionsRequest>,
    ) -> Result<Response<EventStream>, Status> {
        let stream = BroadcastStream::new(self.registry.subscribe()).filter_map(|e| match e {
            Ok(e) => Some(Ok(pb::SessionEvent::from(e))),
            Err(BroadcastStreamRecvError::Lagged(n)) => {
                tracing::warn!(
                    missed = n,
                    "a WatchSessions client is too slow; events dropped"
                );
                None
            }
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn report_dtmf(
        &self,
        req: Request<pb::ReportDtmfRequest>,
    ) -> Result<Response<pb::ReportDtmfResponse>, Status> {
        let r = req.into_inner();
        let id = session_id("session_id", &r.session_id)?;
        let mut chars = r.digit.chars();
        let digit = match (chars.next(), chars.next()) {
            (Some(d @ ('0'..='9' | '*' | '#' | 'A'..='D')), None) => d,
            _ => {
                return Err(bad(
                    "digit",
                    format!("{:?} is not one of 0-9, *, #, A-D", r.digit),
                ))
            }
        };
        if r.duration_ms > 60_000 {
            return Err(bad(
                "duration_ms",
                format!("{} is over 60000", r.duration_ms),
            ));
        }
        self.registry
            .report_dtmf(&id, digit, Duration::from_millis(u64::from(r.duration_ms)))
            .map_err(status_of)?;
        Ok(Response::new(pb::ReportDtmfResponse {}))
    }

    async fn get_stats(
        &self,
        _req: Request<pb::GetStatsRequest>,
    ) -> Result<Response<pb::EngineStats>, Status> {
        use std::sync::atomic::Ordering::Relaxed;
        let (active, sending, free, total, expired) = self.registry.counts();
        let engine = self.registry.engine();
        let c = &engine.counters;
        Ok(Response::new(pb::EngineStats {
            active_sessions: active,
            sending_sessions: sending,
            free_ports: free,
            packets_sent: c.packets_sent.load(Relaxed),
            bytes_sent: c.bytes_sent.load(Relaxed),
            send_errors: c.send_errors.load(Relaxed),
            packets_skipped: c.packets_skipped.load(Relaxed),
            lateness_p50_us: c.lateness_quantile_us(0.5),
            lateness_p99_us: c.lateness_quantile_us(0.99),
            lateness_max_us: c.lateness_max_us.load(Relaxed),
            pacing_threads: engine.threads() as u32,
            sessions_total: total,
            sessions_expired: expired,
        }))
    }
}
