//! milliwatt-media: RTP endpoints, G.711 tone generation, pacing and the gRPC service.

pub mod g711;
pub mod pacing;
pub mod rtp;
pub mod tone;
