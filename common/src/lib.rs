//! Configuration and logging shared by milliwatt-signaling and milliwatt-media.

pub mod config;

pub use config::{CodecName, Config, ConfigError, Transport};

/// Exit code for a configuration error (EX_USAGE).
pub const EXIT_CONFIG: i32 = 64;

/// Installs the log subscriber. `RUST_LOG`, when set, overrides `log.level`.
pub fn init_logging(level: &str) {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|f| f.parse::<tracing_subscriber::EnvFilter>().ok())
        .unwrap_or_else(|| tracing_subscriber::EnvFilter::new(level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .try_init();
}
