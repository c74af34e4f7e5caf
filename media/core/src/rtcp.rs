//! RTCP compound packets (RFC 3550 §6): building ours and parsing the peer's. Pure: no sockets,
//! no clock (the NTP timestamp and `now` are passed in), and no allocation.
//!
//! Building (§6.1: every compound packet starts with SR or RR and carries an SDES CNAME): a
//! Sender Report (§6.4.1) or, when we sent nothing, a Receiver Report (§6.4.2), with at most one
//! report block (we receive from one source); then SDES with CNAME (§6.5); optionally BYE (§6.6).
//! Written into the caller's buffer; the length is returned.
//!
//! Parsing follows the validity checks of Appendix A.2: version 2 in every packet, the first one
//! SR or RR, each length field within the datagram and the lengths adding up to it exactly,
//! padding only in the last packet. [`parse_compound`] checks the whole compound before it is
//! read; [`Compound::packets`] then yields SR, RR (with report blocks), BYE, and SDES and other
//! types by name only.

use std::time::{Duration, Instant};

use crate::quality::ReceiverStats;

pub const PT_SR: u8 = 200;
pub const PT_RR: u8 = 201;
pub const PT_SDES: u8 = 202;
pub const PT_BYE: u8 = 203;
pub const PT_APP: u8 = 204;

const HEADER_LEN: usize = 4;
const SENDER_INFO_LEN: usize = 20;
const REPORT_BLOCK_LEN: usize = 24;
const SDES_CNAME: u8 = 1;
/// Seconds from the NTP epoch (1900) to the Unix epoch (1970).
const NTP_UNIX_OFFSET: u64 = 2_208_988_800;

/// The sender information of an SR (§6.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SenderInfo {
    /// 64-bit NTP timestamp (see [`ntp_timestamp`]).
    pub ntp_timestamp: u64,
    /// The same instant on the RTP clock of the stream.
    pub rtp_timestamp: u32,
    pub packet_count: u32,
    /// Payload octets sent (headers and padding excluded).
    pub octet_count: u32,
}

/// One report block (§6.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReportBlock {
    /// The source this block reports on.
    pub ssrc: u32,
    pub fraction_lost: u8,
    /// 24-bit signed on the wire: clamped to -0x800000..=0x7fffff when written.
    pub cumulative_lost: i32,
    pub extended_highest_seq: u32,
    /// Interarrival jitter in timestamp units.
    pub jitter: u32,
    /// Middle 32 bits of the NTP timestamp of the last SR from the source (0: none).
    pub last_sr: u32,
    /// Delay since that SR in 1/65536 s.
    pub delay_since_last_sr: u32,
}

impl ReportBlock {
    /// The block for `source_ssrc` at `now`. Ends the loss interval of `stats` (the fraction lost
    /// covers the time since the previous block).
    pub fn from_stats(source_ssrc: u32, stats: &mut ReceiverStats, now: Instant) -> ReportBlock {
        let interval = stats.take_interval();
        let (last_sr, delay_since_last_sr) = stats.lsr_dlsr(now);
        ReportBlock {
            ssrc: source_ssrc,
            fraction_lost: interval.fraction_lost,
            cumulative_lost: stats.lost_rtcp(),
            extended_highest_seq: stats.extended_highest_seq(),
            jitter: stats.jitter_rtcp(),
            last_sr,
            delay_since_last_sr,
        }
    }

    fn write(&self, out: &mut [u8]) {
        out[0..4].copy_from_slice(&self.ssrc.to_be_bytes());
        let lost = self
            .cumulative_lost
            .clamp(-0x80_0000, 0x7f_ffff)
            .to_be_bytes();
        out[4] = self.fraction_lost;
        out[5..8].copy_from_slice(&lost[1..4]);
        out[8..12].copy_from_slice(&self.extended_highest_seq.to_be_bytes());
        out[12..16].copy_from_slice(&self.jitter.to_be_bytes());
        out[16..20].copy_from_slice(&self.last_sr.to_be_bytes());
        out[20..24].copy_from_slice(&self.delay_since_last_sr.to_be_bytes());
    }

    /// Reads a block from 24 bytes (callers pass exact chunks).
    fn read(b: &[u8]) -> ReportBlock {
        // Sign-extend the 24-bit cumulative loss.
        let lost = i32::from_be_bytes([b[5], b[6], b[7], 0]) >> 8;
        ReportBlock {
            ssrc: be32(&b[0..4]),
            fraction_lost: b[4],
            cumulative_lost: lost,
            extended_highest_seq: be32(&b[8..12]),
            jitter: be32(&b[12..16]),
            last_sr: be32(&b[16..20]),
            delay_since_last_sr: be32(&b[20..24]),
        }
    }
}

/// Reads 4 big-endian bytes. Callers pass slices of length 4 (checked ranges or exact chunks).
fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// The 64-bit NTP timestamp of a wall-clock time given as the time since the Unix epoch (the
/// caller reads the clock: `SystemTime::now().duration_since(UNIX_EPOCH)`). The seconds wrap in
/// 2036 as NTP's do.
pub fn ntp_timestamp(since_unix_epoch: Duration) -> u64 {
    let secs = (since_unix_epoch.as_secs() + NTP_UNIX_OFFSET) & 0xffff_ffff;
    let frac = (u64::from(since_unix_epoch.subsec_nanos()) << 32) / 1_000_000_000;
    (secs << 32) | frac
}

/// Round-trip time to the source of a report block that reports on our SR (§6.4.1:
/// `A - LSR - DLSR`), given the block's arrival as an NTP timestamp. `None` when the block
/// refers to no SR or the figures are inconsistent (clock steps).
pub fn round_trip(arrival_ntp: u64, block: &ReportBlock) -> Option<Duration> {
    if block.last_sr == 0 {
        return None;
    }
    let a = (arrival_ntp >> 16) as u32;
    let since_sr = a.wrapping_sub(block.last_sr);
    let rtt = since_sr.checked_sub(block.delay_since_last_sr)?;
    if since_sr > u32::MAX / 2 {
        return None; // A before LSR: negative
    }
    Some(Duration::from_nanos(
        u64::from(rtt) * 1_000_000_000 / 65_536,
    ))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    #[error("the compound packet needs {need} bytes, the buffer has {have}")]
    BufferTooSmall { need: usize, have: usize },
    #[error("CNAME of {0} bytes: at most 255")]
    CnameTooLong(usize),
}

/// A compound packet to send: SR (with `sender`) or RR, then SDES CNAME, then BYE if `bye`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outgoing<'a> {
    /// Our SSRC.
    pub ssrc: u32,
    /// `Some` if we sent RTP since the report before last (§6.4): an SR; `None`: an RR.
    pub sender: Option<SenderInfo>,
    pub block: Option<ReportBlock>,
    pub cname: &'a str,
    /// Append a BYE for our SSRC (no reason): the session ends.
    pub bye: bool,
}

impl Outgoing<'_> {
    fn report_len(&self) -> usize {
        let base = if self.sender.is_some() {
            HEADER_LEN + 4 + SENDER_INFO_LEN
        } else {
            HEADER_LEN + 4
        };
        base + REPORT_BLOCK_LEN * usize::from(self.block.is_some())
    }

    fn sdes_len(&self) -> usize {
        // Header, SSRC, CNAME item (type, length, text), then at least one null octet to end the
        // item list, padded to 32 bits.
        let items = 2 + self.cname.len();
        HEADER_LEN + 4 + (items / 4 + 1) * 4
    }

    /// Bytes [`Outgoing::write`] will write.
    pub fn encoded_len(&self) -> usize {
        self.report_len() + self.sdes_len() + if self.bye { HEADER_LEN + 4 } else { 0 }
    }

    /// Writes the compound packet at the start of `buf`; returns its length.
    pub fn write(&self, buf: &mut [u8]) -> Result<usize, BuildError> {
        let cname = self.cname.as_bytes();
        if cname.len() > 255 {
            return Err(BuildError::CnameTooLong(cname.len()));
        }
        let need = self.encoded_len();
        if buf.len() < need {
            return Err(BuildError::BufferTooSmall {
                need,
                have: buf.len(),
            });
        }
        let buf = &mut buf[..need];
        buf.fill(0);

        // SR or RR.
        let report_len = self.report_len();
        let count = u8::from(self.block.is_some());
        let pt = if self.sender.is_some() { PT_SR } else { PT_RR };
        write_header(&mut buf[..report_len], count, pt);
        buf[4..8].copy_from_slice(&self.ssrc.to_be_bytes());
        let mut at = 8;
        if let Some(info) = &self.sender {
            buf[8..16].copy_from_slice(&info.ntp_timestamp.to_be_bytes());
            buf[16..20].copy_from_slice(&info.rtp_timestamp.to_be_bytes());
            buf[20..24].copy_from_slice(&info.packet_count.to_be_bytes());
            buf[24..28].copy_from_slice(&info.octet_count.to_be_bytes());
            at = 28;
        }
        if let Some(block) = &self.block {
            block.write(&mut buf[at..at + REPORT_BLOCK_LEN]);
        }

        // SDES: one chunk with CNAME; the null octets after it are already zero.
        let sdes = &mut buf[report_len..report_len + self.sdes_len()];
        write_header(sdes, 1, PT_SDES);
        sdes[4..8].copy_from_slice(&self.ssrc.to_be_bytes());
        sdes[8] = SDES_CNAME;
        sdes[9] = cname.len() as u8; // at most 255, checked above
        sdes[10..10 + cname.len()].copy_from_slice(cname);

        if self.bye {
            let bye = &mut buf[need - 8..];
            write_header(bye, 1, PT_BYE);
            bye[4..8].copy_from_slice(&self.ssrc.to_be_bytes());
        }
        Ok(need)
    }
}

/// Writes the common header of a packet occupying all of `pkt` (a multiple of 4 bytes).
fn write_header(pkt: &mut [u8], count: u8, packet_type: u8) {
    let words = (pkt.len() / 4 - 1) as u16;
    pkt[0] = 0x80 | count;
    pkt[1] = packet_type;
    pkt[2..4].copy_from_slice(&words.to_be_bytes());
}

/// Writes SR (+ one report block if given) + SDES CNAME into `buf`; returns the length.
pub fn write_sender_report(
    buf: &mut [u8],
    ssrc: u32,
    info: &SenderInfo,
    block: Option<&ReportBlock>,
    cname: &str,
) -> Result<usize, BuildError> {
    Outgoing {
        ssrc,
        sender: Some(*info),
        block: block.copied(),
        cname,
        bye: false,
    }
    .write(buf)
}

/// Why a datagram is not a valid RTCP compound packet. `offset`: where the packet at fault starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RtcpError {
    #[error("{len} bytes at offset {offset}: shorter than an RTCP header")]
    TooShort { offset: usize, len: usize },
    #[error("RTCP version {version} at offset {offset}, expected 2")]
    BadVersion { offset: usize, version: u8 },
    #[error("packet at offset {offset} declares {declared} bytes, {available} remain")]
    LengthOverrun {
        offset: usize,
        declared: usize,
        available: usize,
    },
    #[error("bad padding in the packet at offset {offset}")]
    BadPadding { offset: usize },
    #[error("compound packet starts with packet type {0}, not SR or RR")]
    FirstNotReport(u8),
    #[error("packet type {packet_type} at offset {offset} is shorter than its counts require")]
    Truncated { offset: usize, packet_type: u8 },
}

/// A validated compound packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Compound<'a> {
    buf: &'a [u8],
}

/// Validates a whole compound packet (see the module documentation).
pub fn parse_compound(buf: &[u8]) -> Result<Compound<'_>, RtcpError> {
    let mut offset = 0;
    loop {
        let (packet, next) = read_packet(buf, offset)?;
        if offset == 0 && !matches!(packet, Packet::SenderReport(_) | Packet::ReceiverReport(_)) {
            return Err(RtcpError::FirstNotReport(buf[1]));
        }
        if next == buf.len() {
            return Ok(Compound { buf });
        }
        offset = next;
    }
}

impl<'a> Compound<'a> {
    pub fn packets(&self) -> Packets<'a> {
        Packets {
            buf: self.buf,
            offset: 0,
        }
    }

    /// The first packet's (sender's) SSRC.
    pub fn ssrc(&self) -> u32 {
        be32(&self.buf[4..8]) // validated: the first packet is an SR or RR with its SSRC
    }
}

/// The packets of a [`Compound`], in order.
#[derive(Debug, Clone)]
pub struct Packets<'a> {
    buf: &'a [u8],
    offset: usize,
}

impl<'a> Iterator for Packets<'a> {
    type Item = Packet<'a>;

    fn next(&mut self) -> Option<Packet<'a>> {
        if self.offset >= self.buf.len() {
            return None;
        }
        // parse_compound validated every packet, so this is always Ok.
        let (packet, next) = read_packet(self.buf, self.offset).ok()?;
        self.offset = next;
        Some(packet)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet<'a> {
    SenderReport(SenderReport<'a>),
    ReceiverReport(ReceiverReport<'a>),
    /// Source description: skipped.
    Sdes,
    Bye(Bye<'a>),
    /// APP, feedback, XR, ...: not read.
    Other {
        packet_type: u8,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SenderReport<'a> {
    pub ssrc: u32,
    pub info: SenderInfo,
    pub blocks: ReportBlocks<'a>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiverReport<'a> {
    pub ssrc: u32,
    pub blocks: ReportBlocks<'a>,
}

/// The report blocks of an SR or RR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportBlocks<'a> {
    /// A multiple of 24 bytes.
    data: &'a [u8],
}

impl Iterator for ReportBlocks<'_> {
    type Item = ReportBlock;

    fn next(&mut self) -> Option<ReportBlock> {
        if self.data.len() < REPORT_BLOCK_LEN {
            return None;
        }
        let (block, rest) = self.data.split_at(REPORT_BLOCK_LEN);
        self.data = rest;
        Some(ReportBlock::read(block))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.data.len() / REPORT_BLOCK_LEN;
        (n, Some(n))
    }
}

impl ExactSizeIterator for ReportBlocks<'_> {}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bye<'a> {
    /// 4 bytes per SSRC.
    ssrc_bytes: &'a [u8],
    /// The reason text, if any (not checked to be UTF-8).
    pub reason: Option<&'a [u8]>,
}

impl<'a> Bye<'a> {
    pub fn ssrcs(&self) -> impl Iterator<Item = u32> + 'a {
        self.ssrc_bytes.chunks_exact(4).map(be32)
    }
}

/// Reads the packet at `offset`; returns it and where the next one starts.
fn read_packet(buf: &[u8], offset: usize) -> Result<(Packet<'_>, usize), RtcpError> {
    let rest = &buf[offset..];
    if rest.len() < HEADER_LEN {
        return Err(RtcpError::TooShort {
            offset,
            len: rest.len(),
        });
    }
    let version = rest[0] >> 6;
    if version != 2 {
        return Err(RtcpError::BadVersion { offset, version });
    }
    let has_padding = rest[0] & 0x20 != 0;
    let count = usize::from(rest[0] & 0x1f);
    let packet_type = rest[1];
    let size = (usize::from(u16::from_be_bytes([rest[2], rest[3]])) + 1) * 4;
    if size > rest.len() {
        return Err(RtcpError::LengthOverrun {
            offset,
            declared: size,
            available: rest.len(),
        });
    }
    let mut end = size;
    if has_padding {
        // Only the last packet may be padded; the count (last octet) includes itself.
        let padding = usize::from(rest[size - 1]);
        if size != rest.len() || padding == 0 || padding > size - HEADER_LEN {
            return Err(RtcpError::BadPadding { offset });
        }
        end -= padding;
    }
    let body = &rest[HEADER_LEN..end];
    let truncated = RtcpError::Truncated {
        offset,
        packet_type,
    };
    let packet = match packet_type {
        PT_SR => {
            let blocks_at = 4 + SENDER_INFO_LEN;
            let blocks_end = blocks_at + REPORT_BLOCK_LEN * count;
            if body.len() < blocks_end {
                return Err(truncated);
            }
            Packet::SenderReport(SenderReport {
                ssrc: be32(&body[0..4]),
                info: SenderInfo {
                    ntp_timestamp: (u64::from(be32(&body[4..8])) << 32)
                        | u64::from(be32(&body[8..12])),
                    rtp_timestamp: be32(&body[12..16]),
                    packet_count: be32(&body[16..20]),
                    octet_count: be32(&body[20..24]),
                },
                blocks: ReportBlocks {
                    data: &body[blocks_at..blocks_end],
                },
            })
        }
        PT_RR => {
            let blocks_end = 4 + REPORT_BLOCK_LEN * count;
            if body.len() < blocks_end {
                return Err(truncated);
            }
            Packet::ReceiverReport(ReceiverReport {
                ssrc: be32(&body[0..4]),
                blocks: ReportBlocks {
                    data: &body[4..blocks_end],
                },
            })
        }
        PT_SDES => Packet::Sdes,
        PT_BYE => {
            let ssrcs_end = 4 * count;
            if body.len() < ssrcs_end {
                return Err(truncated);
            }
            let after = &body[ssrcs_end..];
            let reason = match after.first() {
                None => None,
                Some(&n) => {
                    let n = usize::from(n);
                    if after.len() < 1 + n {
                        return Err(truncated);
                    }
                    Some(&after[1..1 + n])
                }
            };
            Packet::Bye(Bye {
                ssrc_bytes: &body[..ssrcs_end],
                reason,
            })
        }
        other => Packet::Other { packet_type: other },
    };
    Ok((packet, offset + size))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quality::G711_CLOCK_RATE;

    const CNAME: &str = "milliwatt@127.0.0.1";

    fn info() -> SenderInfo {
        SenderInfo {
            ntp_timestamp: 0xe9a1_b2c3_8000_0000,
            rtp_timestamp: 0x1234_5678,
            packet_count: 500,
            octet_count: 80_000,
        }
    }

    fn block() -> ReportBlock {
        ReportBlock {
            ssrc: 0xcafe_f00d,
            fraction_lost: 25,
            cumulative_lost: -3,
            extended_highest_seq: 0x0001_0005,
            jitter: 17,
            last_sr: 0xb2c3_8000,
            delay_since_last_sr: 65_536,
        }
    }

    fn sr_with_block() -> (Vec<u8>, usize) {
        let mut buf = vec![0u8; 1500];
        let n = write_sender_report(&mut buf, 0x1111_2222, &info(), Some(&block()), CNAME).unwrap();
        buf.truncate(n);
        (buf, 28 + 24)
    }

    #[test]
    fn sender_report_roundtrip() {
        let (buf, sr_len) = sr_with_block();
        // SR 52 + SDES (8 + CNAME item 2 + 19 + null, padded: 24) = 84.
        assert_eq!(buf.len(), sr_len + 8 + 24);
        assert_eq!(&buf[..4], &[0x81, 200, 0, 12]);
        assert_eq!(&buf[sr_len..sr_len + 4], &[0x81, 202, 0, 7]);
        let c = parse_compound(&buf).unwrap();
        assert_eq!(c.ssrc(), 0x1111_2222);
        let packets: Vec<_> = c.packets().collect();
        assert_eq!(packets.len(), 2);
        let Packet::SenderReport(sr) = &packets[0] else {
            panic!("{packets:?}");
        };
        assert_eq!(sr.ssrc, 0x1111_2222);
        assert_eq!(sr.info, info());
        assert_eq!(sr.blocks.len(), 1);
        assert_eq!(sr.blocks.clone().collect::<Vec<_>>(), [block()]);
        assert_eq!(packets[1], Packet::Sdes);
    }

    #[test]
    fn receiver_report_and_bye_roundtrip() {
        let mut buf = [0u8; 256];
        for (block, bye) in [(None, false), (Some(block()), true), (None, true)] {
            let out = Outgoing {
                ssrc: 7,
                sender: None,
                block,
                cname: "x",
                bye,
            };
            let n = out.write(&mut buf).unwrap();
            assert_eq!(n, out.encoded_len());
            let c = parse_compound(&buf[..n]).unwrap();
            let packets: Vec<_> = c.packets().collect();
            let Packet::ReceiverReport(rr) = &packets[0] else {
                panic!("{packets:?}");
            };
            assert_eq!(rr.ssrc, 7);
            assert_eq!(rr.blocks.clone().collect::<Vec<_>>(), Vec::from_iter(block));
            assert_eq!(packets[1], Packet::Sdes);
            if bye {
                let Packet::Bye(b) = &packets[2] else {
                    panic!("{packets:?}");
                };
                assert_eq!(b.ssrcs().collect::<Vec<_>>(), [7]);
                assert_eq!(b.reason, None);
            } else {
                assert_eq!(packets.len(), 2);
            }
        }
    }

    #[test]
    fn sdes_item_list_is_null_terminated_and_aligned() {
        let mut buf = [0xffu8; 600];
        for len in 0..=255 {
            let cname = "c".repeat(len);
            let n = write_sender_report(&mut buf, 1, &info(), None, &cname).unwrap();
            assert_eq!(n % 4, 0);
            let sdes = &buf[28..n];
            assert_eq!(sdes[9] as usize, len);
            let tail = &sdes[10 + len..];
            assert!(!tail.is_empty() && tail.len() <= 4 && tail.iter().all(|b| *b == 0));
            parse_compound(&buf[..n]).unwrap();
        }
        assert_eq!(
            write_sender_report(&mut buf, 1, &info(), None, &"c".repeat(256)),
            Err(BuildError::CnameTooLong(256))
        );
    }

    #[test]
    fn small_buffer_is_an_error() {
        let mut buf = [0u8; 83];
        assert_eq!(
            write_sender_report(&mut buf, 1, &info(), Some(&block()), CNAME),
            Err(BuildError::BufferTooSmall { need: 84, have: 83 })
        );
    }

    #[test]
    fn cumulative_loss_is_24_bit_signed() {
        let mut buf = [0u8; 128];
        for (lost, wire) in [
            (0, 0),
            (-1, -1),
            (0x7f_ffff, 0x7f_ffff),
            (0x100_0000, 0x7f_ffff),
            (-0x80_0000, -0x80_0000),
            (i32::MIN, -0x80_0000),
        ] {
            let b = ReportBlock {
                cumulative_lost: lost,
                ..block()
            };
            let n = write_sender_report(&mut buf, 1, &info(), Some(&b), "c").unwrap();
            let c = parse_compound(&buf[..n]).unwrap();
            let Some(Packet::SenderReport(mut sr)) = c.packets().next() else {
                panic!();
            };
            assert_eq!(sr.blocks.next().unwrap().cumulative_lost, wire, "{lost}");
        }
        // 0xfffffe on the wire is -2.
        let mut raw = [0u8; 24];
        raw[5..8].copy_from_slice(&[0xff, 0xff, 0xfe]);
        assert_eq!(ReportBlock::read(&raw).cumulative_lost, -2);
    }

    #[test]
    fn block_from_receiver_stats_and_round_trip_time() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut stats = ReceiverStats::new(G711_CLOCK_RATE);
        // 0..=99 with 10 and 20 missing; 0 is on probation: 99 expected (1..=99), 97 received.
        for i in (0u16..100).filter(|i| *i != 10 && *i != 20) {
            stats.on_packet(i, 160 * u32::from(i), t0 + ms(20 * u64::from(i)));
        }
        // Their SR arrived at 1.9 s; we report at 2 s.
        let their_ntp = ntp_timestamp(Duration::from_secs(1_700_000_000));
        stats.on_sender_report(their_ntp, t0 + ms(1900));
        let b = ReportBlock::from_stats(0xabcd, &mut stats, t0 + ms(2000));
        assert_eq!(b.ssrc, 0xabcd);
        assert_eq!(b.extended_highest_seq, 99);
        assert_eq!(b.cumulative_lost, 2);
        assert_eq!(b.fraction_lost, (2 * 256 / 99) as u8);
        assert_eq!(b.jitter, 0);
        assert_eq!(b.last_sr, (their_ntp >> 16) as u32);
        assert_eq!(b.delay_since_last_sr, 6553); // 0.1 s
                                                 // The interval ended: the next block has no new loss.
        let b2 = ReportBlock::from_stats(0xabcd, &mut stats, t0 + ms(2000));
        assert_eq!(b2.fraction_lost, 0);
        assert_eq!(b2.cumulative_lost, 2);

        // The peer gets our block 30 ms after we sent it (their SR left 30 ms before arriving):
        // RTT 60 ms, within NTP-short resolution.
        let arrival = ntp_timestamp(Duration::from_secs(1_700_000_000) + ms(30 + 100 + 30));
        let rtt = round_trip(arrival, &b).unwrap();
        assert!(rtt.abs_diff(ms(60)) < Duration::from_micros(100), "{rtt:?}");
        assert_eq!(round_trip(arrival, &ReportBlock { last_sr: 0, ..b }), None);
        assert_eq!(round_trip(their_ntp, &b), None); // DLSR longer than A - LSR
    }

    #[test]
    fn ntp_timestamps() {
        assert_eq!(ntp_timestamp(Duration::ZERO), NTP_UNIX_OFFSET << 32);
        assert_eq!(
            ntp_timestamp(Duration::from_millis(1500)),
            ((NTP_UNIX_OFFSET + 1) << 32) | 0x8000_0000
        );
    }

    #[test]
    fn parses_a_peer_compound_with_bye_reason_and_padding() {
        // RR with no blocks, SDES (not read), APP, BYE with two SSRCs and the reason "end",
        // padded by 4 bytes.
        #[rustfmt::skip]
        let buf = [
            0x80, 201, 0, 1, 0, 0, 0, 9,
            0x81, 202, 0, 2, 0, 0, 0, 9, 1, 1, b'a', 0,
            0x80, 204, 0, 2, 0, 0, 0, 9, b'n', b'a', b'm', b'e',
            0xa2, 203, 0, 4, 0, 0, 0, 9, 0, 0, 0, 8, 3, b'e', b'n', b'd', 0, 0, 0, 4,
        ];
        let c = parse_compound(&buf).unwrap();
        let packets: Vec<_> = c.packets().collect();
        assert_eq!(packets.len(), 4);
        assert!(
            matches!(&packets[0], Packet::ReceiverReport(rr) if rr.ssrc == 9 && rr.blocks.len() == 0)
        );
        assert_eq!(packets[1], Packet::Sdes);
        assert_eq!(
            packets[2],
            Packet::Other {
                packet_type: PT_APP
            }
        );
        let Packet::Bye(b) = &packets[3] else {
            panic!("{packets:?}");
        };
        assert_eq!(b.ssrcs().collect::<Vec<_>>(), [9, 8]);
        assert_eq!(b.reason, Some(&b"end"[..]));
    }

    #[test]
    fn invalid_compounds_say_why() {
        let (good, sr_len) = sr_with_block();
        assert_eq!(
            parse_compound(&[]),
            Err(RtcpError::TooShort { offset: 0, len: 0 })
        );
        let mut v = good.clone();
        v[0] = 0x41;
        assert_eq!(
            parse_compound(&v),
            Err(RtcpError::BadVersion {
                offset: 0,
                version: 1
            })
        );
        let mut v = good.clone();
        v[sr_len] = 0x01;
        assert_eq!(
            parse_compound(&v),
            Err(RtcpError::BadVersion {
                offset: sr_len,
                version: 0
            })
        );
        // SDES first.
        assert_eq!(
            parse_compound(&good[sr_len..]),
            Err(RtcpError::FirstNotReport(PT_SDES))
        );
        // SR length one word too long: the SR swallows the SDES header, and what follows (the
        // SDES SSRC 0x11112222) is no header. One word too short: the block does not fit.
        let mut v = good.clone();
        v[3] = 13;
        assert_eq!(
            parse_compound(&v),
            Err(RtcpError::BadVersion {
                offset: sr_len + 4,
                version: 0
            })
        );
        v[3] = 11;
        assert_eq!(
            parse_compound(&v),
            Err(RtcpError::Truncated {
                offset: 0,
                packet_type: PT_SR
            })
        );
        let mut v = good.clone();
        v[3] = 200;
        assert_eq!(
            parse_compound(&v),
            Err(RtcpError::LengthOverrun {
                offset: 0,
                declared: 804,
                available: good.len()
            })
        );
        // Report count beyond the SR's length.
        let mut v = good.clone();
        v[0] = 0x82;
        assert_eq!(
            parse_compound(&v),
            Err(RtcpError::Truncated {
                offset: 0,
                packet_type: PT_SR
            })
        );
        // Padding in a packet that is not the last, or a padding count of 0 or too large.
        let mut v = good.clone();
        v[0] |= 0x20;
        assert_eq!(parse_compound(&v), Err(RtcpError::BadPadding { offset: 0 }));
        let mut v = good.clone();
        v[sr_len] |= 0x20;
        let last = v.len() - 1;
        assert_eq!(v[last], 0);
        assert_eq!(
            parse_compound(&v),
            Err(RtcpError::BadPadding { offset: sr_len })
        );
        v[last] = 29;
        assert_eq!(
            parse_compound(&v),
            Err(RtcpError::BadPadding { offset: sr_len })
        );
        // BYE whose reason runs past the packet.
        let bye = [
            0x80, 201, 0, 1, 0, 0, 0, 9, 0x81, 203, 0, 2, 0, 0, 0, 9, 5, b'x', 0, 0,
        ];
        assert_eq!(
            parse_compound(&bye),
            Err(RtcpError::Truncated {
                offset: 8,
                packet_type: PT_BYE
            })
        );
    }

    #[test]
    fn every_truncation_fails_except_at_a_packet_boundary() {
        let (good, sr_len) = sr_with_block();
        for n in 0..good.len() {
            let r = parse_compound(&good[..n]);
            if n == sr_len {
                assert_eq!(r.unwrap().packets().count(), 1);
            } else {
                assert!(r.is_err(), "truncated to {n}: {r:?}");
            }
        }
    }

    fn rng(state: &mut u64) -> u64 {
        *state ^= *state >> 12;
        *state ^= *state << 25;
        *state ^= *state >> 27;
        state.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Reads everything a parsed compound offers.
    fn consume(buf: &[u8]) {
        if let Ok(c) = parse_compound(buf) {
            let _ = c.ssrc();
            for p in c.packets() {
                let _sum: u64 = match p {
                    Packet::SenderReport(sr) => sr.blocks.map(|b| u64::from(b.jitter)).sum(),
                    Packet::ReceiverReport(rr) => rr.blocks.map(|b| u64::from(b.jitter)).sum(),
                    Packet::Bye(b) => b.ssrcs().map(u64::from).sum(),
                    Packet::Sdes | Packet::Other { .. } => 0,
                };
            }
        }
    }

    #[test]
    fn garbage_and_bit_flips_never_panic() {
        let (good, _) = sr_with_block();
        for bit in 0..good.len() * 8 {
            let mut v = good.clone();
            v[bit / 8] ^= 1 << (bit % 8);
            consume(&v);
        }
        let mut s = 0x1234_5678_9abc_def1u64;
        let mut ok = 0;
        for _ in 0..200_000 {
            let len = (rng(&mut s) % 96) as usize;
            let mut v: Vec<u8> = (0..len).map(|_| rng(&mut s) as u8).collect();
            // Plausible headers reach deeper: version 2, SR/RR/BYE, small lengths.
            if len >= 4 {
                v[0] = 0x80 | (v[0] & 0x23);
                v[1] = [PT_SR, PT_RR, PT_BYE, PT_SDES][(v[1] % 4) as usize];
                v[2] = 0;
                v[3] %= 24;
            }
            ok += usize::from(parse_compound(&v).is_ok());
            consume(&v);
        }
        assert!(ok > 0, "the generator never produced a valid compound");
    }
}
