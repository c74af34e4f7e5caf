//! milliwatt: the embedded default, signaling and media in one process. Signaling talks to media
//! over real gRPC on loopback, exactly as the two separate services do.
//!
//! Reads top to bottom: config, logging, bind media, bind signaling, serve, signal, stop.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use clap::Parser;
use tokio::sync::watch;

#[derive(Parser)]
#[command(
    version,
    about = "Milliwatt SIP test line: signaling and media in one process"
)]
struct Cli {
    #[command(flatten)]
    config: milliwatt_common::ConfigArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let cfg = cli.config.load_or_exit("milliwatt");
    milliwatt_common::init_logging(&cfg.log.level);

    let media = milliwatt_media::Media::bind(&cfg).await?;
    let mut grpc: SocketAddr = media.local_addr();
    if grpc.ip().is_unspecified() {
        grpc.set_ip(IpAddr::V4(Ipv4Addr::LOCALHOST));
    }
    let client = milliwatt_signaling::MediaClient::new(
        &format!("http://{grpc}"),
        milliwatt_signaling::instance_id(),
    )?;
    let signaling = milliwatt_signaling::Signaling::bind(cfg, client).await?;

    let (stop_tx, stop_rx) = watch::channel(false);
    let wait = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let media_task = tokio::spawn(media.serve(wait(stop_rx.clone())));
    let signaling_task = tokio::spawn(signaling.serve(wait(stop_rx)));

    milliwatt_common::shutdown_signal().await;
    let _ = stop_tx.send(true);
    signaling_task.await??;
    media_task.await??;
    Ok(())
}
