//! milliwatt-signaling: the SIP user agent server.

pub mod sdp;
