//! RTP packet building for one outgoing stream (RFC 3550): version 2, no padding, extension or
//! CSRC; the marker on the first packet of a talkspurt; sequence +1 per packet sent; timestamp
//! following the clock, +160 per 20 ms packet time including packet times skipped after a stall.
//! Packets are written into the caller's buffer: no allocation.

use crate::tone::{ToneTable, SAMPLES_PER_PACKET};

/// RTP fixed header length.
pub const HEADER_LEN: usize = 12;
/// A 20 ms G.711 packet.
pub const PACKET_LEN: usize = HEADER_LEN + SAMPLES_PER_PACKET;
/// Packet time in milliseconds.
pub const PTIME_MS: u64 = 20;

#[derive(Debug, Clone)]
pub struct RtpSender {
    ssrc: u32,
    payload_type: u8,
    seq: u16,
    timestamp: u32,
    /// Due time (ms on the pacer's clock) of the last packet sent.
    last_due_ms: Option<u64>,
    /// Position in the tone table of the next packet.
    tone_offset: usize,
    marker_next: bool,
}

/// What [`RtpSender::write_next`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    pub len: usize,
    /// Packet times skipped since the previous packet (the sender was late by whole packets).
    pub skipped: u64,
}

impl RtpSender {
    /// `initial_seq` and `initial_timestamp` should be random (RFC 3550 §5.1).
    pub fn new(ssrc: u32, payload_type: u8, initial_seq: u16, initial_timestamp: u32) -> Self {
        debug_assert!(payload_type < 128);
        RtpSender {
            ssrc,
            payload_type,
            seq: initial_seq,
            timestamp: initial_timestamp,
            last_due_ms: None,
            tone_offset: 0,
            marker_next: true,
        }
    }

    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// After a pause (hold), the next packet starts a talkspurt and carries the marker.
    pub fn resume(&mut self) {
        self.marker_next = true;
    }

    /// Writes the packet due at `due_ms` into `buf`. Due times of one stream are whole packet
    /// times apart; when some were skipped, the timestamp and the tone advance over them (the
    /// receiver sees the gap in time) while the sequence number advances by one.
    pub fn write_next(
        &mut self,
        due_ms: u64,
        table: &ToneTable,
        buf: &mut [u8; PACKET_LEN],
    ) -> Written {
        let elapsed = match self.last_due_ms {
            Some(last) => (due_ms.saturating_sub(last) / PTIME_MS).max(1),
            None => 1,
        };
        if self.last_due_ms.is_some() {
            self.seq = self.seq.wrapping_add(1);
            self.timestamp = self
                .timestamp
                .wrapping_add((SAMPLES_PER_PACKET as u64 * elapsed) as u32);
            self.tone_offset = table.advance(self.tone_offset, elapsed);
        }
        self.last_due_ms = Some(due_ms);
        let marker = std::mem::take(&mut self.marker_next);
        buf[0] = 0x80;
        buf[1] = (u8::from(marker) << 7) | self.payload_type;
        buf[2..4].copy_from_slice(&self.seq.to_be_bytes());
        buf[4..8].copy_from_slice(&self.timestamp.to_be_bytes());
        buf[8..12].copy_from_slice(&self.ssrc.to_be_bytes());
        buf[HEADER_LEN..].copy_from_slice(table.packet(self.tone_offset));
        Written {
            len: PACKET_LEN,
            skipped: elapsed - 1,
        }
    }
}

/// The echo test's stream: each RTP packet of the caller's goes straight back as a packet of
/// ours — our SSRC and sequence numbers, the caller's timestamps moved into our timestamp
/// space (so its timing survives), its marker, payload type and payload unchanged; its CSRCs,
/// header extension and padding are not copied.
#[derive(Debug, Clone)]
pub struct EchoStream {
    ssrc: u32,
    seq: u16,
    /// The caller's SSRC and what to add to its timestamps.
    anchor: Option<(u32, u32)>,
    /// The timestamp of the last packet echoed (a new caller SSRC continues from it).
    last_ts: u32,
    marker_next: bool,
}

impl EchoStream {
    /// `initial_seq` and `initial_timestamp` should be random (RFC 3550 §5.1).
    pub fn new(ssrc: u32, initial_seq: u16, initial_timestamp: u32) -> EchoStream {
        EchoStream {
            ssrc,
            seq: initial_seq,
            anchor: None,
            last_ts: initial_timestamp.wrapping_sub(SAMPLES_PER_PACKET as u32),
            marker_next: false,
        }
    }

    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// After a pause (hold), the next packet carries the marker.
    pub fn resume(&mut self) {
        self.marker_next = true;
    }

    /// Writes the echo of the caller's packet (`caller_ssrc`, `timestamp`, `marker`,
    /// `payload_type`, `payload`) into `out` (cleared first).
    pub fn write(
        &mut self,
        caller_ssrc: u32,
        timestamp: u32,
        marker: bool,
        payload_type: u8,
        payload: &[u8],
        out: &mut Vec<u8>,
    ) {
        let offset = match self.anchor {
            Some((ssrc, offset)) if ssrc == caller_ssrc => offset,
            _ => {
                // A new caller stream: ours goes on one packet time after its last packet.
                let offset = self
                    .last_ts
                    .wrapping_add(SAMPLES_PER_PACKET as u32)
                    .wrapping_sub(timestamp);
                self.anchor = Some((caller_ssrc, offset));
                offset
            }
        };
        let ts = timestamp.wrapping_add(offset);
        self.last_ts = ts;
        let marker = marker || std::mem::take(&mut self.marker_next);
        out.clear();
        out.push(0x80);
        out.push((u8::from(marker) << 7) | (payload_type & 0x7F));
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&ts.to_be_bytes());
        out.extend_from_slice(&self.ssrc.to_be_bytes());
        out.extend_from_slice(payload);
        self.seq = self.seq.wrapping_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tone::{Codec, ToneKey};
    use rtp_types::RtpPacket;

    fn table() -> ToneTable {
        ToneTable::new(ToneKey::new(Codec::Pcmu, 440, -10.0))
    }

    #[test]
    fn header_fields_over_a_long_run_with_wraps() {
        let t = table();
        // Start close to both wraps.
        let mut s = RtpSender::new(0xDEADBEEF, 0, 65530, u32::MAX - 800);
        let mut buf = [0u8; PACKET_LEN];
        let (mut prev_seq, mut prev_ts) = (None::<u16>, None::<u32>);
        for i in 0..100_000u64 {
            let w = s.write_next(1_000 + i * PTIME_MS, &t, &mut buf);
            assert_eq!(
                w,
                Written {
                    len: PACKET_LEN,
                    skipped: 0
                }
            );
            // An independent parser (rtp-types) reads what we wrote.
            let p = RtpPacket::parse(&buf[..w.len]).expect("valid RTP");
            assert_eq!(p.version(), 2);
            assert!(!p.padding_bit() && !p.extension_bit() && p.n_csrcs() == 0);
            assert_eq!(p.payload_type(), 0);
            assert_eq!(p.ssrc(), 0xDEADBEEF);
            assert_eq!(p.marker_bit(), i == 0, "marker only on the first packet");
            assert_eq!(p.payload().len(), 160);
            if let (Some(ps), Some(pt)) = (prev_seq, prev_ts) {
                assert_eq!(p.sequence_number(), ps.wrapping_add(1));
                assert_eq!(p.timestamp(), pt.wrapping_add(160));
            }
            prev_seq = Some(p.sequence_number());
            prev_ts = Some(p.timestamp());
        }
        assert_eq!(prev_seq, Some(65530u16.wrapping_add(99_999u32 as u16)));
    }

    #[test]
    fn payload_is_the_continuous_tone() {
        let t = table();
        let mut s = RtpSender::new(1, 0, 0, 0);
        let mut buf = [0u8; PACKET_LEN];
        let mut audio = Vec::new();
        for i in 0..10u64 {
            s.write_next(i * PTIME_MS, &t, &mut buf);
            audio.extend_from_slice(&buf[HEADER_LEN..]);
        }
        for (n, b) in audio.iter().enumerate() {
            assert_eq!(*b, t.packet(n % t.period())[0], "sample {n}");
        }
    }

    #[test]
    fn a_stall_skips_packets_without_bursting_and_keeps_time() {
        let t = table();
        let mut s = RtpSender::new(7, 8, 100, 1000);
        let mut buf = [0u8; PACKET_LEN];
        s.write_next(0, &t, &mut buf);
        // The next packet is due at 20 ms, but the sender only gets to run at 100 ms: one packet
        // goes out for 100 ms, with the timestamp of 100 ms.
        let w = s.write_next(100, &t, &mut buf);
        assert_eq!(w.skipped, 4);
        let p = RtpPacket::parse(&buf[..]).unwrap();
        assert_eq!(p.sequence_number(), 101);
        assert_eq!(p.timestamp(), 1000 + 5 * 160);
        assert!(!p.marker_bit());
        // The tone is where it would have been had nothing been skipped.
        assert_eq!(&buf[HEADER_LEN..], t.packet(5 * 160));
    }

    #[test]
    fn resume_after_hold_sets_the_marker_again() {
        let t = table();
        let mut s = RtpSender::new(7, 0, 0, 0);
        let mut buf = [0u8; PACKET_LEN];
        s.write_next(0, &t, &mut buf);
        s.write_next(20, &t, &mut buf);
        assert!(!RtpPacket::parse(&buf[..]).unwrap().marker_bit());
        s.resume();
        s.write_next(2000, &t, &mut buf);
        let p = RtpPacket::parse(&buf[..]).unwrap();
        assert!(p.marker_bit());
        assert_eq!(p.sequence_number(), 2);
        assert_eq!(p.timestamp(), 100 * 160);
    }

    #[test]
    fn an_echo_is_the_callers_packet_in_our_stream() {
        let mut e = EchoStream::new(0xABCD_0001, 65535, 1_000);
        let mut out = Vec::new();
        let payload: Vec<u8> = (0..160u8).collect();
        // The caller's stream: timestamps 50_000, 50_160, then a jump (its own silence).
        for (i, (ts, marker)) in [(50_000u32, true), (50_160, false), (51_600, false)]
            .into_iter()
            .enumerate()
        {
            e.write(7, ts, marker, 0, &payload, &mut out);
            let p = RtpPacket::parse(&out).expect("valid RTP");
            assert_eq!(p.ssrc(), 0xABCD_0001);
            assert_eq!(p.sequence_number(), 65535u16.wrapping_add(i as u16));
            assert_eq!(
                p.timestamp(),
                1_000 + (ts - 50_000),
                "the caller's timing kept"
            );
            assert_eq!(p.marker_bit(), marker);
            assert_eq!(p.payload_type(), 0);
            assert_eq!(p.payload(), &payload[..]);
        }
        // After a hold the marker is set once; a new caller SSRC continues our timestamps.
        e.resume();
        e.write(8, 9, false, 8, &payload, &mut out);
        let p = RtpPacket::parse(&out).unwrap();
        assert!(p.marker_bit());
        assert_eq!(p.payload_type(), 8);
        assert_eq!(p.timestamp(), 1_000 + 1_600 + 160);
        e.write(8, 169, false, 8, &payload, &mut out);
        let p = RtpPacket::parse(&out).unwrap();
        assert!(!p.marker_bit());
        assert_eq!(p.timestamp(), 1_000 + 1_600 + 320);
    }
}
