//! milliwatt-signaling-core: what a call does, without I/O. [`call::CallCore`] is one call's
//! state machine (str0m/quinn style: `handle(event, now)`, `poll_output()`, `poll_timeout()`);
//! [`sdp`] is RFC 3264 offer/answer on text; [`dispatch`] decides what an out-of-dialog request
//! gets and [`early`] the answer to a new INVITE shed from its bytes; [`media_watch`] decides when a media instance is reachable, lost or restarted and
//! [`media_pool`] which of several takes a new session; [`overload`] and
//! [`sources`] admit new calls by measured load and by source address; [`info`] reads the DTMF
//! of an INFO inside a call; [`rtp_stat`] writes the caller's figures into our BYE;
//! [`session_timer`] negotiates RFC 4028 session timers; [`vq_report`] writes RFC 6035
//! quality reports. No sockets,
//! no clock reads, no async runtime:
//! the SIP shell crate `milliwatt-signaling` feeds events in and executes the outputs.
//! `tests/walls.rs` at the workspace root checks this crate's dependency tree.

pub mod call;
pub mod dispatch;
pub mod early;
pub mod info;
pub mod media_pool;
pub mod media_watch;
pub mod overload;
pub mod rtp_stat;
pub mod sdp;
pub mod session_timer;
pub mod sources;
pub mod vq_report;
