//! Wires the media service: registry, pacing threads, housekeeping tasks and the gRPC server
//! (the Media API, grpc.health.v1 and server reflection).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use milliwatt_common::Config;
use milliwatt_proto::v1 as pb;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;

use crate::service::MediaService;
use crate::sessions::{Registry, RegistryConfig};

/// A bound, not yet serving, media service.
pub struct Media {
    listener: TcpListener,
    registry: Arc<Registry>,
    finished: tokio::sync::mpsc::UnboundedReceiver<crate::engine::Finished>,
}

impl Media {
    /// Binds the gRPC listener and starts the pacing threads.
    pub async fn bind(cfg: &Config) -> anyhow::Result<Media> {
        let m = &cfg.media;
        let threads = match m.pacing_threads {
            0 => std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            n => n,
        };
        let ports: Vec<u16> =
            milliwatt_common::config::rtp_ports(m.rtp_port_range_start, m.rtp_port_range_end)
                .collect();
        let advertised = cfg.media_advertised_host();
        // Two sockets per session; the soft limit is often 1024.
        match rlimit::increase_nofile_limit(u64::MAX) {
            Ok(n) if (n as usize) < ports.len() * 2 + 64 => tracing::warn!(
                open_files = n,
                port_pairs = ports.len(),
                "the open-file limit caps concurrent sessions below the RTP port range"
            ),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "cannot raise the open-file limit"),
        }
        let (registry, finished) = Registry::new(
            RegistryConfig {
                bind: m.bind_address,
                advertised_host: advertised.clone(),
                ports,
                default_lease: Duration::from_secs(u64::from(m.lease_seconds)),
                grace: Duration::from_secs(u64::from(m.session_grace_seconds)),
            },
            threads,
        );
        let listener = TcpListener::bind(m.grpc_listen)
            .await
            .with_context(|| format!("binding media.grpc_listen {}", m.grpc_listen))?;
        tracing::info!(
            grpc = %listener.local_addr()?,
            rtp_bind = %m.bind_address,
            rtp_advertised = %advertised,
            ports = %format!("{}..{}", m.rtp_port_range_start, m.rtp_port_range_end),
            pacing_threads = threads,
            "media service bound"
        );
        Ok(Media {
            listener,
            registry,
            finished,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("bound listener has an address")
    }

    pub fn registry(&self) -> Arc<Registry> {
        self.registry.clone()
    }

    /// Serves until `shutdown` resolves.
    pub async fn serve(self, shutdown: impl Future<Output = ()> + Send) -> anyhow::Result<()> {
        let Media {
            listener,
            registry,
            mut finished,
        } = self;
        let r = registry.clone();
        let finisher = tokio::spawn(async move {
            while let Some(f) = finished.recv().await {
                r.tone_finished(f, Instant::now());
            }
        });
        let r = registry.clone();
        let sweeper = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(500));
            loop {
                tick.tick().await;
                r.sweep(Instant::now());
            }
        });
        let (health_reporter, health_service) = tonic_health::server::health_reporter();
        health_reporter
            .set_serving::<pb::media_server::MediaServer<MediaService>>()
            .await;
        let reflection = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1()
            .context("building gRPC reflection")?;
        let result = tonic::transport::Server::builder()
            .add_service(health_service)
            .add_service(reflection)
            .add_service(pb::media_server::MediaServer::new(MediaService::new(
                registry.clone(),
            )))
            .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
            .await
            .context("serving gRPC");
        sweeper.abort();
        finisher.abort();
        result
    }
}
