//! A gRPC client for the media service, from synchronous tests.

use milliwatt_proto::v1 as pb;
use pb::media_client::MediaClient;

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

pub fn list_sessions(endpoint: &str) -> Vec<pb::Session> {
    runtime().block_on(async {
        let mut c = MediaClient::connect(endpoint.to_string())
            .await
            .expect("connecting to media gRPC");
        c.list_sessions(pb::ListSessionsRequest {})
            .await
            .expect("ListSessions")
            .into_inner()
            .sessions
    })
}

pub fn stats(endpoint: &str) -> pb::EngineStats {
    runtime().block_on(async {
        let mut c = MediaClient::connect(endpoint.to_string())
            .await
            .expect("connecting to media gRPC");
        c.get_stats(pb::GetStatsRequest {})
            .await
            .expect("GetStats")
            .into_inner()
    })
}

/// The gRPC health status (`grpc.health.v1`) of `service` ("" for the whole server).
pub fn health(endpoint: &str, service: &str) -> Result<i32, tonic::Status> {
    runtime().block_on(async {
        let channel = tonic::transport::Endpoint::from_shared(endpoint.to_string())
            .expect("endpoint URL")
            .connect()
            .await
            .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
        let mut c = tonic_health::pb::health_client::HealthClient::new(channel);
        Ok(c.check(tonic_health::pb::HealthCheckRequest {
            service: service.to_string(),
        })
        .await?
        .into_inner()
        .status)
    })
}

/// RenewLease for `owner`: media's instance id and load as it reports them.
pub fn renew(endpoint: &str, owner: &str) -> Result<pb::RenewLeaseResponse, tonic::Status> {
    runtime().block_on(async {
        let mut c = MediaClient::connect(endpoint.to_string())
            .await
            .expect("connecting to media gRPC");
        c.renew_lease(pb::RenewLeaseRequest {
            owner: owner.to_string(),
        })
        .await
        .map(|r| r.into_inner())
    })
}

/// AllocateSession for `owner` (released again when it succeeds).
pub fn allocate(endpoint: &str, owner: &str) -> Result<pb::AllocateSessionResponse, tonic::Status> {
    runtime().block_on(async {
        let mut c = MediaClient::connect(endpoint.to_string())
            .await
            .expect("connecting to media gRPC");
        let r = c
            .allocate_session(pb::AllocateSessionRequest {
                call_id: "test".into(),
                owner: owner.to_string(),
                lease_seconds: 0,
                rtcp_mux: false,
            })
            .await?
            .into_inner();
        c.release_session(pb::ReleaseSessionRequest {
            session_id: r.session_id.clone(),
            reason: "test".into(),
        })
        .await?;
        Ok(r)
    })
}
