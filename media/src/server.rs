//! Wires the media service: registry, pacing threads, housekeeping tasks and the gRPC server
//! (the Media API, grpc.health.v1 and server reflection).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use milliwatt_common::{Config, Health};
use milliwatt_proto::v1 as pb;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;

use crate::service::MediaService;
use crate::sessions::{Registry, RegistryConfig};

/// Why the media service could not start or serve.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("binding media.grpc_listen {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("building gRPC reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("serving gRPC: {0}")]
    Grpc(#[from] tonic::transport::Error),
    #[error("{0}")]
    Tls(#[from] milliwatt_common::grpc_tls::TlsError),
    #[error("media.grpc_tls_cert_file/key_file: the TLS identity was refused: {0}")]
    TlsIdentity(tonic::transport::Error),
}

/// A bound, not yet serving, media service.
pub struct Media {
    listener: TcpListener,
    /// `media.grpc_token`: required on the Media service when set.
    token: milliwatt_common::grpc_auth::Secret,
    /// `media.grpc_tls_*`: TLS only on the gRPC port when set.
    tls: Option<tonic::transport::ServerTlsConfig>,
    /// `media.refuse_private_destinations`
    refuse_private: bool,
    registry: Arc<Registry>,
    inputs: crate::sessions::RegistryInputs,
}

impl Media {
    /// Binds the gRPC listener and starts the pacing threads.
    pub async fn bind(cfg: &Config) -> Result<Media, ServeError> {
        let m = &cfg.media;
        // TLS files first: a wrong one stops the start before anything is bound.
        let tls = milliwatt_common::grpc_tls::server_config(m)?;
        if let Some(tls) = &tls {
            tonic::transport::Server::builder()
                .tls_config(tls.clone())
                .map_err(ServeError::TlsIdentity)?;
        }
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
        let (registry, inputs) = Registry::new(
            RegistryConfig {
                bind: m.bind_address,
                advertised_host: advertised.clone(),
                ports,
                default_lease: Duration::from_secs(u64::from(m.lease_seconds)),
                grace: Duration::from_secs(u64::from(m.session_grace_seconds)),
                realtime_pacing: m.pacing_priority == milliwatt_common::PacingPriority::Realtime,
                pacing_catch_up: m.pacing_catch_up_ms / 20,
            },
            threads,
        );
        let listener =
            TcpListener::bind(m.grpc_listen)
                .await
                .map_err(|source| ServeError::Bind {
                    addr: m.grpc_listen,
                    source,
                })?;
        let grpc = listener.local_addr().map_err(|source| ServeError::Bind {
            addr: m.grpc_listen,
            source,
        })?;
        tracing::info!(
            grpc = %grpc,
            rtp_bind = %m.bind_address,
            rtp_advertised = %advertised,
            ports = %format!("{}..{}", m.rtp_port_range_start, m.rtp_port_range_end),
            pacing_threads = threads,
            "media service bound"
        );
        if !m.grpc_token.is_empty() {
            tracing::info!("the Media gRPC service requires a bearer token (media.grpc_token)");
        }
        if tls.is_some() {
            tracing::info!(
                client_certificates = if m.grpc_tls_client_ca_file.is_empty() {
                    "not required"
                } else {
                    "required (media.grpc_tls_client_ca_file)"
                },
                "the gRPC port speaks TLS only (media.grpc_tls_cert_file)"
            );
        }
        Ok(Media {
            listener,
            token: m.grpc_token.clone(),
            tls,
            refuse_private: m.refuse_private_destinations,
            registry,
            inputs,
        })
    }

    /// Whether the gRPC port speaks TLS (`media.grpc_tls_cert_file`).
    pub fn serves_tls(&self) -> bool {
        self.tls.is_some()
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("bound listener has an address")
    }

    pub fn registry(&self) -> Arc<Registry> {
        self.registry.clone()
    }

    /// Adds the media metrics to `/metrics`.
    pub fn register_metrics(
        &self,
        metrics: &mut milliwatt_common::prometheus_client::registry::Registry,
    ) {
        metrics.register_collector(Box::new(crate::metrics::MediaCollector(
            self.registry.clone(),
        )));
    }

    /// Serves until `shutdown` resolves, then drains: readiness goes false, and sessions keep
    /// streaming until they are released or `grace` lapses.
    pub async fn serve(
        self,
        health: Health,
        shutdown: impl Future<Output = ()> + Send,
        grace: Duration,
    ) -> Result<(), ServeError> {
        let Media {
            listener,
            token,
            tls,
            refuse_private,
            registry,
            mut inputs,
        } = self;
        let r = registry.clone();
        let finisher = tokio::spawn(async move {
            loop {
                tokio::select! {
                    Some(f) = inputs.finished.recv() => r.tone_finished(f, Instant::now()),
                    Some(e) = inputs.rx_events.recv() => r.on_rx_event(e),
                    else => break,
                }
            }
        });
        let r = registry.clone();
        let h = health.clone();
        let sweeper = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(500));
            let mut ticks = 0u64;
            loop {
                tick.tick().await;
                ticks += 1;
                r.sweep(Instant::now());
                if ticks.is_multiple_of(10) {
                    r.emit_quality();
                }
                h.set("rtp_ports_free", r.counts().2 > 0);
            }
        });
        let (health_reporter, health_service) = tonic_health::server::health_reporter();
        health_reporter
            .set_serving::<pb::media_server::MediaServer<MediaService>>()
            .await;
        health_reporter
            .set_service_status("", tonic_health::ServingStatus::Serving)
            .await;
        let reflection = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1()?;
        let drain_health = health.clone();
        let mut sessions = registry.session_count();
        let reporter = health_reporter.clone();
        let shutdown = async move {
            shutdown.await;
            // gRPC health says it first (clients that route by health stop sending sessions
            // here), then readiness.
            reporter
                .set_not_serving::<pb::media_server::MediaServer<MediaService>>()
                .await;
            reporter
                .set_service_status("", tonic_health::ServingStatus::NotServing)
                .await;
            drain_health.start_draining();
            let left = *sessions.borrow();
            if left > 0 {
                tracing::info!(
                    sessions = left,
                    grace_seconds = grace.as_secs(),
                    "media draining"
                );
            }
            // Woken by each release, not polled.
            let drained = tokio::time::timeout(grace, sessions.wait_for(|n| *n == 0))
                .await
                .is_ok();
            let left = *sessions.borrow();
            if drained {
                tracing::info!(sessions_left = left, "media stopping");
            } else {
                tracing::warn!(sessions_left = left, "media drain grace lapsed; stopping");
            }
        };
        health.set("grpc_serving", true);
        let mut builder = tonic::transport::Server::builder();
        if let Some(tls) = tls {
            builder = builder.tls_config(tls).map_err(ServeError::TlsIdentity)?;
        }
        let result = builder
            // One span per RPC, child of the caller's trace (W3C traceparent in the metadata).
            .trace_fn(|req| {
                let span = tracing::info_span!(
                    "grpc",
                    otel.name = %req.uri().path().trim_start_matches('/'),
                    otel.kind = "server",
                    rpc.system = "grpc",
                );
                milliwatt_common::telemetry::extract(req.headers(), &span);
                span
            })
            .add_service(health_service)
            .add_service(reflection)
            .add_service(pb::media_server::MediaServer::with_interceptor(
                MediaService::new(registry.clone(), refuse_private, health.clone()),
                milliwatt_common::grpc_auth::ServerInterceptor::new(&token),
            ))
            .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
            .await
            .map_err(ServeError::from);
        sweeper.abort();
        finisher.abort();
        result
    }
}
