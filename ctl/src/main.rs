//! milliwatt-ctl: the operator client. `milliwatt-ctl sessions list|get ID|watch` inspects the
//! live sessions of a media service (the endpoint from `--endpoint`, else the configuration's
//! `media.endpoint`; its first URL when it lists a pool).

use clap::Parser;

#[derive(Parser)]
#[command(
    version,
    about = "Milliwatt operator client: inspect live media sessions over gRPC"
)]
struct Cli {
    #[command(flatten)]
    config: milliwatt_common::ConfigArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Inspect the live sessions of a media service over gRPC: list, get ID, watch.
    Sessions(milliwatt_ctl::SessionsArgs),
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let cli = Cli::parse();
    let cfg = cli.config.load_or_exit("milliwatt-ctl");
    let Command::Sessions(args) = &cli.command;
    std::process::exit(
        milliwatt_ctl::run(
            args,
            &cfg.media.endpoint[0],
            &milliwatt_ctl::Access::from_config_or_exit(&cfg.media, "milliwatt-ctl"),
        )
        .await,
    )
}
