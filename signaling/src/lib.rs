//! milliwatt-signaling: the SIP user agent server.
//!
//! Pure parts: [`call`] (call policy with simulated time), [`sdp`] (offer/answer). Shells:
//! [`uas`] (ezk endpoint and call tasks), [`media_client`] (gRPC to media).

pub mod call;
pub mod media_client;
pub mod sdp;
pub mod stats;
pub mod uas;

pub use media_client::MediaClient;
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
