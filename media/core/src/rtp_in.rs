//! Parsing of received RTP packets (RFC 3550 §5.1, validity checks of Appendix A.1) and telling
//! RTP from RTCP on a shared port (RFC 5761 §4). No allocation: a parsed packet borrows the
//! datagram. Pure: no sockets, no clock.
//!
//! Checked: at least the 12-byte fixed header; version 2; the CSRC list and the header extension
//! (RFC 3550 §5.3.1: 4-byte header, then `length` 32-bit words) inside the datagram; when the
//! padding bit is set, the last octet (the padding count, which counts itself) is at least 1 and
//! leaves the header intact. What is left between header and padding is the payload (may be empty).

/// RTP fixed header length (RFC 3550 §5.1).
pub const FIXED_HEADER_LEN: usize = 12;

/// Why a datagram is not a valid RTP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RtpError {
    #[error("{len} bytes: shorter than the 12-byte RTP header")]
    TooShort { len: usize },
    #[error("RTP version {0}, expected 2")]
    BadVersion(u8),
    #[error("{csrc_count} CSRCs need {need} bytes, the packet has {len}")]
    CsrcTruncated {
        csrc_count: u8,
        need: usize,
        len: usize,
    },
    #[error("header extension needs {need} bytes, the packet has {len}")]
    ExtensionTruncated { need: usize, len: usize },
    #[error("padding count {padding} with {available} bytes after the header")]
    BadPadding { padding: u8, available: usize },
}

/// A header extension (RFC 3550 §5.3.1): the profile-defined 16 bits and the extension data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extension<'a> {
    pub profile: u16,
    pub data: &'a [u8],
}

/// A valid RTP packet, borrowing the datagram it was parsed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpPacket<'a> {
    pub payload_type: u8,
    pub marker: bool,
    pub seq: u16,
    pub timestamp: u32,
    pub ssrc: u32,
    /// The CSRC list, 4 bytes per entry (see [`RtpPacket::csrcs`]).
    csrc_bytes: &'a [u8],
    pub extension: Option<Extension<'a>>,
    /// Padding bytes at the end (0 without the padding bit), not part of the payload.
    pub padding: u8,
    pub payload: &'a [u8],
}

impl<'a> RtpPacket<'a> {
    pub fn csrc_count(&self) -> usize {
        self.csrc_bytes.len() / 4
    }

    pub fn csrcs(&self) -> impl Iterator<Item = u32> + 'a {
        self.csrc_bytes.chunks_exact(4).map(be32)
    }
}

/// Reads 4 big-endian bytes. Callers pass slices of length 4 (chunks_exact or checked ranges).
fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// Parses one RTP packet.
pub fn parse(buf: &[u8]) -> Result<RtpPacket<'_>, RtpError> {
    let len = buf.len();
    if len < FIXED_HEADER_LEN {
        return Err(RtpError::TooShort { len });
    }
    let version = buf[0] >> 6;
    if version != 2 {
        return Err(RtpError::BadVersion(version));
    }
    let has_padding = buf[0] & 0x20 != 0;
    let has_extension = buf[0] & 0x10 != 0;
    let csrc_count = buf[0] & 0x0f;
    let marker = buf[1] & 0x80 != 0;
    let payload_type = buf[1] & 0x7f;
    let seq = u16::from_be_bytes([buf[2], buf[3]]);
    let timestamp = be32(&buf[4..8]);
    let ssrc = be32(&buf[8..12]);

    let mut header_len = FIXED_HEADER_LEN + 4 * usize::from(csrc_count);
    if len < header_len {
        return Err(RtpError::CsrcTruncated {
            csrc_count,
            need: header_len,
            len,
        });
    }
    let csrc_bytes = &buf[FIXED_HEADER_LEN..header_len];

    let extension = if has_extension {
        let ext_header_end = header_len + 4;
        if len < ext_header_end {
            return Err(RtpError::ExtensionTruncated {
                need: ext_header_end,
                len,
            });
        }
        let profile = u16::from_be_bytes([buf[header_len], buf[header_len + 1]]);
        let words = u16::from_be_bytes([buf[header_len + 2], buf[header_len + 3]]);
        let ext_end = ext_header_end + 4 * usize::from(words);
        if len < ext_end {
            return Err(RtpError::ExtensionTruncated { need: ext_end, len });
        }
        header_len = ext_end;
        Some(Extension {
            profile,
            data: &buf[ext_header_end..ext_end],
        })
    } else {
        None
    };

    let available = len - header_len;
    let padding = if has_padding {
        // The last octet counts the padding, itself included (RFC 3550 §5.1).
        let padding = buf[len - 1];
        if padding == 0 || usize::from(padding) > available {
            return Err(RtpError::BadPadding { padding, available });
        }
        padding
    } else {
        0
    };

    Ok(RtpPacket {
        payload_type,
        marker,
        seq,
        timestamp,
        ssrc,
        csrc_bytes,
        extension,
        padding,
        payload: &buf[header_len..len - usize::from(padding)],
    })
}

/// What a datagram on an RTP port is, by its first two bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketKind {
    Rtp,
    Rtcp,
    /// Not version 2 or shorter than 2 bytes (STUN, DTLS, garbage).
    Other,
}

/// Tells RTCP from RTP on a multiplexed port (RFC 5761 §4): the second octet of RTCP is the packet
/// type, and 192..=223 (which RTP would only produce with payload types 64..=95 and the marker, a
/// range RFC 5761 forbids for RTP) covers SR 200, RR 201, SDES 202, BYE 203, APP 204 and the
/// feedback and XR types. Only the first two bytes are read; [`parse`] or `rtcp::parse_compound`
/// then validate the whole packet.
pub fn classify(buf: &[u8]) -> PacketKind {
    match buf {
        [first, second, ..] if first >> 6 == 2 => {
            if (192..=223).contains(second) {
                PacketKind::Rtcp
            } else {
                PacketKind::Rtp
            }
        }
        _ => PacketKind::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A PCMU packet: PT 0, marker, seq 0x1234, ts 0xdeadbeef, SSRC 0x01020304, 160 bytes of 0xff.
    fn pcmu() -> Vec<u8> {
        let mut p = vec![
            0x80, 0x80, 0x12, 0x34, 0xde, 0xad, 0xbe, 0xef, 0x01, 0x02, 0x03, 0x04,
        ];
        p.extend_from_slice(&[0xff; 160]);
        p
    }

    #[test]
    fn parses_a_plain_packet() {
        let buf = pcmu();
        let p = parse(&buf).unwrap();
        assert_eq!(p.payload_type, 0);
        assert!(p.marker);
        assert_eq!(p.seq, 0x1234);
        assert_eq!(p.timestamp, 0xdead_beef);
        assert_eq!(p.ssrc, 0x0102_0304);
        assert_eq!(p.csrc_count(), 0);
        assert_eq!(p.extension, None);
        assert_eq!(p.padding, 0);
        assert_eq!(p.payload, &[0xff; 160][..]);
    }

    #[test]
    fn header_only_packet_has_an_empty_payload() {
        let buf = &pcmu()[..12];
        assert_eq!(parse(buf).unwrap().payload, &[] as &[u8]);
    }

    #[test]
    fn csrcs_extension_and_padding() {
        // V=2 P=1 X=1 CC=2, no marker, PT 8.
        let mut buf = vec![0xb2, 0x08, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3];
        buf.extend_from_slice(&[0xaa, 0, 0, 1, 0xbb, 0, 0, 2]); // CSRCs
        buf.extend_from_slice(&[0xbe, 0xde, 0, 1, 9, 8, 7, 6]); // extension, 1 word
        buf.extend_from_slice(&[1, 2, 3]); // payload
        buf.extend_from_slice(&[0, 0, 3]); // padding: 3 bytes
        let p = parse(&buf).unwrap();
        assert_eq!(p.payload_type, 8);
        assert!(!p.marker);
        assert_eq!(p.csrcs().collect::<Vec<_>>(), [0xaa00_0001, 0xbb00_0002]);
        assert_eq!(
            p.extension,
            Some(Extension {
                profile: 0xbede,
                data: &[9, 8, 7, 6]
            })
        );
        assert_eq!(p.padding, 3);
        assert_eq!(p.payload, &[1, 2, 3]);
    }

    #[test]
    fn errors_say_why() {
        assert_eq!(parse(&[]), Err(RtpError::TooShort { len: 0 }));
        assert_eq!(parse(&pcmu()[..11]), Err(RtpError::TooShort { len: 11 }));
        let mut v1 = pcmu();
        v1[0] = 0x40;
        assert_eq!(parse(&v1), Err(RtpError::BadVersion(1)));
        v1[0] = 0x00;
        assert_eq!(parse(&v1), Err(RtpError::BadVersion(0)));

        let mut cc = pcmu()[..20].to_vec();
        cc[0] = 0x83; // 3 CSRCs = 24 bytes of header
        assert_eq!(
            parse(&cc),
            Err(RtpError::CsrcTruncated {
                csrc_count: 3,
                need: 24,
                len: 20
            })
        );

        let mut ext = pcmu()[..14].to_vec();
        ext[0] = 0x90;
        assert_eq!(
            parse(&ext),
            Err(RtpError::ExtensionTruncated { need: 16, len: 14 })
        );
        let mut ext = pcmu()[..20].to_vec();
        ext[0] = 0x90;
        ext[12..16].copy_from_slice(&[0, 0, 0, 2]); // 2 words: needs 24 bytes
        assert_eq!(
            parse(&ext),
            Err(RtpError::ExtensionTruncated { need: 24, len: 20 })
        );

        let mut pad = pcmu();
        pad[0] = 0xa0;
        *pad.last_mut().unwrap() = 0;
        assert_eq!(
            parse(&pad),
            Err(RtpError::BadPadding {
                padding: 0,
                available: 160
            })
        );
        *pad.last_mut().unwrap() = 161;
        assert_eq!(
            parse(&pad),
            Err(RtpError::BadPadding {
                padding: 161,
                available: 160
            })
        );
        // Padding equal to everything after the header is valid: an empty payload.
        *pad.last_mut().unwrap() = 160;
        assert_eq!(parse(&pad).unwrap().payload, &[] as &[u8]);
        // Padding bit on a header-only packet: the count would be a header byte.
        let mut hdr = pcmu()[..12].to_vec();
        hdr[0] = 0xa0;
        assert_eq!(
            parse(&hdr),
            Err(RtpError::BadPadding {
                padding: 0x04,
                available: 0
            })
        );
    }

    /// A small deterministic generator (xorshift64*) for the differential test.
    fn rng(state: &mut u64) -> u64 {
        *state ^= *state >> 12;
        *state ^= *state << 25;
        *state ^= *state >> 27;
        state.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    #[test]
    fn agrees_with_an_independent_parser_on_random_input() {
        let mut s = 0x9e37_79b9_7f4a_7c15u64;
        // Valid packets seen with (CSRCs, an extension, padding): each path must be reached.
        let mut reached = [0u32; 3];
        for _ in 0..200_000 {
            let len = (rng(&mut s) % 64) as usize;
            let mut buf: Vec<u8> = (0..len).map(|_| rng(&mut s) as u8).collect();
            // Mostly version 2, with small CSRC counts and extension lengths, to reach deep paths.
            if len > 0 && !rng(&mut s).is_multiple_of(4) {
                buf[0] = 0x80 | (buf[0] & 0x33);
            }
            if len > 0 && rng(&mut s).is_multiple_of(2) {
                // A short extension length, so that some extensions fit.
                let ext_at = 12 + 4 * usize::from(buf[0] & 0x0f);
                if ext_at + 4 <= len {
                    buf[ext_at + 2] = 0;
                    buf[ext_at + 3] %= 8;
                }
            }
            let ours = parse(&buf);
            let theirs = rtp_types::RtpPacket::parse(&buf);
            match (ours, theirs) {
                (Ok(a), Ok(b)) => {
                    assert_eq!(a.payload_type, b.payload_type());
                    assert_eq!(a.marker, b.marker_bit());
                    assert_eq!(a.seq, b.sequence_number());
                    assert_eq!(a.timestamp, b.timestamp());
                    assert_eq!(a.ssrc, b.ssrc());
                    assert!(a.csrcs().eq(b.csrc()));
                    assert_eq!(
                        a.extension.map(|e| (e.profile, e.data)),
                        b.extension(),
                        "{buf:02x?}"
                    );
                    assert_eq!(a.payload, b.payload(), "{buf:02x?}");
                    reached[0] += u32::from(a.csrc_count() > 0);
                    reached[1] += u32::from(a.extension.is_some());
                    reached[2] += u32::from(a.padding > 0);
                }
                (Err(_), Err(_)) => {}
                (a, b) => panic!("disagree on {buf:02x?}: {a:?} vs {b:?}"),
            }
        }
        assert!(reached.iter().all(|n| *n > 100), "{reached:?}");
    }

    #[test]
    fn classifies_rtp_and_rtcp() {
        assert_eq!(classify(&pcmu()), PacketKind::Rtp);
        for pt in 200..=204u8 {
            assert_eq!(classify(&[0x80, pt, 0, 6]), PacketKind::Rtcp, "{pt}");
            assert_eq!(classify(&[0x81, pt]), PacketKind::Rtcp, "{pt}");
        }
        // PCMU and PCMA with and without the marker, telephone-event (101) with the marker.
        for b in [0u8, 8, 0x80, 0x88, 101, 0x80 | 101] {
            assert_eq!(classify(&[0x80, b]), PacketKind::Rtp, "{b}");
        }
        assert_eq!(classify(&[]), PacketKind::Other);
        assert_eq!(classify(&[0x80]), PacketKind::Other);
        assert_eq!(classify(&[0x00, 0x01, 0, 0]), PacketKind::Other); // STUN
        assert_eq!(classify(&[0x16, 0xfe, 0xfd]), PacketKind::Other); // DTLS
    }
}
