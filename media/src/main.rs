//! milliwatt-media: config, logging, bind, serve until SIGTERM.

use clap::Parser;

#[derive(Parser)]
#[command(
    version,
    about = "Milliwatt media service: RTP tone endpoints over gRPC"
)]
struct Cli {
    #[command(flatten)]
    config: milliwatt_common::ConfigArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let cfg = cli.config.load_or_exit("milliwatt-media");
    milliwatt_common::init_logging(&cfg.log.level);
    let media = milliwatt_media::Media::bind(&cfg).await?;
    media.serve(milliwatt_common::shutdown_signal()).await
}
