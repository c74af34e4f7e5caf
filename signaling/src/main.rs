//! milliwatt-signaling: config, logging, bind (admin, SIP), serve, SIGTERM, drain.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use milliwatt_common::{Admin, Health};

#[derive(Parser)]
#[command(version, about = "Milliwatt signaling service: the SIP test line")]
struct Cli {
    #[command(flatten)]
    config: milliwatt_common::ConfigArgs,
    #[command(subcommand)]
    command: Option<milliwatt_common::Command>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let cfg = cli.config.load_or_exit("milliwatt-signaling");
    if let Some(cmd) = &cli.command {
        milliwatt_common::run_command(cmd, &cfg);
    }
    let _telemetry = milliwatt_common::telemetry::init(&cfg, "milliwatt-signaling")?;

    let health = Health::default();
    let admin = Admin::bind(cfg.admin.address)
        .await
        .with_context(|| format!("binding admin.address {}", cfg.admin.address))?;
    tracing::info!(admin = %admin.local_addr(), "admin HTTP bound (/livez /readyz /metrics)");
    let grace = Duration::from_secs(cfg.shutdown.grace_seconds);
    let media = milliwatt_signaling::MediaPool::new(
        cfg.media.endpoint.clone(),
        milliwatt_signaling::instance_id(),
        cfg.media.grpc_token.clone(),
        milliwatt_common::grpc_tls::ClientTls::from_config(&cfg.media)?,
        health.clone(),
    )?;
    let signaling = milliwatt_signaling::Signaling::bind(cfg, media, health.clone()).await?;
    let mut metrics = milliwatt_common::prometheus_client::registry::Registry::default();
    metrics.register_collector(Box::new(milliwatt_common::admin::TelemetryCollector));
    signaling.register_metrics(&mut metrics);
    admin.spawn(health, Arc::new(metrics));

    signaling
        .serve(milliwatt_common::shutdown_signal(), grace)
        .await;
    Ok(())
}
