//! Evaluation (2026-12-02): should the receive side parse with the crates `rtp-types` and
//! `rtcp-types` instead of our hand-written `rtp_in.rs` and `rtcp.rs`? Verdict (README,
//! "Dependencies"): `rtp-types` adopted for RTP parsing; our RTCP parser and builder kept
//! (`rtcp-types` allocates per packet). The hand-written RTP parser lives on below for the rerun. The requirement is to adopt only what removes
//! hand-written code without a per-packet allocation, so for each realistic packet this example
//!
//! 1. checks that ours and the crate agree on the fields the receiver uses (RTP: SSRC, seq,
//!    timestamp, PT, marker, payload offset and length, CSRCs, extension, padding; RTCP: sender
//!    info, report blocks, BYE SSRCs and reason, and the crate's SDES CNAME against the known
//!    value, since our parser skips SDES), and on which malformed inputs are rejected;
//! 2. times N = 1,000,000 parses (median and best of 5 runs) with each;
//! 3. counts heap allocations per packet.
//!
//! It also compares building an SR with one report block plus SDES CNAME (what
//! `rtcp::write_sender_report` writes) into a caller's buffer.
//!
//! Allocations: the workspace sets `unsafe_code = "forbid"` (`[lints] workspace = true`), which
//! cargo passes to rustc as `--forbid unsafe_code`; an `#![allow(unsafe_code)]` cannot lift a
//! forbid (E0453), and a counting `#[global_allocator]` needs `unsafe impl GlobalAlloc`. So the
//! example re-runs itself under `valgrind --tool=dhat --mode=heap` for each case, once with
//! 1,000 and once with 11,000 iterations, and divides the difference in DHAT's "Total: ... in N
//! blocks" by 10,000: set-up allocations cancel out. Without valgrind that column says "n/a".
//!
//! Run: `cargo run --release --example rx_parse_eval -p milliwatt-media-core`
//! (`-- --no-valgrind` skips the allocation column; `-- --quick` times 100,000 once.)

use std::hint::black_box;
use std::process::Command;
use std::time::Instant;

use milliwatt_media_core::rtcp;
use rtcp_types::prelude::*;
use rtcp_types::{
    Compound, Packet as CPacket, ReceiverReport, ReportBlock as CBlock, Sdes, SdesChunk, SdesItem,
    SenderReport,
};

/// The hand-written RTP parser this evaluation compared with `rtp-types` (`media/core/src/rtp_in.rs`
/// before the crate was adopted), kept here so that the comparison can be rerun.
#[allow(dead_code)]
mod rtp_in {
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
}

// ---------------------------------------------------------------------------------------------
// Packets
// ---------------------------------------------------------------------------------------------

/// The phone's SSRC and ours.
const PHONE: u32 = 0x5a3c_91e2;
const OURS: u32 = 0x1111_2222;
const PHONE_CNAME: &str = "a1b2c3d4@192.0.2.10";
const OUR_CNAME: &str = "milliwatt@127.0.0.1";

fn rtp_header(b0: u8, b1: u8, seq: u16, ts: u32, ssrc: u32) -> Vec<u8> {
    let mut p = vec![b0, b1];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&ts.to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p
}

/// 20 ms of PCMU: 12-byte header + 160 bytes, 172 bytes.
fn rtp_g711() -> Vec<u8> {
    let mut p = rtp_header(0x80, 0, 0x1234, 0x0001_e240, PHONE);
    p.extend((0..160u32).map(|i| (0xff ^ i) as u8));
    assert_eq!(p.len(), 172);
    p
}

/// PCMA from a mixer: 2 CSRCs and an RFC 8285 one-byte header extension (audio level, 1 word).
fn rtp_csrc_ext() -> Vec<u8> {
    let mut p = rtp_header(0x92, 8, 0xfffe, 0x8000_0000, PHONE);
    p.extend_from_slice(&0xaa00_0001u32.to_be_bytes());
    p.extend_from_slice(&0xbb00_0002u32.to_be_bytes());
    p.extend_from_slice(&[0xbe, 0xde, 0x00, 0x01, 0x10, 0x85, 0x00, 0x00]);
    p.extend((0..160u32).map(|i| (0xd5 ^ i) as u8));
    assert_eq!(p.len(), 12 + 8 + 8 + 160);
    p
}

/// RFC 4733 telephone-event (PT 101), first packet of digit 5: marker, volume 10, 160 units.
fn rtp_dtmf() -> Vec<u8> {
    let mut p = rtp_header(0x80, 0x80 | 101, 0x1240, 0x0001_e5a0, PHONE);
    p.extend_from_slice(&[5, 0x0a, 0x00, 0xa0]);
    p
}

/// Malformed: the extension header declares 16 words, 20 bytes follow it.
fn rtp_malformed() -> Vec<u8> {
    let mut p = rtp_header(0x90, 0, 0x1234, 0x0001_e240, PHONE);
    p.extend_from_slice(&[0xbe, 0xde, 0x00, 0x10]);
    p.extend_from_slice(&[0xff; 20]);
    p
}

/// The SDES packet of one chunk with a CNAME (items, then at least one null octet, 32-bit
/// aligned).
fn sdes(ssrc: u32, cname: &str) -> Vec<u8> {
    let items = 2 + cname.len();
    let chunk_len = 4 + (items / 4 + 1) * 4;
    let words = (4 + chunk_len) / 4 - 1;
    let mut p = vec![0x81, 202];
    p.extend_from_slice(&(words as u16).to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.push(1);
    p.push(cname.len() as u8);
    p.extend_from_slice(cname.as_bytes());
    p.resize(4 + chunk_len, 0);
    p
}

#[allow(clippy::too_many_arguments)]
fn block_bytes(
    ssrc: u32,
    fraction: u8,
    lost24: u32,
    ext_seq: u32,
    jitter: u32,
    lsr: u32,
    dlsr: u32,
) -> Vec<u8> {
    let mut b = ssrc.to_be_bytes().to_vec();
    b.push(fraction);
    b.extend_from_slice(&lost24.to_be_bytes()[1..]);
    for v in [ext_seq, jitter, lsr, dlsr] {
        b.extend_from_slice(&v.to_be_bytes());
    }
    b
}

/// What a phone sends every ~5 s while it talks: SR with one report block (on our stream), then
/// SDES CNAME.
fn rtcp_sr_sdes() -> Vec<u8> {
    let mut p = vec![0x81, 200, 0, 12];
    p.extend_from_slice(&PHONE.to_be_bytes());
    p.extend_from_slice(&0xe9a1_b2c3_8000_0000u64.to_be_bytes());
    p.extend_from_slice(&0x0001_e240u32.to_be_bytes());
    p.extend_from_slice(&250u32.to_be_bytes());
    p.extend_from_slice(&40_000u32.to_be_bytes());
    p.extend(block_bytes(OURS, 12, 3, 0x0001_0005, 17, 0xb2c3_8000, 6554));
    assert_eq!(p.len(), 52);
    p.extend(sdes(PHONE, PHONE_CNAME));
    p
}

/// At hang-up from a phone that stopped sending: RR with one block (cumulative loss -1, i.e.
/// a duplicate, 0xffffff on the wire), SDES CNAME, BYE with a reason.
fn rtcp_rr_sdes_bye() -> Vec<u8> {
    let mut p = vec![0x81, 201, 0, 7];
    p.extend_from_slice(&PHONE.to_be_bytes());
    p.extend(block_bytes(
        OURS,
        0,
        0xff_ffff,
        0x0002_0010,
        40,
        0xb2c4_0000,
        13_107,
    ));
    p.extend(sdes(PHONE, PHONE_CNAME));
    // BYE: 1 SSRC, reason "hangup" (1 + 6 bytes, padded to 8).
    p.extend_from_slice(&[0x81, 203, 0, 3]);
    p.extend_from_slice(&PHONE.to_be_bytes());
    p.extend_from_slice(&[6, b'h', b'a', b'n', b'g', b'u', b'p', 0]);
    p
}

/// Malformed RTCP for the timed set: the SR's length field one word short, so its report block
/// does not fit (ours: Truncated).
fn rtcp_malformed() -> Vec<u8> {
    let mut p = rtcp_sr_sdes();
    p[3] = 11;
    p
}

fn none() -> Vec<u8> {
    Vec::new()
}

// ---------------------------------------------------------------------------------------------
// One iteration of each implementation: parse and read what the receiver reads; a checksum
// keeps the optimiser honest.
// ---------------------------------------------------------------------------------------------

fn offset_in(buf: &[u8], part: &[u8]) -> u64 {
    (part.as_ptr() as usize - buf.as_ptr() as usize) as u64
}

fn ours_rtp(buf: &[u8]) -> u64 {
    match rtp_in::parse(buf) {
        Ok(p) => {
            u64::from(p.ssrc)
                ^ u64::from(p.seq) << 32
                ^ u64::from(p.timestamp) << 7
                ^ u64::from(p.payload_type) << 48
                ^ u64::from(p.marker) << 56
                ^ offset_in(buf, p.payload) << 40
                ^ p.payload.len() as u64
        }
        Err(_) => 1,
    }
}

fn crate_rtp(buf: &[u8]) -> u64 {
    match rtp_types::RtpPacket::parse(buf) {
        Ok(p) => {
            let payload = p.payload();
            u64::from(p.ssrc())
                ^ u64::from(p.sequence_number()) << 32
                ^ u64::from(p.timestamp()) << 7
                ^ u64::from(p.payload_type()) << 48
                ^ u64::from(p.marker_bit()) << 56
                ^ offset_in(buf, payload) << 40
                ^ payload.len() as u64
        }
        Err(_) => 1,
    }
}

fn ours_block(b: &rtcp::ReportBlock) -> u64 {
    u64::from(b.ssrc)
        ^ u64::from(b.fraction_lost)
        ^ (b.cumulative_lost as u32 as u64) << 8
        ^ u64::from(b.extended_highest_seq) << 16
        ^ u64::from(b.jitter) << 24
        ^ u64::from(b.last_sr) << 3
        ^ u64::from(b.delay_since_last_sr) << 5
}

fn crate_block(b: &CBlock) -> u64 {
    // The crate gives the 24-bit field unsigned; the receiver would sign-extend it.
    let lost = (((b.cumulative_lost() << 8) as i32) >> 8) as u32;
    u64::from(b.ssrc())
        ^ u64::from(b.fraction_lost())
        ^ u64::from(lost) << 8
        ^ u64::from(b.extended_sequence_number()) << 16
        ^ u64::from(b.interarrival_jitter()) << 24
        ^ u64::from(b.last_sender_report_timestamp()) << 3
        ^ u64::from(b.delay_since_last_sender_report_timestamp()) << 5
}

fn ours_rtcp(buf: &[u8]) -> u64 {
    let Ok(c) = rtcp::parse_compound(buf) else {
        return 1;
    };
    let mut sum = u64::from(c.ssrc());
    for p in c.packets() {
        sum = sum.rotate_left(5)
            ^ match p {
                rtcp::Packet::SenderReport(sr) => {
                    let i = sr.info;
                    u64::from(sr.ssrc)
                        ^ i.ntp_timestamp
                        ^ u64::from(i.rtp_timestamp)
                        ^ u64::from(i.packet_count) << 3
                        ^ u64::from(i.octet_count) << 9
                        ^ sr.blocks.map(|b| ours_block(&b)).fold(0, u64::wrapping_add)
                }
                rtcp::Packet::ReceiverReport(rr) => {
                    u64::from(rr.ssrc)
                        ^ rr.blocks.map(|b| ours_block(&b)).fold(0, u64::wrapping_add)
                }
                rtcp::Packet::Sdes => 202,
                rtcp::Packet::Bye(b) => {
                    b.ssrcs().map(u64::from).sum::<u64>() ^ b.reason.map_or(0, |r| r.len() as u64)
                }
                rtcp::Packet::Other { packet_type } => u64::from(packet_type),
            };
    }
    sum
}

fn crate_sr(sr: &SenderReport) -> u64 {
    u64::from(sr.ssrc())
        ^ sr.ntp_timestamp()
        ^ u64::from(sr.rtp_timestamp())
        ^ u64::from(sr.packet_count()) << 3
        ^ u64::from(sr.octet_count()) << 9
        ^ sr.report_blocks()
            .map(|b| crate_block(&b))
            .fold(0, u64::wrapping_add)
}

fn crate_rr(rr: &ReceiverReport) -> u64 {
    u64::from(rr.ssrc())
        ^ rr.report_blocks()
            .map(|b| crate_block(&b))
            .fold(0, u64::wrapping_add)
}

fn crate_bye(b: &rtcp_types::Bye) -> u64 {
    b.ssrcs().map(u64::from).sum::<u64>() ^ b.reason().map_or(0, |r| r.len() as u64)
}

/// The crate as documented: `Compound::parse`, then iterate (every packet parsed, SDES too).
/// Plus the RFC 3550 A.2 check the crate lacks: the first packet is SR or RR.
fn crate_rtcp(buf: &[u8]) -> u64 {
    let Ok(c) = Compound::parse(buf) else {
        return 1;
    };
    if !matches!(buf[1], 200 | 201) {
        return 2;
    }
    let mut sum = u64::from(u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]));
    for p in c {
        sum = sum.rotate_left(5)
            ^ match p {
                Ok(CPacket::Sr(sr)) => crate_sr(&sr),
                Ok(CPacket::Rr(rr)) => crate_rr(&rr),
                Ok(CPacket::Sdes(s)) => s
                    .chunks()
                    .flat_map(|c| c.items())
                    .find(|i| i.type_() == SdesItem::CNAME)
                    .map_or(0, |i| i.value().len() as u64),
                Ok(CPacket::Bye(b)) => crate_bye(&b),
                Ok(other) => u64::from(other.type_()),
                Err(_) => return 3,
            };
    }
    sum
}

/// The crate without its allocating SDES parser: validate with `Compound::parse`, then walk the
/// packets by hand and parse only SR, RR and BYE with the crate's per-packet parsers.
fn crate_walk_rtcp(buf: &[u8]) -> u64 {
    if Compound::parse(buf).is_err() || !matches!(buf[1], 200 | 201) {
        return 1;
    }
    let mut sum = u64::from(u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]));
    let mut at = 0;
    while at < buf.len() {
        let len = (usize::from(u16::from_be_bytes([buf[at + 2], buf[at + 3]])) + 1) * 4;
        let pkt = &buf[at..at + len];
        sum = sum.rotate_left(5)
            ^ match pkt[1] {
                200 => match SenderReport::parse(pkt) {
                    Ok(sr) => crate_sr(&sr),
                    Err(_) => return 3,
                },
                201 => match ReceiverReport::parse(pkt) {
                    Ok(rr) => crate_rr(&rr),
                    Err(_) => return 3,
                },
                203 => match rtcp_types::Bye::parse(pkt) {
                    Ok(b) => crate_bye(&b),
                    Err(_) => return 3,
                },
                other => u64::from(other),
            };
        at += len;
    }
    sum
}

// Building: SR (our SSRC, sender info) + one report block (on the phone) + SDES CNAME.

fn sender_info() -> rtcp::SenderInfo {
    rtcp::SenderInfo {
        ntp_timestamp: 0xe9a1_b2c4_4000_0000,
        rtp_timestamp: 0x0010_2030,
        packet_count: 500,
        octet_count: 80_000,
    }
}

fn report_block() -> rtcp::ReportBlock {
    rtcp::ReportBlock {
        ssrc: PHONE,
        fraction_lost: 25,
        cumulative_lost: -3,
        extended_highest_seq: 0x0001_0005,
        jitter: 17,
        last_sr: 0xb2c3_8000,
        delay_since_last_sr: 65_536,
    }
}

/// Makes the written bytes observable without a per-byte loop that would dwarf the build.
fn checksum(out: &[u8]) -> u64 {
    let out = black_box(out);
    out.len() as u64 ^ u64::from(out[out.len() / 2]) << 8 ^ u64::from(out[out.len() - 1]) << 16
}

fn ours_build(_: &[u8]) -> u64 {
    let mut out = [0u8; 256];
    let (info, block) = black_box((sender_info(), report_block()));
    let n = rtcp::write_sender_report(&mut out, OURS, &info, Some(&block), OUR_CNAME).unwrap();
    checksum(&out[..n])
}

fn crate_sr_builder(
    info: &rtcp::SenderInfo,
    b: &rtcp::ReportBlock,
) -> rtcp_types::SenderReportBuilder {
    let lost = b.cumulative_lost.clamp(-0x80_0000, 0x7f_ffff) as u32 & 0xff_ffff;
    SenderReport::builder(OURS)
        .ntp_timestamp(info.ntp_timestamp)
        .rtp_timestamp(info.rtp_timestamp)
        .packet_count(info.packet_count)
        .octet_count(info.octet_count)
        .add_report_block(
            CBlock::builder(b.ssrc)
                .fraction_lost(b.fraction_lost)
                .cumulative_lost(lost)
                .extended_sequence_number(b.extended_highest_seq)
                .interarrival_jitter(b.jitter)
                .last_sender_report_timestamp(b.last_sr)
                .delay_since_last_sender_report_timestamp(b.delay_since_last_sr),
        )
}

fn crate_sdes_builder() -> rtcp_types::SdesBuilder<'static> {
    Sdes::builder()
        .add_chunk(SdesChunk::builder(OURS).add_item(SdesItem::builder(SdesItem::CNAME, OUR_CNAME)))
}

/// The crate's documented way to a compound packet: `CompoundBuilder`.
fn crate_build_compound(_: &[u8]) -> u64 {
    let mut out = [0u8; 256];
    let (info, block) = black_box((sender_info(), report_block()));
    let n = Compound::builder()
        .add_packet(crate_sr_builder(&info, &block))
        .add_packet(crate_sdes_builder())
        .write_into(&mut out)
        .unwrap();
    checksum(&out[..n])
}

/// Fewer allocations: the SR and the SDES builders written one after the other.
fn crate_build_parts(_: &[u8]) -> u64 {
    let mut out = [0u8; 256];
    let (info, block) = black_box((sender_info(), report_block()));
    let n = crate_sr_builder(&info, &block)
        .write_into(&mut out)
        .unwrap();
    let m = crate_sdes_builder().write_into(&mut out[n..]).unwrap();
    checksum(&out[..n + m])
}

/// The SR with its block alone (not a valid compound on its own: no SDES).
fn crate_build_sr_only(_: &[u8]) -> u64 {
    let mut out = [0u8; 256];
    let (info, block) = black_box((sender_info(), report_block()));
    let n = crate_sr_builder(&info, &block)
        .write_into(&mut out)
        .unwrap();
    checksum(&out[..n])
}

// ---------------------------------------------------------------------------------------------
// The table of measured entries. Each arm calls `bench` with the function item itself, so the
// call can be inlined the same way for ours and the crate.
// ---------------------------------------------------------------------------------------------

fn bench<F: Fn(&[u8]) -> u64>(f: F, input: &[u8], n: u64) -> (f64, u64) {
    let mut acc = 0u64;
    let start = Instant::now();
    for _ in 0..n {
        acc = acc.wrapping_add(f(black_box(input)));
    }
    let elapsed = start.elapsed();
    (elapsed.as_nanos() as f64 / n as f64, black_box(acc))
}

macro_rules! entries {
    ($( $case:literal, $imp:literal, $input:path, $f:path; )*) => {
        const ENTRIES: &[(&str, &str)] = &[$(($case, $imp)),*];

        /// Runs `n` iterations of one entry: (ns per iteration, checksum).
        fn run_entry(case: &str, imp: &str, n: u64) -> (f64, u64) {
            $(
                if case == $case && imp == $imp {
                    let input = $input();
                    return bench($f, &input, n);
                }
            )*
            panic!("no entry {case} / {imp}");
        }
    };
}

entries! {
    "RTP G.711 (172 B)", "ours", rtp_g711, ours_rtp;
    "RTP G.711 (172 B)", "rtp-types", rtp_g711, crate_rtp;
    "RTP 2 CSRC + ext (188 B)", "ours", rtp_csrc_ext, ours_rtp;
    "RTP 2 CSRC + ext (188 B)", "rtp-types", rtp_csrc_ext, crate_rtp;
    "RTP telephone-event (16 B)", "ours", rtp_dtmf, ours_rtp;
    "RTP telephone-event (16 B)", "rtp-types", rtp_dtmf, crate_rtp;
    "RTP malformed (ext overrun)", "ours", rtp_malformed, ours_rtp;
    "RTP malformed (ext overrun)", "rtp-types", rtp_malformed, crate_rtp;
    "RTCP SR+SDES (84 B)", "ours", rtcp_sr_sdes, ours_rtcp;
    "RTCP SR+SDES (84 B)", "rtcp-types Compound", rtcp_sr_sdes, crate_rtcp;
    "RTCP SR+SDES (84 B)", "rtcp-types, SDES skipped", rtcp_sr_sdes, crate_walk_rtcp;
    "RTCP RR+SDES+BYE (80 B)", "ours", rtcp_rr_sdes_bye, ours_rtcp;
    "RTCP RR+SDES+BYE (80 B)", "rtcp-types Compound", rtcp_rr_sdes_bye, crate_rtcp;
    "RTCP RR+SDES+BYE (80 B)", "rtcp-types, SDES skipped", rtcp_rr_sdes_bye, crate_walk_rtcp;
    "RTCP malformed (SR short)", "ours", rtcp_malformed, ours_rtcp;
    "RTCP malformed (SR short)", "rtcp-types Compound", rtcp_malformed, crate_rtcp;
    "RTCP malformed (SR short)", "rtcp-types, SDES skipped", rtcp_malformed, crate_walk_rtcp;
    "build SR+1 block+SDES (84 B)", "ours write_sender_report", none, ours_build;
    "build SR+1 block+SDES (84 B)", "rtcp-types CompoundBuilder", none, crate_build_compound;
    "build SR+1 block+SDES (84 B)", "rtcp-types SR, SDES builders", none, crate_build_parts;
    "build SR+1 block only (52 B)", "rtcp-types SR builder", none, crate_build_sr_only;
}

// ---------------------------------------------------------------------------------------------
// Agreement
// ---------------------------------------------------------------------------------------------

/// The RTP fields the receiver uses, plus CSRCs, extension and padding.
#[derive(Debug, PartialEq)]
struct RtpSeen {
    ssrc: u32,
    seq: u16,
    timestamp: u32,
    pt: u8,
    marker: bool,
    payload_offset: usize,
    payload_len: usize,
    csrcs: Vec<u32>,
    extension: Option<(u16, Vec<u8>)>,
    padding: u8,
}

fn ours_rtp_seen(buf: &[u8]) -> Option<RtpSeen> {
    let p = rtp_in::parse(buf).ok()?;
    Some(RtpSeen {
        ssrc: p.ssrc,
        seq: p.seq,
        timestamp: p.timestamp,
        pt: p.payload_type,
        marker: p.marker,
        payload_offset: offset_in(buf, p.payload) as usize,
        payload_len: p.payload.len(),
        csrcs: p.csrcs().collect(),
        extension: p.extension.map(|e| (e.profile, e.data.to_vec())),
        padding: p.padding,
    })
}

fn crate_rtp_seen(buf: &[u8]) -> Option<RtpSeen> {
    let p = rtp_types::RtpPacket::parse(buf).ok()?;
    Some(RtpSeen {
        ssrc: p.ssrc(),
        seq: p.sequence_number(),
        timestamp: p.timestamp(),
        pt: p.payload_type(),
        marker: p.marker_bit(),
        payload_offset: p.payload_offset(),
        payload_len: p.payload_len(),
        csrcs: p.csrc().collect(),
        extension: p.extension().map(|(profile, d)| (profile, d.to_vec())),
        padding: p.padding().unwrap_or(0),
    })
}

#[derive(Debug, PartialEq)]
struct BlockSeen {
    ssrc: u32,
    fraction: u8,
    /// Sign-extended from 24 bits.
    lost: i32,
    ext_seq: u32,
    jitter: u32,
    lsr: u32,
    dlsr: u32,
}

#[derive(Debug, PartialEq)]
enum RtcpSeen {
    Sr {
        ssrc: u32,
        info: (u64, u32, u32, u32),
        blocks: Vec<BlockSeen>,
    },
    Rr {
        ssrc: u32,
        blocks: Vec<BlockSeen>,
    },
    /// Ours skips SDES: the CNAMEs are the crate's, checked against the known value.
    Sdes,
    Bye {
        ssrcs: Vec<u32>,
        reason: Option<Vec<u8>>,
    },
    Other(u8),
}

fn ours_rtcp_seen(buf: &[u8]) -> Result<Vec<RtcpSeen>, String> {
    let c = rtcp::parse_compound(buf).map_err(|e| format!("{e:?}"))?;
    let blocks = |bs: rtcp::ReportBlocks| {
        bs.map(|b| BlockSeen {
            ssrc: b.ssrc,
            fraction: b.fraction_lost,
            lost: b.cumulative_lost,
            ext_seq: b.extended_highest_seq,
            jitter: b.jitter,
            lsr: b.last_sr,
            dlsr: b.delay_since_last_sr,
        })
        .collect()
    };
    Ok(c.packets()
        .map(|p| match p {
            rtcp::Packet::SenderReport(sr) => RtcpSeen::Sr {
                ssrc: sr.ssrc,
                info: (
                    sr.info.ntp_timestamp,
                    sr.info.rtp_timestamp,
                    sr.info.packet_count,
                    sr.info.octet_count,
                ),
                blocks: blocks(sr.blocks),
            },
            rtcp::Packet::ReceiverReport(rr) => RtcpSeen::Rr {
                ssrc: rr.ssrc,
                blocks: blocks(rr.blocks),
            },
            rtcp::Packet::Sdes => RtcpSeen::Sdes,
            rtcp::Packet::Bye(b) => RtcpSeen::Bye {
                ssrcs: b.ssrcs().collect(),
                reason: b.reason.map(<[u8]>::to_vec),
            },
            rtcp::Packet::Other { packet_type } => RtcpSeen::Other(packet_type),
        })
        .collect())
}

fn crate_block_seen(b: CBlock) -> BlockSeen {
    BlockSeen {
        ssrc: b.ssrc(),
        fraction: b.fraction_lost(),
        lost: ((b.cumulative_lost() << 8) as i32) >> 8,
        ext_seq: b.extended_sequence_number(),
        jitter: b.interarrival_jitter(),
        lsr: b.last_sender_report_timestamp(),
        dlsr: b.delay_since_last_sender_report_timestamp(),
    }
}

/// The crate's view, and the (SSRC, CNAME) pairs of its SDES packets.
type CrateView = (Vec<RtcpSeen>, Vec<(u32, Vec<u8>)>);

fn crate_rtcp_seen(buf: &[u8]) -> Result<CrateView, String> {
    let c = Compound::parse(buf).map_err(|e| format!("{e:?}"))?;
    let mut seen = Vec::new();
    let mut cnames = Vec::new();
    for p in c {
        seen.push(match p.map_err(|e| format!("{e:?}"))? {
            CPacket::Sr(sr) => RtcpSeen::Sr {
                ssrc: sr.ssrc(),
                info: (
                    sr.ntp_timestamp(),
                    sr.rtp_timestamp(),
                    sr.packet_count(),
                    sr.octet_count(),
                ),
                blocks: sr.report_blocks().map(crate_block_seen).collect(),
            },
            CPacket::Rr(rr) => RtcpSeen::Rr {
                ssrc: rr.ssrc(),
                blocks: rr.report_blocks().map(crate_block_seen).collect(),
            },
            CPacket::Sdes(s) => {
                for chunk in s.chunks() {
                    for item in chunk.items().filter(|i| i.type_() == SdesItem::CNAME) {
                        cnames.push((chunk.ssrc(), item.value().to_vec()));
                    }
                }
                RtcpSeen::Sdes
            }
            CPacket::Bye(b) => RtcpSeen::Bye {
                ssrcs: b.ssrcs().collect(),
                reason: b.reason().map(<[u8]>::to_vec),
            },
            other => RtcpSeen::Other(other.type_()),
        });
    }
    Ok((seen, cnames))
}

/// Malformed compounds, from `rtcp.rs`'s tests and RFC 3550 A.2.
fn malformed_rtcp() -> Vec<(&'static str, Vec<u8>)> {
    let good = rtcp_sr_sdes();
    let sr_len = 52;
    let with = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut v = good.clone();
        f(&mut v);
        v
    };
    let last = good.len() - 1;
    vec![
        ("empty", vec![]),
        ("3 bytes", good[..3].to_vec()),
        ("version 1 in the SR", with(&|v| v[0] = 0x41)),
        (
            "version 0 in the SDES (2nd packet)",
            with(&|v| v[sr_len] = 0x01),
        ),
        ("SDES first (A.2: must be SR/RR)", good[sr_len..].to_vec()),
        ("SR length +1 word", with(&|v| v[3] = 13)),
        ("SR length -1 word", with(&|v| v[3] = 11)),
        ("SR length overruns datagram", with(&|v| v[3] = 200)),
        ("SR report count 2, room for 1", with(&|v| v[0] = 0x82)),
        ("padding bit on the SR (not last)", with(&|v| v[0] |= 0x20)),
        ("padding bit on last, count 0", with(&|v| v[sr_len] |= 0x20)),
        (
            "padding bit on last, count 29 > 28",
            with(&|v| {
                v[sr_len] |= 0x20;
                v[last] = 29;
            }),
        ),
        (
            "BYE reason overruns packet",
            vec![
                0x80, 201, 0, 1, 0, 0, 0, 9, 0x81, 203, 0, 2, 0, 0, 0, 9, 5, b'x', 0, 0,
            ],
        ),
        ("2 trailing bytes", with(&|v| v.extend_from_slice(&[0, 0]))),
        (
            "SDES item runs past chunk",
            with(&|v| v[sr_len + 9] = 40), // CNAME length 40 in a 28-byte chunk
        ),
    ]
}

fn malformed_rtp() -> Vec<(&'static str, Vec<u8>)> {
    let good = rtp_g711();
    let with = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut v = good.clone();
        f(&mut v);
        v
    };
    vec![
        ("empty", vec![]),
        ("11 bytes", good[..11].to_vec()),
        ("version 1", with(&|v| v[0] = 0x40)),
        ("version 0", with(&|v| v[0] = 0x00)),
        ("3 CSRCs in 20 bytes", {
            let mut v = good[..20].to_vec();
            v[0] = 0x83;
            v
        }),
        ("extension header cut", {
            let mut v = good[..14].to_vec();
            v[0] = 0x90;
            v
        }),
        ("extension overruns", rtp_malformed()),
        (
            "padding count 0",
            with(&|v| {
                v[0] = 0xa0;
                *v.last_mut().unwrap() = 0;
            }),
        ),
        (
            "padding count 161 > 160",
            with(&|v| {
                v[0] = 0xa0;
                *v.last_mut().unwrap() = 161;
            }),
        ),
        ("padding bit, header only", {
            let mut v = good[..12].to_vec();
            v[0] = 0xa0;
            v
        }),
    ]
}

/// Checks agreement; prints each case; returns the number of disagreements.
fn check_agreement() -> usize {
    let mut disagreements = 0;
    println!("== Agreement (ours vs crate, on the fields listed in the module docs)");
    for (name, buf) in [
        ("RTP G.711", rtp_g711()),
        ("RTP 2 CSRC + ext", rtp_csrc_ext()),
        ("RTP telephone-event", rtp_dtmf()),
    ] {
        let (a, b) = (ours_rtp_seen(&buf), crate_rtp_seen(&buf));
        let ok = a.is_some() && a == b;
        disagreements += usize::from(!ok);
        println!("  {name:<40} {}", if ok { "agree" } else { "DISAGREE" });
        if !ok {
            println!("    ours:  {a:?}\n    crate: {b:?}");
        }
    }
    // The padded variant of the CSRC packet: 4 bytes of padding.
    let mut padded = rtp_csrc_ext();
    padded[0] |= 0x20;
    padded.extend_from_slice(&[0, 0, 0, 4]);
    let (a, b) = (ours_rtp_seen(&padded), crate_rtp_seen(&padded));
    let ok = a.is_some() && a == b;
    disagreements += usize::from(!ok);
    println!(
        "  {:<40} {}",
        "RTP 2 CSRC + ext + 4 padding",
        if ok { "agree" } else { "DISAGREE" }
    );
    for (name, buf) in malformed_rtp() {
        let (a, b) = (rtp_in::parse(&buf), rtp_types::RtpPacket::parse(&buf));
        let ok = a.is_err() && b.is_err();
        disagreements += usize::from(!ok);
        println!(
            "  RTP malformed: {name:<25} ours {:<45} crate {:?}{}",
            format!("{:?}", a.err()),
            b.err(),
            if ok { "" } else { "  DISAGREE" }
        );
    }

    for (name, buf) in [
        ("RTCP SR+SDES", rtcp_sr_sdes()),
        ("RTCP RR+SDES+BYE", rtcp_rr_sdes_bye()),
    ] {
        let a = ours_rtcp_seen(&buf);
        let b = crate_rtcp_seen(&buf);
        let fields_ok = matches!((&a, &b), (Ok(x), Ok((y, _))) if x == y);
        let cname_ok = matches!(&b, Ok((_, c)) if c == &[(PHONE, PHONE_CNAME.as_bytes().to_vec())]);
        let walk_ok = !matches!(crate_walk_rtcp(&buf), 1 | 3);
        let ok = fields_ok && cname_ok && walk_ok;
        disagreements += usize::from(!ok);
        println!(
            "  {name:<40} {} (crate CNAME {})",
            if fields_ok { "agree" } else { "DISAGREE" },
            if cname_ok { "= expected" } else { "WRONG" }
        );
        if !fields_ok {
            println!("    ours:  {a:?}\n    crate: {b:?}");
        }
    }
    for (name, buf) in malformed_rtcp() {
        let a = ours_rtcp_seen(&buf);
        let b = crate_rtcp_seen(&buf);
        // The crate variants in the timed set add the A.2 first-packet check.
        let walk_rejects = matches!(crate_walk_rtcp(&buf), 1 | 3);
        let ok = a.is_err() && b.is_err();
        disagreements += usize::from(!ok);
        println!(
            "  RTCP malformed: {name:<36} ours {:<50} crate {:<45} walk {}{}",
            match &a {
                Ok(_) => "ACCEPTED".to_string(),
                Err(e) => e.clone(),
            },
            match &b {
                Ok(_) => "ACCEPTED".to_string(),
                Err(e) => e.clone(),
            },
            if walk_rejects { "rejects" } else { "ACCEPTS" },
            if ok { "" } else { "  DISAGREE" }
        );
    }
    // Every truncation of the SR+SDES compound: only the SR alone (52 bytes) is valid.
    let good = rtcp_sr_sdes();
    let mut trunc_disagree = Vec::new();
    for n in 0..good.len() {
        let a = ours_rtcp_seen(&good[..n]).is_ok();
        let b = crate_rtcp_seen(&good[..n]).is_ok();
        if a != b {
            trunc_disagree.push((n, a, b));
        }
    }
    disagreements += trunc_disagree.len();
    println!(
        "  RTCP SR+SDES truncated to 0..{} bytes: {} disagreement(s) {:?}",
        good.len() - 1,
        trunc_disagree.len(),
        trunc_disagree
    );

    // Building: the bytes must be identical.
    let mut ours = [0u8; 256];
    let n = rtcp::write_sender_report(
        &mut ours,
        OURS,
        &sender_info(),
        Some(&report_block()),
        OUR_CNAME,
    )
    .unwrap();
    let mut theirs = [0u8; 256];
    let m = Compound::builder()
        .add_packet(crate_sr_builder(&sender_info(), &report_block()))
        .add_packet(crate_sdes_builder())
        .write_into(&mut theirs)
        .unwrap();
    let ok = ours[..n] == theirs[..m];
    disagreements += usize::from(!ok);
    println!(
        "  build SR+block+SDES: ours {n} B, crate {m} B: {}",
        if ok { "byte-identical" } else { "DIFFERENT" }
    );
    disagreements
}

/// Random structured compounds (as in `rtcp.rs`'s fuzz test): how often do ours and the crate
/// (with the A.2 first-packet check added) differ on accept/reject, and one example of each.
fn fuzz_rtcp() {
    let mut s = 0x1234_5678_9abc_def1u64;
    let mut rng = move || {
        s ^= s >> 12;
        s ^= s << 25;
        s ^= s >> 27;
        s.wrapping_mul(0x2545_f491_4f6c_dd1d)
    };
    let (mut both_ok, mut ours_only, mut crate_only) = (0, 0, 0);
    // Where only the crate accepts: our error kind -> (count, one example).
    let mut kinds: Vec<(String, usize, Vec<u8>)> = Vec::new();
    let mut ex_ours = None;
    for _ in 0..200_000 {
        let len = (rng() % 96) as usize;
        let mut v: Vec<u8> = (0..len).map(|_| rng() as u8).collect();
        if len >= 4 {
            v[0] = 0x80 | (v[0] & 0x23);
            v[1] = [200, 201, 203, 202][(v[1] % 4) as usize];
            v[2] = 0;
            v[3] %= 24;
        }
        let a = ours_rtcp_seen(&v);
        let b = crate_rtcp_seen(&v).and_then(|x| {
            if matches!(v[1], 200 | 201) {
                Ok(x)
            } else {
                Err("first packet not SR/RR".into())
            }
        });
        match (&a, &b) {
            (Ok(x), Ok((y, _))) => {
                both_ok += 1;
                assert_eq!(x, y, "{v:02x?}");
            }
            (Ok(_), Err(e)) => {
                ours_only += 1;
                ex_ours.get_or_insert((v.clone(), e.clone()));
            }
            (Err(e), Ok(_)) => {
                crate_only += 1;
                let kind = e.split([' ', '(']).next().unwrap_or("").to_string();
                match kinds.iter_mut().find(|k| k.0 == kind) {
                    Some(k) => k.1 += 1,
                    None => kinds.push((kind, 1, v.clone())),
                }
            }
            _ => {}
        }
    }
    println!(
        "  RTCP fuzz, 200,000 structured inputs: both accept {both_ok} (fields equal), \
         only ours accepts {ours_only}, only the crate (+ A.2 first-packet check) accepts \
         {crate_only}"
    );
    if let Some((v, e)) = ex_ours {
        println!("    e.g. ours accepts, crate: {e}: {v:02x?}");
    }
    for (kind, count, v) in kinds {
        println!("    crate accepts, ours says {kind}: {count}, e.g. {v:02x?}");
    }
}

/// Random RTP (as in `rtp_in.rs`'s differential test): accept/reject and fields compared.
fn fuzz_rtp() {
    let mut s = 0x9e37_79b9_7f4a_7c15u64;
    let mut rng = move || {
        s ^= s >> 12;
        s ^= s << 25;
        s ^= s >> 27;
        s.wrapping_mul(0x2545_f491_4f6c_dd1d)
    };
    let (mut ok, mut differ) = (0, 0);
    for _ in 0..200_000 {
        let len = (rng() % 64) as usize;
        let mut buf: Vec<u8> = (0..len).map(|_| rng() as u8).collect();
        if len > 0 && !rng().is_multiple_of(4) {
            buf[0] = 0x80 | (buf[0] & 0x33);
        }
        if len > 0 && rng().is_multiple_of(2) {
            let ext_at = 12 + 4 * usize::from(buf[0] & 0x0f);
            if ext_at + 4 <= len {
                buf[ext_at + 2] = 0;
                buf[ext_at + 3] %= 8;
            }
        }
        let (a, b) = (ours_rtp_seen(&buf), crate_rtp_seen(&buf));
        ok += usize::from(a.is_some());
        differ += usize::from(a != b);
    }
    println!(
        "  RTP fuzz, 200,000 inputs: {ok} valid, {differ} disagreement(s) on accept/reject or \
         fields"
    );
}

// ---------------------------------------------------------------------------------------------
// Allocations under DHAT
// ---------------------------------------------------------------------------------------------

const ALLOC_N1: u64 = 1_000;
const ALLOC_N2: u64 = 11_000;

fn dhat_blocks(case: &str, imp: &str, n: u64) -> Option<u64> {
    let exe = std::env::current_exe().ok()?;
    let out = Command::new("valgrind")
        .args(["--tool=dhat", "--mode=heap", "--dhat-out-file=/dev/null"])
        .arg(exe)
        .args(["--alloc-child", case, imp, &n.to_string()])
        .output()
        .ok()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = stderr.lines().find(|l| l.contains("Total:"))?;
    // "==123== Total:     3,696 bytes in 13 blocks"
    let blocks = line.split(" in ").nth(1)?.split_whitespace().next()?;
    blocks.replace(',', "").parse().ok()
}

fn allocs_per_packet(case: &str, imp: &str) -> Option<f64> {
    let a = dhat_blocks(case, imp, ALLOC_N1)?;
    let b = dhat_blocks(case, imp, ALLOC_N2)?;
    Some((b as f64 - a as f64) / (ALLOC_N2 - ALLOC_N1) as f64)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--alloc-child") {
        let n: u64 = args[4].parse().expect("iterations");
        let (_, sum) = run_entry(&args[2], &args[3], n);
        black_box(sum);
        return;
    }
    let quick = args.iter().any(|a| a == "--quick");
    let valgrind = !args.iter().any(|a| a == "--no-valgrind")
        && Command::new("valgrind").arg("--version").output().is_ok();

    let disagreements = check_agreement();
    fuzz_rtp();
    fuzz_rtcp();
    println!("  disagreements on the fixed cases: {disagreements}\n");

    let (n, runs) = if quick { (100_000, 1) } else { (1_000_000, 5) };
    println!(
        "== ns/packet (median and best of {runs} runs of {n}), allocations/packet ({})",
        if valgrind {
            "DHAT total blocks, (11,000 - 1,000 iterations) / 10,000"
        } else {
            "valgrind not run"
        }
    );
    println!(
        "| {:<28} | {:<30} | {:>9} | {:>9} | {:>11} |",
        "case", "implementation", "ns median", "ns best", "allocs/pkt"
    );
    println!(
        "|{:-<30}|{:-<32}|{:->11}|{:->11}|{:->13}|",
        "", "", "", "", ""
    );
    for (case, imp) in ENTRIES {
        // Warm up, then measure.
        run_entry(case, imp, n / 10);
        let mut ns: Vec<f64> = (0..runs).map(|_| run_entry(case, imp, n).0).collect();
        ns.sort_by(f64::total_cmp);
        let allocs = if valgrind {
            allocs_per_packet(case, imp).map_or("error".to_string(), |a| format!("{a:.2}"))
        } else {
            "n/a".to_string()
        };
        println!(
            "| {case:<28} | {imp:<30} | {:>9.1} | {:>9.1} | {allocs:>11} |",
            ns[ns.len() / 2],
            ns[0]
        );
    }
}
