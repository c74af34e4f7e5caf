//! milliwatt-signaling: the SIP user agent server.
//!
//! The decisions live in the pure crate `milliwatt-signaling-core` (the call state machine,
//! screening, SDP). This crate is the shell: [`uas`] (the ezk endpoint: dispatch, bind, drain,
//! media watchdog), [`call_shell` (private)] (executes one call's core outputs), [`media_client`] (gRPC
//! to one media instance), [`media_pool`] (the instances, their checks, placement), [`stats`] (counters and the statistics line).

mod call_shell;
pub mod media_client;
pub mod media_pool;
mod sip_tls;
pub mod stats;
mod uas;

pub use media_client::MediaClient;
pub use media_pool::MediaPool;
pub use uas::Signaling;

/// A name for this signaling instance (the owner of its media sessions' leases).
pub fn instance_id() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "signaling".into());
    format!(
        "{host}-{}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    )
}
