//! milliwatt-media: config, logging, bind (admin, gRPC, RTP), serve, SIGTERM, drain.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use milliwatt_common::{Admin, Health};

#[derive(Parser)]
#[command(
    version,
    about = "Milliwatt media service: RTP tone endpoints over gRPC"
)]
struct Cli {
    #[command(flatten)]
    config: milliwatt_common::ConfigArgs,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(clap::Subcommand)]
enum Command {
    #[command(flatten)]
    Common(milliwatt_common::Command),
    /// Inspect the live sessions of a media service over gRPC: list, get ID, watch.
    Sessions(milliwatt_ctl::SessionsArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let cfg = cli.config.load_or_exit("milliwatt-media");
    let runtime = milliwatt_common::runtime(&cfg).context("starting the async runtime")?;
    runtime.block_on(run(cli, cfg))
}

async fn run(cli: Cli, cfg: milliwatt_common::Config) -> anyhow::Result<()> {
    match &cli.command {
        Some(Command::Common(cmd)) => milliwatt_common::run_command(cmd, &cfg),
        Some(Command::Sessions(args)) => std::process::exit(
            milliwatt_ctl::run(
                args,
                &cfg.media.endpoint[0],
                &milliwatt_ctl::Access::from_config_or_exit(&cfg.media, "milliwatt-media"),
            )
            .await,
        ),
        None => {}
    }
    let _telemetry = milliwatt_common::telemetry::init(&cfg, "milliwatt-media")?;

    let health = Health::default();
    let admin = Admin::bind(cfg.admin.address)
        .await
        .with_context(|| format!("binding admin.address {}", cfg.admin.address))?;
    let media = milliwatt_media::Media::bind(&cfg).await?;
    let mut metrics = milliwatt_common::prometheus_client::registry::Registry::default();
    metrics.register_collector(Box::new(milliwatt_common::admin::TelemetryCollector));
    media.register_metrics(&mut metrics);
    admin.spawn(health.clone(), Arc::new(metrics));

    let grace = Duration::from_secs(cfg.shutdown.grace_seconds);
    media
        .serve(health, milliwatt_common::shutdown_signal(), grace)
        .await?;
    Ok(())
}
