//! milliwatt-media: RTP endpoints, G.711 tone generation, pacing and the gRPC service.
//!
//! Pure parts (no sockets, no clock): [`g711`], [`tone`], [`rtp`], [`pacing`]. Shells:
//! [`engine`] (pacing threads), [`sessions`] (registry and ports), [`service`] (gRPC edge),
//! [`server`] (wiring), [`cli`] (the `sessions` inspection client).

pub mod cli;
pub mod engine;
pub mod metrics;
pub mod receiver;
pub mod server;
pub mod service;
pub mod sessions;

pub use server::Media;
