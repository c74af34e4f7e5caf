//! milliwatt: the embedded default, signaling and media in one process. Signaling talks to media
//! over real gRPC on loopback, exactly as the two separate services do.
//!
//! Reads top to bottom: config, logging, bind (admin, media, signaling), serve, signal, drain
//! (signaling first, then media), exit.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use milliwatt_common::{Admin, Health};
use tokio::sync::watch;

#[derive(Parser)]
#[command(
    version,
    about = "Milliwatt SIP test line: signaling and media in one process"
)]
struct Cli {
    #[command(flatten)]
    config: milliwatt_common::ConfigArgs,
    #[command(subcommand)]
    command: Option<milliwatt_common::Command>,
}

/// After signaling has drained, media only waits for releases in flight.
const MEDIA_GRACE_AFTER_SIGNALING: Duration = Duration::from_secs(2);

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let cfg = cli.config.load_or_exit("milliwatt");
    let runtime = milliwatt_common::runtime(&cfg).context("starting the async runtime")?;
    runtime.block_on(run(cli, cfg))
}

async fn run(cli: Cli, cfg: milliwatt_common::Config) -> anyhow::Result<()> {
    if let Some(cmd) = &cli.command {
        milliwatt_common::run_command(cmd, &cfg);
    }
    let _telemetry = milliwatt_common::telemetry::init(&cfg, "milliwatt")?;

    // One admin listener for both; readiness needs both services' conditions.
    let health = Health::default();
    let admin = Admin::bind(cfg.admin.address)
        .await
        .with_context(|| format!("binding admin.address {}", cfg.admin.address))?;
    tracing::info!(admin = %admin.local_addr(), "admin HTTP bound (/livez /readyz /metrics)");
    let grace = Duration::from_secs(cfg.shutdown.grace_seconds);

    let media = milliwatt_media::Media::bind(&cfg).await?;
    let mut grpc: SocketAddr = media.local_addr();
    if grpc.ip().is_unspecified() {
        grpc.set_ip(IpAddr::V4(Ipv4Addr::LOCALHOST));
    }
    // Signaling reaches its own media as a separate signaling would: over TLS when media serves
    // it, so the same CA (and client certificate) keys must be set.
    let tls = milliwatt_common::grpc_tls::ClientTls::from_config(&cfg.media)?;
    anyhow::ensure!(
        tls.is_enabled() == media.serves_tls(),
        if media.serves_tls() {
            "media serves gRPC over TLS (media.grpc_tls_cert_file) but media.grpc_tls_ca_file is \
             empty: in one process, signaling needs the CA that signed media's certificate too"
        } else {
            "media.grpc_tls_ca_file is set but media.grpc_tls_cert_file is empty: in one process \
             media serves plain gRPC, so set both or neither"
        }
    );
    let scheme = if tls.is_enabled() { "https" } else { "http" };
    let client = milliwatt_signaling::MediaPool::new(
        vec![format!("{scheme}://{grpc}")],
        milliwatt_signaling::instance_id(),
        cfg.media.grpc_token.clone(),
        tls,
        health.clone(),
    )?;
    let signaling = milliwatt_signaling::Signaling::bind(cfg, client, health.clone()).await?;
    let mut metrics = milliwatt_common::prometheus_client::registry::Registry::default();
    metrics.register_collector(Box::new(milliwatt_common::admin::TelemetryCollector));
    media.register_metrics(&mut metrics);
    signaling.register_metrics(&mut metrics);
    admin.spawn(health.clone(), Arc::new(metrics));

    let (signaling_done_tx, mut signaling_done) = watch::channel(false);
    let media_task = tokio::spawn(media.serve(
        health,
        async move {
            let _ = signaling_done.wait_for(|done| *done).await;
        },
        MEDIA_GRACE_AFTER_SIGNALING,
    ));
    signaling
        .serve(milliwatt_common::shutdown_signal(), grace)
        .await;
    let _ = signaling_done_tx.send(true);
    media_task.await??;
    Ok(())
}
