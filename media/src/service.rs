//! The gRPC edge: converts prost messages to domain types (one precise `Status` per bad field)
//! and calls the registry.

use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use futures::Stream;
use milliwatt_proto::v1 as pb;
use tokio_stream::wrappers::{errors::BroadcastStreamRecvError, BroadcastStream};
use tokio_stream::StreamExt;
use tonic::{Request, Response, Status};

use crate::sessions::{EventKind, MediaError, Registry, Snapshot, State, ToneRequest};
use crate::tone::Codec;

pub struct MediaService {
    registry: Arc<Registry>,
}

impl MediaService {
    pub fn new(registry: Arc<Registry>) -> Self {
        MediaService { registry }
    }
}

impl From<MediaError> for Status {
    fn from(e: MediaError) -> Status {
        match e {
            MediaError::NotFound(_) => Status::not_found(e.to_string()),
            MediaError::PortsExhausted => Status::resource_exhausted(e.to_string()),
        }
    }
}

fn bad(field: &str, reason: impl std::fmt::Display) -> Status {
    Status::invalid_argument(format!("{field}: {reason}"))
}

fn session_id(field: &str, id: &str) -> Result<String, Status> {
    if id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(id.to_string())
    } else {
        Err(bad(
            field,
            format!("{id:?} is not a session id (16 hex digits)"),
        ))
    }
}

impl TryFrom<pb::StartToneRequest> for ToneRequest {
    type Error = Status;

    fn try_from(r: pb::StartToneRequest) -> Result<Self, Status> {
        let ip: IpAddr = r.remote_address.parse().map_err(|_| {
            bad(
                "remote_address",
                format!("{:?} is not an IP address", r.remote_address),
            )
        })?;
        if ip.is_unspecified() || ip.is_multicast() {
            return Err(bad("remote_address", format!("{ip} cannot receive RTP")));
        }
        let port = u16::try_from(r.remote_port)
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| {
                bad(
                    "remote_port",
                    format!("{} is not a port (1..65535)", r.remote_port),
                )
            })?;
        let codec = match pb::Codec::try_from(r.codec) {
            Ok(pb::Codec::Pcmu) => Codec::Pcmu,
            Ok(pb::Codec::Pcma) => Codec::Pcma,
            _ => return Err(bad("codec", format!("{} is not PCMU or PCMA", r.codec))),
        };
        let payload_type = u8::try_from(r.payload_type)
            .ok()
            .filter(|pt| *pt < 128 && !(72..=76).contains(pt))
            .ok_or_else(|| {
                bad(
                    "payload_type",
                    format!(
                        "{} is not an RTP payload type (0..127, not 72..76)",
                        r.payload_type
                    ),
                )
            })?;
        if r.frequency_hz == 0 || r.frequency_hz >= 4000 {
            return Err(bad(
                "frequency_hz",
                format!("{} Hz is not 1..3999", r.frequency_hz),
            ));
        }
        let dtmf_payload_type = match r.dtmf_payload_type {
            0 => None,
            pt @ 96..=127 => Some(pt as u8),
            pt => {
                return Err(bad(
                    "dtmf_payload_type",
                    format!("{pt} is not a dynamic payload type (96..127), or 0 for none"),
                ))
            }
        };
        if !(-60.0..=3.0).contains(&r.level_dbm0) {
            return Err(bad(
                "level_dbm0",
                format!("{} dBm0 is not -60..3", r.level_dbm0),
            ));
        }
        Ok(ToneRequest {
            remote: SocketAddr::new(ip, port),
            codec,
            payload_type,
            frequency_hz: r.frequency_hz,
            level_dbm0: r.level_dbm0,
            duration: (r.duration_ms > 0).then(|| Duration::from_millis(u64::from(r.duration_ms))),
            dtmf_payload_type,
        })
    }
}

fn timestamp(t: SystemTime) -> prost_types::Timestamp {
    prost_types::Timestamp::from(t)
}

impl From<Snapshot> for pb::Session {
    fn from(s: Snapshot) -> pb::Session {
        let state = match s.state {
            State::Allocated => pb::SessionState::Allocated,
            State::Sending => pb::SessionState::Sending,
            State::Stopped => pb::SessionState::Stopped,
            State::Released => pb::SessionState::Released,
        };
        let tone = s.tone.as_ref();
        pb::Session {
            session_id: s.id,
            call_id: s.call_id,
            owner: s.owner,
            state: state as i32,
            codec: tone
                .map(|t| match t.codec {
                    Codec::Pcmu => pb::Codec::Pcmu,
                    Codec::Pcma => pb::Codec::Pcma,
                })
                .unwrap_or(pb::Codec::Unspecified) as i32,
            payload_type: tone.map(|t| u32::from(t.payload_type)).unwrap_or(0),
            local_address: s.local_host,
            local_port: u32::from(s.local_port),
            remote_address: tone.map(|t| t.remote.ip().to_string()).unwrap_or_default(),
            remote_port: tone.map(|t| u32::from(t.remote.port())).unwrap_or(0),
            frequency_hz: tone.map(|t| t.frequency_hz).unwrap_or(0),
            level_dbm0: tone.map(|t| t.level_dbm0).unwrap_or(0.0),
            ssrc: s.ssrc,
            packets_sent: s.packets_sent,
            bytes_sent: s.bytes_sent,
            packets_skipped: s.packets_skipped,
            created_at: Some(timestamp(s.created_at)),
            age_ms: s.age.as_millis() as u64,
            dtmf_payload_type: tone
                .and_then(|t| t.dtmf_payload_type)
                .map(u32::from)
                .unwrap_or(0),
            quality: s.quality.map(|q| pb::Quality {
                packets_received: q.packets_received,
                bytes_received: q.bytes_received,
                packets_lost: q.packets_lost,
                loss_percent: q.loss_percent,
                jitter_ms: q.jitter_ms,
                mos: q.mos,
                packets_invalid: q.packets_invalid,
                packets_from_unexpected_source: q.packets_from_unexpected_source,
                rtp_source: q.rtp_source.map(|a| a.to_string()).unwrap_or_default(),
                rtcp_received: q.rtcp_received,
                remote_loss_percent: q.remote_loss_percent,
                remote_jitter_ms: q.remote_jitter_ms,
                rtt_ms: q.rtt_ms,
                dtmf_digits: q.dtmf_digits,
            }),
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
        let lease = (r.lease_seconds > 0).then(|| Duration::from_secs(u64::from(r.lease_seconds)));
        let a = self
            .registry
            .allocate(&r.call_id, &r.owner, lease, Instant::now())?;
        Ok(Response::new(pb::AllocateSessionResponse {
            session_id: a.id,
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
        let ssrc = self.registry.start_tone(&id, tone)?;
        Ok(Response::new(pb::StartToneResponse { ssrc }))
    }

    async fn stop_tone(
        &self,
        req: Request<pb::StopToneRequest>,
    ) -> Result<Response<pb::StopToneResponse>, Status> {
        let id = session_id("session_id", &req.get_ref().session_id)?;
        self.registry.stop_tone(&id, Instant::now())?;
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
        let snap = self.registry.release(&id, reason)?;
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
        Ok(Response::new(pb::RenewLeaseResponse {
            sessions,
            media_instance: self.registry.instance().to_string(),
        }))
    }

    async fn get_session(
        &self,
        req: Request<pb::GetSessionRequest>,
    ) -> Result<Response<pb::Session>, Status> {
        let id = session_id("session_id", &req.get_ref().session_id)?;
        Ok(Response::new(self.registry.get(&id)?.into()))
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
            Ok(e) => {
                let kind = match e.kind {
                    EventKind::Allocated => pb::session_event::Kind::Allocated,
                    EventKind::ToneStarted => pb::session_event::Kind::ToneStarted,
                    EventKind::ToneStopped => pb::session_event::Kind::ToneStopped,
                    EventKind::Released => pb::session_event::Kind::Released,
                    EventKind::Dtmf => pb::session_event::Kind::Dtmf,
                    EventKind::RtpSourceLatched => pb::session_event::Kind::RtpSourceLatched,
                    EventKind::Quality => pb::session_event::Kind::Quality,
                };
                Some(Ok(pb::SessionEvent {
                    kind: kind as i32,
                    session: Some(e.session.into()),
                    reason: e.reason,
                    at: Some(timestamp(e.at)),
                    digit: e.digit.map(|(d, _)| d.to_string()).unwrap_or_default(),
                    digit_duration_ms: e.digit.map(|(_, t)| t.as_millis() as u32).unwrap_or(0),
                }))
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> pb::StartToneRequest {
        pb::StartToneRequest {
            session_id: "0123456789abcdef".into(),
            remote_address: "127.0.0.1".into(),
            remote_port: 4000,
            codec: pb::Codec::Pcmu as i32,
            payload_type: 0,
            frequency_hz: 440,
            level_dbm0: -10.0,
            duration_ms: 0,
            dtmf_payload_type: 101,
        }
    }

    fn field_of(r: pb::StartToneRequest) -> String {
        let s = ToneRequest::try_from(r).expect_err("invalid");
        assert_eq!(s.code(), tonic::Code::InvalidArgument);
        s.message().split(':').next().unwrap().to_string()
    }

    #[test]
    fn start_tone_fields_are_checked_one_by_one() {
        let t = ToneRequest::try_from(valid()).unwrap();
        assert_eq!(t.remote, "127.0.0.1:4000".parse().unwrap());
        assert_eq!(t.duration, None);
        assert_eq!(
            field_of(pb::StartToneRequest {
                remote_address: "nope".into(),
                ..valid()
            }),
            "remote_address"
        );
        assert_eq!(
            field_of(pb::StartToneRequest {
                remote_address: "0.0.0.0".into(),
                ..valid()
            }),
            "remote_address"
        );
        assert_eq!(
            field_of(pb::StartToneRequest {
                remote_port: 0,
                ..valid()
            }),
            "remote_port"
        );
        assert_eq!(
            field_of(pb::StartToneRequest {
                remote_port: 70000,
                ..valid()
            }),
            "remote_port"
        );
        assert_eq!(
            field_of(pb::StartToneRequest {
                codec: 0,
                ..valid()
            }),
            "codec"
        );
        assert_eq!(
            field_of(pb::StartToneRequest {
                codec: 9,
                ..valid()
            }),
            "codec"
        );
        assert_eq!(
            field_of(pb::StartToneRequest {
                payload_type: 128,
                ..valid()
            }),
            "payload_type"
        );
        assert_eq!(
            field_of(pb::StartToneRequest {
                payload_type: 72,
                ..valid()
            }),
            "payload_type"
        );
        assert_eq!(
            field_of(pb::StartToneRequest {
                frequency_hz: 4000,
                ..valid()
            }),
            "frequency_hz"
        );
        assert_eq!(
            field_of(pb::StartToneRequest {
                level_dbm0: 10.0,
                ..valid()
            }),
            "level_dbm0"
        );
        assert_eq!(
            field_of(pb::StartToneRequest {
                level_dbm0: f64::NAN,
                ..valid()
            }),
            "level_dbm0"
        );
    }

    #[test]
    fn session_ids_are_checked() {
        assert!(session_id("session_id", "0123456789abcdef").is_ok());
        let e = session_id("session_id", "x").unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        assert!(e.message().starts_with("session_id:"));
    }
}
