//! The codecs a test line speaks, and the identifier of a media session: the one definition
//! of each that configuration, SDP negotiation, the media engine and the gRPC edge share.

use std::fmt;

use crate::g711;

/// G.711 at 8000 Hz, 20 ms packets. In configuration: `"PCMU"` (also `pcmu`, `ulaw`, `G711U`)
/// or `"PCMA"` (also `pcma`, `alaw`, `G711A`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Deserialize, serde::Serialize)]
pub enum Codec {
    #[serde(rename = "PCMU", alias = "pcmu", alias = "ulaw", alias = "G711U")]
    Pcmu,
    #[serde(rename = "PCMA", alias = "pcma", alias = "alaw", alias = "G711A")]
    Pcma,
}

impl Codec {
    pub fn encode(self, sample: i16) -> u8 {
        match self {
            Codec::Pcmu => g711::linear_to_ulaw(sample),
            Codec::Pcma => g711::linear_to_alaw(sample),
        }
    }

    pub fn decode(self, code: u8) -> i16 {
        match self {
            Codec::Pcmu => g711::ulaw_to_linear(code),
            Codec::Pcma => g711::alaw_to_linear(code),
        }
    }

    /// The static RTP payload type (RFC 3551).
    pub fn static_payload_type(self) -> u8 {
        match self {
            Codec::Pcmu => 0,
            Codec::Pcma => 8,
        }
    }

    /// The SDP encoding name (RFC 3551, `a=rtpmap`).
    pub fn name(self) -> &'static str {
        match self {
            Codec::Pcmu => "PCMU",
            Codec::Pcma => "PCMA",
        }
    }
}

impl fmt::Display for Codec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A media session's identifier: 16 lowercase hex digits, chosen by media at allocation.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a session id is 16 hexadecimal digits, got {0:?}")]
pub struct BadSessionId(pub String);

impl SessionId {
    /// A new identifier from 64 random bits.
    pub fn from_random(bits: u64) -> SessionId {
        SessionId(format!("{bits:016x}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for SessionId {
    type Err = BadSessionId;

    fn from_str(s: &str) -> Result<SessionId, BadSessionId> {
        if s.len() == 16 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
            Ok(SessionId(s.to_ascii_lowercase()))
        } else {
            Err(BadSessionId(s.to_string()))
        }
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_ids_round_trip_and_reject_garbage() {
        let id = SessionId::from_random(0xdead_beef);
        assert_eq!(id.as_str(), "00000000deadbeef");
        assert_eq!(id.as_str().parse::<SessionId>(), Ok(id));
        for bad in ["", "xyz", "00000000deadbeef0", "00000000deadbeeg"] {
            assert!(bad.parse::<SessionId>().is_err(), "{bad}");
        }
    }

    #[test]
    fn codec_names_and_payload_types() {
        assert_eq!(Codec::Pcmu.static_payload_type(), 0);
        assert_eq!(Codec::Pcma.static_payload_type(), 8);
        assert_eq!(Codec::Pcma.to_string(), "PCMA");
    }
}
