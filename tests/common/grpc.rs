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
