//! milliwatt-signaling: config, logging, bind SIP, serve until SIGTERM.

use clap::Parser;

#[derive(Parser)]
#[command(version, about = "Milliwatt signaling service: the SIP test line")]
struct Cli {
    #[command(flatten)]
    config: milliwatt_common::ConfigArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let cfg = cli.config.load_or_exit("milliwatt-signaling");
    milliwatt_common::init_logging(&cfg.log.level);
    let media = milliwatt_signaling::MediaClient::new(
        &cfg.media.endpoint,
        milliwatt_signaling::instance_id(),
    )?;
    let signaling = milliwatt_signaling::Signaling::bind(cfg, media).await?;
    signaling.serve(milliwatt_common::shutdown_signal()).await
}
