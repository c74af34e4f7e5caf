//! What the media receiver does with datagrams arriving on a session's RTP port, in simulated
//! time: RTP/RTCP demultiplexing (RFC 5761), RTP parsing, receiver statistics (RFC 3550 A.1,
//! A.3, A.8: sequence, loss, jitter), RFC 4733 telephone-events into digits, RTCP compound
//! validation and report blocks, the report we would send back, and the MOS estimate.
//!
//! Input: records of `[advance ms][telephone-event payload type][length][datagram]`.
#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use milliwatt_media_core::dtmf::DtmfDetector;
use milliwatt_media_core::quality::ReceiverStats;
use milliwatt_media_core::rtcp::{self, Packet, ReportBlock, SenderInfo};
use milliwatt_media_core::rtp_in::{self, PacketKind};

const CLOCK_RATE: u32 = 8_000;

fuzz_target!(|data: &[u8]| {
    let start = Instant::now();
    let mut now = start;
    let mut stats: Option<(u32, ReceiverStats)> = None;
    let mut dtmf = DtmfDetector::new();
    let mut rest = data;
    while let [advance, dtmf_pt, len, tail @ ..] = rest {
        let len = usize::from(*len).min(tail.len());
        let (datagram, next) = tail.split_at(len);
        rest = next;
        now += Duration::from_millis(u64::from(*advance));
        match rtp_in::classify(datagram) {
            PacketKind::Other => {}
            PacketKind::Rtcp => {
                let Ok(compound) = rtcp::parse_compound(datagram) else {
                    continue;
                };
                let _ = compound.ssrc();
                for packet in compound.packets() {
                    let blocks = match packet {
                        Packet::SenderReport(sr) => {
                            if let Some((_, s)) = stats.as_mut() {
                                s.on_sender_report(sr.info.ntp_timestamp, now);
                            }
                            sr.blocks
                        }
                        Packet::ReceiverReport(rr) => rr.blocks,
                        Packet::Bye(bye) => {
                            let _ = bye.ssrcs().count();
                            continue;
                        }
                        _ => continue,
                    };
                    for b in blocks {
                        let _ =
                            rtcp::round_trip(rtcp::ntp_timestamp(Duration::from_secs(1 << 31)), &b);
                    }
                }
            }
            PacketKind::Rtp => {
                let Ok(packet) = rtp_in::parse(datagram) else {
                    continue;
                };
                if stats.as_ref().map(|(ssrc, _)| *ssrc) != Some(packet.ssrc()) {
                    stats = Some((packet.ssrc(), ReceiverStats::new(CLOCK_RATE)));
                }
                if let Some((_, s)) = stats.as_mut() {
                    s.on_packet(packet.sequence_number(), packet.timestamp(), now);
                }
                if packet.payload_type() == *dtmf_pt & 0x7f {
                    let _ = dtmf.handle_packet(
                        now,
                        packet.timestamp(),
                        packet.marker_bit(),
                        packet.payload(),
                    );
                }
            }
        }
        while let Some(digit) = dtmf.poll(now) {
            let _ = digit.duration_time(CLOCK_RATE);
        }
        assert!(
            dtmf.poll_timeout().is_none_or(|t| t >= start),
            "a DTMF timeout before the first packet"
        );
    }
    // The report we would send back (parsed again: the block must survive the round trip),
    // and what the quality line shows.
    if let Some((ssrc, s)) = stats.as_mut() {
        let block = ReportBlock::from_stats(*ssrc, s, now);
        let info = SenderInfo {
            ntp_timestamp: rtcp::ntp_timestamp(Duration::from_secs(1 << 31)),
            rtp_timestamp: 0,
            packet_count: 0,
            octet_count: 0,
        };
        let mut buf = [0u8; 1500];
        let len = rtcp::write_sender_report(&mut buf, 1, &info, Some(&block), "milliwatt")
            .expect("a sender report with one block fits 1500 bytes");
        let compound = rtcp::parse_compound(&buf[..len]).expect("our own report parses");
        let Some(Packet::SenderReport(sr)) = compound.packets().next() else {
            panic!("our report does not start with an SR");
        };
        assert_eq!(
            sr.blocks.collect::<Vec<_>>(),
            vec![block],
            "the block changed on the wire"
        );
        let loss = s.loss_percent();
        assert!((0.0..=100.0).contains(&loss), "loss {loss} % out of range");
        let mos = s.mos(0.0);
        assert!((1.0..=4.5).contains(&mos), "MOS {mos} out of range");
        assert!(s.jitter_ms() >= 0.0, "negative jitter");
        let _ = (s.received(), s.expected(), s.lost(), s.cumulative_lost());
    }
});
