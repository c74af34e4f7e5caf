//! milliwatt-media: RTP endpoints, G.711 tone generation, pacing and the gRPC service.
//!
//! The pure parts (G.711, tone tables, RTP/RTCP, pacing, quality, session data) live in the
//! crate `milliwatt-media-core`. This crate is the shell: [`engine`] (pacing threads),
//! [`sessions`] (registry and ports), [`receiver`] (receive tasks), [`service`] (gRPC edge,
//! conversions from `milliwatt_proto::convert`), [`server`] (wiring). The `sessions` subcommand is
//! `milliwatt-ctl`'s.

pub mod engine;
pub mod metrics;
pub mod receiver;
pub mod server;
pub mod service;
pub mod sessions;

pub use server::Media;
