//! Configuration and logging shared by milliwatt-signaling and milliwatt-media.
//!
//! The feature `services` (on by default) brings what the running services share: the admin
//! HTTP server, gRPC authentication and TLS, telemetry, the runtime and the command line. Without
//! it only the configuration is built (the fuzz targets load configurations and need nothing else).

#[cfg(feature = "services")]
pub mod admin;
pub mod config;
#[cfg(feature = "services")]
pub mod grpc_auth;
#[cfg(feature = "services")]
pub mod grpc_tls;
#[cfg(feature = "services")]
pub mod telemetry;

#[cfg(feature = "services")]
pub use admin::{Admin, Health};
pub use config::{Codec, Config, ConfigError, PacingPriority, Transport};
#[cfg(feature = "services")]
pub use prometheus_client;

/// Exit code for a configuration error (EX_USAGE).
pub const EXIT_CONFIG: i32 = 64;

#[cfg(feature = "services")]
/// The async runtime `runtime.worker_threads` asks for (0: tokio's default, one worker per core).
pub fn runtime(cfg: &Config) -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if cfg.runtime.worker_threads > 0 {
        builder.worker_threads(cfg.runtime.worker_threads);
    }
    builder.enable_all().build()
}

#[cfg(feature = "services")]
/// Subcommands every Milliwatt binary takes.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    /// GET /readyz (or --path) on the admin port over loopback; exit 0 when it answers 200.
    /// For container HEALTHCHECKs.
    Healthcheck {
        #[arg(long, default_value = "/readyz")]
        path: String,
    },
}

#[cfg(feature = "services")]
/// Runs a subcommand and exits.
pub fn run_command(cmd: &Command, cfg: &Config) -> ! {
    match cmd {
        Command::Healthcheck { path } => {
            std::process::exit(admin::healthcheck(cfg.admin.address, path))
        }
    }
}

#[cfg(feature = "services")]
/// Flags every Milliwatt binary takes.
#[derive(Debug, Clone, clap::Args)]
pub struct ConfigArgs {
    /// TOML configuration file; its keys override the built-in defaults.
    #[arg(short, long, value_name = "FILE")]
    pub config: Option<std::path::PathBuf>,
    /// Override one key, e.g. `--set sip.port=5070` (repeatable; wins over file and environment).
    #[arg(short = 's', long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Check the configuration, print it and exit.
    #[arg(long)]
    pub check_config: bool,
}

#[cfg(feature = "services")]
impl ConfigArgs {
    /// Loads the configuration, or prints the error naming the key and exits with [`EXIT_CONFIG`].
    pub fn load_or_exit(&self, program: &str) -> Config {
        match Config::load(self.config.as_deref(), &self.set) {
            Ok(c) => {
                if self.check_config {
                    println!("{program}: configuration is valid\n{c:#?}");
                    std::process::exit(0);
                }
                c
            }
            Err(e) => {
                eprintln!("{program}: {e}");
                std::process::exit(EXIT_CONFIG);
            }
        }
    }
}

#[cfg(feature = "services")]
/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received, shutting down"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received, shutting down"),
    }
}
