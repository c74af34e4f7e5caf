//! milliwatt-media-core: the media engine's logic without I/O. No sockets, no clock reads, no
//! async runtime: time comes in as an argument, packets go out as bytes written into a
//! caller's buffer. The shell crate `milliwatt-media` owns sockets, threads and gRPC.
//! `tests/walls.rs` at the workspace root checks this crate's dependency tree.

pub mod codec;
pub mod destination;
pub mod dtmf;
pub mod g711;
pub mod pacing;
pub mod quality;
pub mod rtcp;
pub mod rtp;
pub mod rtp_in;
pub mod session;
pub mod srtp;
pub mod table;
pub mod tone;

pub use codec::{Codec, SessionId};
