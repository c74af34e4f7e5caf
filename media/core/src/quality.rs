//! Receive statistics of one RTP source (RFC 3550 Appendix A) and a MOS estimate from them
//! (ITU-T G.107 E-model, simplified). Pure: the arrival time of each packet is passed in.
//!
//! - Sequence numbers: A.1 (`update_seq`): a source is valid after `MIN_SEQUENTIAL` packets in
//!   sequence (probation); a jump ahead of less than `MAX_DROPOUT` is a gap (loss), a step back of
//!   at most `MAX_MISORDER` a late or duplicate packet, anything else a bad packet, unless the next
//!   one follows it (the source restarted its sequence: statistics start over).
//! - Expected, lost and the fraction lost of an interval: A.3. The cumulative loss is negative
//!   when duplicates outnumber losses (RFC 3550 §6.4.1); [`ReceiverStats::lost`] clamps at 0 for
//!   display, [`ReceiverStats::lost_rtcp`] to the 24-bit signed field of a report block.
//! - Interarrival jitter: A.8, `J += (|D| - J) / 16`, for every packet that passed A.1 (late and
//!   duplicate ones included, as in A.8), kept as an `f64` in timestamp units.
//! - Last SR received (for LSR and DLSR of our report blocks, §6.4.1).
//!
//! One `ReceiverStats` per SSRC: when the SSRC changes, start a new one.

use std::time::Instant;

/// The RTP clock rate of G.711 (and of telephone-event/8000).
pub const G711_CLOCK_RATE: u32 = 8000;

const RTP_SEQ_MOD: u32 = 1 << 16;
const MAX_DROPOUT: u16 = 3000;
const MAX_MISORDER: u16 = 100;
const MIN_SEQUENTIAL: u8 = 2;

/// What [`ReceiverStats::on_packet`] made of a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeqVerdict {
    /// Counted (in order, after a gap, late or a duplicate).
    Valid,
    /// The source is not yet validated (fewer than `MIN_SEQUENTIAL` packets in sequence).
    Probation,
    /// A jump too large to be loss or misordering; if the next packet follows it, the source is
    /// taken to have restarted and the statistics start over.
    Bad,
}

/// Loss over the interval since the previous call of [`ReceiverStats::take_interval`] (A.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interval {
    pub expected: u64,
    pub received: u64,
    /// Expected minus received; negative with duplicates.
    pub lost: i64,
    /// Fraction lost as RTCP carries it: lost / expected × 256, 0 when nothing was lost.
    pub fraction_lost: u8,
}

impl Interval {
    pub fn loss_percent(&self) -> f64 {
        f64::from(self.fraction_lost) * 100.0 / 256.0
    }
}

#[derive(Debug, Clone)]
pub struct ReceiverStats {
    clock_rate: u32,
    /// False until the first packet.
    started: bool,
    max_seq: u16,
    /// Shifted count of sequence number cycles (a multiple of 65536).
    cycles: u32,
    base_seq: u32,
    bad_seq: u32,
    probation: u8,
    received: u64,
    expected_prior: u64,
    received_prior: u64,
    /// Arrival and RTP timestamp of the previous counted packet (A.8).
    last: Option<(Instant, u32)>,
    jitter: f64,
    /// Middle 32 bits of the NTP timestamp of the last SR received, and when it arrived.
    last_sr: Option<(u32, Instant)>,
}

impl ReceiverStats {
    pub fn new(clock_rate: u32) -> Self {
        ReceiverStats {
            clock_rate,
            started: false,
            max_seq: 0,
            cycles: 0,
            base_seq: 0,
            bad_seq: RTP_SEQ_MOD + 1,
            probation: MIN_SEQUENTIAL,
            received: 0,
            expected_prior: 0,
            received_prior: 0,
            last: None,
            jitter: 0.0,
            last_sr: None,
        }
    }

    /// A.1 `init_seq`.
    fn init_seq(&mut self, seq: u16) {
        self.base_seq = u32::from(seq);
        self.max_seq = seq;
        self.bad_seq = RTP_SEQ_MOD + 1;
        self.cycles = 0;
        self.received = 0;
        self.received_prior = 0;
        self.expected_prior = 0;
        self.last = None;
        self.jitter = 0.0;
    }

    /// A.1 `update_seq`, then A.8 for counted packets.
    pub fn on_packet(&mut self, seq: u16, rtp_timestamp: u32, arrival: Instant) -> SeqVerdict {
        if !self.started {
            self.started = true;
            self.init_seq(seq);
            self.max_seq = seq.wrapping_sub(1);
            self.probation = MIN_SEQUENTIAL;
        }
        let udelta = seq.wrapping_sub(self.max_seq);
        if self.probation > 0 {
            // Packets must be in sequence to pass probation.
            if seq == self.max_seq.wrapping_add(1) {
                self.probation -= 1;
                self.max_seq = seq;
                if self.probation == 0 {
                    self.init_seq(seq);
                    self.count(rtp_timestamp, arrival);
                    return SeqVerdict::Valid;
                }
            } else {
                self.probation = MIN_SEQUENTIAL - 1;
                self.max_seq = seq;
            }
            return SeqVerdict::Probation;
        } else if udelta < MAX_DROPOUT {
            // In order, with a permissible gap.
            if seq < self.max_seq {
                self.cycles = self.cycles.wrapping_add(RTP_SEQ_MOD);
            }
            self.max_seq = seq;
        } else if u32::from(udelta) <= RTP_SEQ_MOD - u32::from(MAX_MISORDER) {
            // A very large jump.
            if u32::from(seq) == self.bad_seq {
                // Two sequential packets: the other side restarted without telling us.
                self.init_seq(seq);
            } else {
                self.bad_seq = (u32::from(seq) + 1) & (RTP_SEQ_MOD - 1);
                return SeqVerdict::Bad;
            }
        }
        // Otherwise a duplicate or reordered packet: counted, max_seq unchanged.
        self.count(rtp_timestamp, arrival);
        SeqVerdict::Valid
    }

    fn count(&mut self, rtp_timestamp: u32, arrival: Instant) {
        self.received += 1;
        if let Some((prev_arrival, prev_ts)) = self.last {
            // D(i,j) = (Rj - Ri) - (Sj - Si), in timestamp units (A.8).
            let arrival_delta = signed_secs(arrival, prev_arrival) * f64::from(self.clock_rate);
            let ts_delta = f64::from(rtp_timestamp.wrapping_sub(prev_ts) as i32);
            let d = (arrival_delta - ts_delta).abs();
            self.jitter += (d - self.jitter) / 16.0;
        }
        self.last = Some((arrival, rtp_timestamp));
    }

    /// Records a Sender Report from this source (its 64-bit NTP timestamp), for LSR/DLSR.
    pub fn on_sender_report(&mut self, ntp_timestamp: u64, arrival: Instant) {
        self.last_sr = Some(((ntp_timestamp >> 16) as u32, arrival));
    }

    /// LSR and DLSR for a report block sent at `now` (RFC 3550 §6.4.1): the middle 32 bits of the
    /// last SR's NTP timestamp and the delay since it arrived in 1/65536 s; (0, 0) without an SR.
    pub fn lsr_dlsr(&self, now: Instant) -> (u32, u32) {
        match self.last_sr {
            Some((lsr, at)) => {
                let delay = now.saturating_duration_since(at);
                let units = delay.as_nanos() * 65_536 / 1_000_000_000;
                (lsr, u32::try_from(units).unwrap_or(u32::MAX))
            }
            None => (0, 0),
        }
    }

    /// True once the source passed probation.
    pub fn is_valid(&self) -> bool {
        self.started && self.probation == 0
    }

    pub fn clock_rate(&self) -> u32 {
        self.clock_rate
    }

    /// Extended highest sequence number received (cycles in the upper 16 bits).
    pub fn extended_highest_seq(&self) -> u32 {
        self.cycles.wrapping_add(u32::from(self.max_seq))
    }

    /// Packets counted (including duplicates) since the source was validated.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// Packets expected: highest minus first sequence number, plus one.
    pub fn expected(&self) -> u64 {
        if !self.is_valid() {
            return 0;
        }
        (u64::from(self.cycles) + u64::from(self.max_seq) + 1)
            .saturating_sub(u64::from(self.base_seq))
    }

    /// Cumulative packets lost: expected minus received, negative with duplicates.
    pub fn cumulative_lost(&self) -> i64 {
        self.expected() as i64 - self.received as i64
    }

    /// Cumulative loss for display: never below zero.
    pub fn lost(&self) -> u64 {
        self.cumulative_lost().max(0) as u64
    }

    /// Cumulative loss clamped to the 24-bit signed field of an RTCP report block.
    pub fn lost_rtcp(&self) -> i32 {
        self.cumulative_lost().clamp(-0x80_0000, 0x7f_ffff) as i32
    }

    /// Cumulative loss in percent of expected (0 when nothing is expected yet).
    pub fn loss_percent(&self) -> f64 {
        match self.expected() {
            0 => 0.0,
            e => self.lost() as f64 * 100.0 / e as f64,
        }
    }

    /// Loss over the interval since the previous call (A.3); starts the next interval.
    pub fn take_interval(&mut self) -> Interval {
        let expected_total = self.expected();
        let expected = expected_total.saturating_sub(self.expected_prior);
        self.expected_prior = expected_total;
        let received = self.received - self.received_prior;
        self.received_prior = self.received;
        let lost = expected as i64 - received as i64;
        let fraction_lost = if expected == 0 || lost <= 0 {
            0
        } else {
            // lost <= expected, so the quotient is at most 256; 256 (all lost) saturates to 255.
            ((lost as u64 * 256) / expected).min(255) as u8
        };
        Interval {
            expected,
            received,
            lost,
            fraction_lost,
        }
    }

    /// Interarrival jitter in timestamp units.
    pub fn jitter(&self) -> f64 {
        self.jitter
    }

    /// Interarrival jitter as a report block carries it (timestamp units, integer).
    pub fn jitter_rtcp(&self) -> u32 {
        self.jitter.round() as u32
    }

    /// Interarrival jitter in milliseconds.
    pub fn jitter_ms(&self) -> f64 {
        self.jitter * 1000.0 / f64::from(self.clock_rate)
    }

    /// MOS from the cumulative loss and the current jitter, given a one-way delay (see [`mos`]).
    pub fn mos(&self, one_way_delay_ms: f64) -> f64 {
        mos(self.loss_percent(), self.jitter_ms(), one_way_delay_ms)
    }
}

/// `a - b` in seconds, negative when `a` is earlier.
fn signed_secs(a: Instant, b: Instant) -> f64 {
    match a.checked_duration_since(b) {
        Some(d) => d.as_secs_f64(),
        None => -b.duration_since(a).as_secs_f64(),
    }
}

/// Packet-loss robustness factor Bpl of G.711 with packet loss concealment (ITU-T G.113
/// Appendix I; 4.3 without PLC). We assume PLC: every current G.711 endpoint conceals loss
/// (G.711 Appendix I), and the figure should say what a caller hears.
pub const BPL_G711_PLC: f64 = 25.1;
/// Equipment impairment Ie of G.711 (G.113 Appendix I).
pub const IE_G711: f64 = 0.0;

/// E-model transmission rating R (ITU-T G.107, simplified as commonly done):
/// `R = 93.2 - Id - Ie_eff`, where
/// - the effective latency is `d = one_way_delay + 2 × jitter + 10 ms` (the jitter buffer holds
///   about two jitters; 10 ms for the codec),
/// - `Id = 0.024 d + 0.11 (d - 177.3) H(d - 177.3)` (Cole and Rosenbluth's fit of G.107's Id),
/// - `Ie_eff = Ie + (95 - Ie) × Ppl / (Ppl + Bpl)` with random loss (BurstR = 1), G.711's Ie = 0
///   and Bpl = [`BPL_G711_PLC`].
///
/// Negative or NaN inputs count as 0; loss above 100 % as 100 %.
pub fn r_factor(loss_percent: f64, jitter_ms: f64, one_way_delay_ms: f64) -> f64 {
    let ppl = if loss_percent.is_nan() {
        0.0
    } else {
        loss_percent.clamp(0.0, 100.0)
    };
    let d = one_way_delay_ms.max(0.0) + 2.0 * jitter_ms.max(0.0) + 10.0;
    let id = 0.024 * d + if d > 177.3 { 0.11 * (d - 177.3) } else { 0.0 };
    let ie_eff = IE_G711 + (95.0 - IE_G711) * ppl / (ppl + BPL_G711_PLC);
    93.2 - id - ie_eff
}

/// Mean opinion score 1..=4.5 from R (G.107 Annex B): `1 + 0.035 R + 7e-6 R (R - 60)(100 - R)`.
pub fn mos(loss_percent: f64, jitter_ms: f64, one_way_delay_ms: f64) -> f64 {
    mos_from_r(r_factor(loss_percent, jitter_ms, one_way_delay_ms))
}

pub fn mos_from_r(r: f64) -> f64 {
    if r.is_nan() || r <= 0.0 {
        return 1.0;
    }
    if r >= 100.0 {
        return 4.5;
    }
    (1.0 + 0.035 * r + 7e-6 * r * (r - 60.0) * (100.0 - r)).clamp(1.0, 4.5)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const MS: Duration = Duration::from_millis(1);

    /// Feeds packets `(seq, ts, arrival ms)`; returns the verdicts.
    fn feed(s: &mut ReceiverStats, t0: Instant, packets: &[(u16, u32, u64)]) -> Vec<SeqVerdict> {
        packets
            .iter()
            .map(|&(seq, ts, ms)| s.on_packet(seq, ts, t0 + MS * ms as u32))
            .collect()
    }

    /// A clean 20 ms stream of `n` packets from `seq0`/`ts0`.
    fn clean(n: u64, seq0: u16, ts0: u32) -> Vec<(u16, u32, u64)> {
        (0..n)
            .map(|i| {
                (
                    seq0.wrapping_add(i as u16),
                    ts0.wrapping_add(160 * i as u32),
                    i * 20,
                )
            })
            .collect()
    }

    #[test]
    fn clean_stream_has_no_loss_no_jitter_and_a_good_mos() {
        let t0 = Instant::now();
        let mut s = ReceiverStats::new(G711_CLOCK_RATE);
        let v = feed(&mut s, t0, &clean(500, 1000, 12345));
        // The first packet is on probation; from the second on, counted.
        assert_eq!(v[0], SeqVerdict::Probation);
        assert!(v[1..].iter().all(|v| *v == SeqVerdict::Valid));
        assert!(s.is_valid());
        assert_eq!(s.received(), 499);
        assert_eq!(s.expected(), 499);
        assert_eq!(s.cumulative_lost(), 0);
        assert_eq!(s.extended_highest_seq(), 1499);
        assert!(s.jitter() < 1e-6, "{}", s.jitter());
        assert_eq!(s.jitter_rtcp(), 0);
        let i = s.take_interval();
        assert_eq!(
            (i.expected, i.received, i.lost, i.fraction_lost),
            (499, 499, 0, 0)
        );
        let m = s.mos(0.0);
        assert!((m - 4.4).abs() < 0.02, "{m}");
    }

    #[test]
    fn deterministic_ten_percent_loss() {
        let t0 = Instant::now();
        let mut s = ReceiverStats::new(G711_CLOCK_RATE);
        // Drop packets by a fixed pseudorandom sequence (xorshift), about one in ten; keep the
        // first two so that probation passes at once.
        let mut x = 0x2545_f491u32;
        let mut dropped = 0u64;
        let all = clean(10_000, 65000, 0);
        let kept: Vec<_> = all
            .iter()
            .enumerate()
            .filter(|(i, _)| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                let drop = *i >= 2 && *i < all.len() - 1 && x.is_multiple_of(10);
                dropped += u64::from(drop);
                !drop
            })
            .map(|(_, p)| *p)
            .collect();
        feed(&mut s, t0, &kept);
        // The first packet (probation) is not counted; the rest is 9,999 expected.
        assert_eq!(s.expected(), 9_999);
        assert_eq!(s.lost(), dropped);
        let pct = s.loss_percent();
        assert!((9.0..11.0).contains(&pct), "{pct}");
        // The wrap of 65000 + 10,000 was tracked: 74999 = 0x1_24F7.
        assert_eq!(s.extended_highest_seq(), 65_000 + 9_999);
        let i = s.take_interval();
        assert_eq!(i.lost as u64, dropped);
        assert_eq!(i.fraction_lost as u64, dropped * 256 / 9_999);
        // Arrivals stay on the 20 ms grid: gaps in sequence are not jitter.
        assert!(s.jitter() < 1e-6);
        let m = s.mos(0.0);
        assert!(m < 3.6 && m > 3.2, "{m}");
        assert!(m < mos(0.0, 0.0, 0.0));
    }

    #[test]
    fn reordering_and_duplicates() {
        let t0 = Instant::now();
        let mut s = ReceiverStats::new(G711_CLOCK_RATE);
        // 10, 11 pass probation; 13 before 12 (reordered); 14 twice (duplicate); 15.
        let v = feed(
            &mut s,
            t0,
            &[
                (10, 0, 0),
                (11, 160, 20),
                (13, 480, 40),
                (12, 320, 45),
                (14, 640, 60),
                (14, 640, 61),
                (15, 800, 80),
            ],
        );
        assert!(v[1..].iter().all(|v| *v == SeqVerdict::Valid));
        assert_eq!(s.extended_highest_seq(), 15);
        assert_eq!(s.expected(), 5); // 11..=15
        assert_eq!(s.received(), 6); // 11, 13, 12, 14, 14, 15
        assert_eq!(s.cumulative_lost(), -1);
        assert_eq!(s.lost(), 0);
        assert_eq!(s.lost_rtcp(), -1);
        let i = s.take_interval();
        assert_eq!(i.lost, -1);
        assert_eq!(i.fraction_lost, 0);
        // A late packet after a gap: 17 then 16 — nothing lost in the next interval.
        feed(&mut s, t0, &[(17, 1120, 120), (16, 960, 121)]);
        let i = s.take_interval();
        assert_eq!((i.expected, i.received, i.lost), (2, 2, 0));
        // A stray packet from far away is bad and not counted; the stream goes on.
        assert_eq!(s.on_packet(30_000, 0, t0 + MS * 130), SeqVerdict::Bad);
        assert_eq!(s.on_packet(18, 1280, t0 + MS * 140), SeqVerdict::Valid);
        assert_eq!(s.extended_highest_seq(), 18);
        assert_eq!(s.received(), 9);
    }

    #[test]
    fn a_sequence_restart_starts_the_statistics_over() {
        let t0 = Instant::now();
        let mut s = ReceiverStats::new(G711_CLOCK_RATE);
        feed(&mut s, t0, &clean(10, 100, 0));
        assert_eq!(s.received(), 9);
        assert_eq!(s.on_packet(40_000, 0, t0 + MS * 200), SeqVerdict::Bad);
        assert_eq!(s.on_packet(40_001, 160, t0 + MS * 220), SeqVerdict::Valid);
        assert_eq!(s.received(), 1);
        assert_eq!(s.expected(), 1);
        assert_eq!(s.extended_highest_seq(), 40_001);
    }

    #[test]
    fn probation_requires_packets_in_sequence() {
        let t0 = Instant::now();
        let mut s = ReceiverStats::new(G711_CLOCK_RATE);
        assert_eq!(s.on_packet(5, 0, t0), SeqVerdict::Probation);
        assert_eq!(s.on_packet(9, 0, t0), SeqVerdict::Probation);
        assert!(!s.is_valid());
        assert_eq!(s.expected(), 0);
        assert_eq!(s.loss_percent(), 0.0);
        assert_eq!(s.on_packet(10, 160, t0 + MS * 20), SeqVerdict::Valid);
        assert!(s.is_valid());
        assert_eq!((s.received(), s.expected()), (1, 1));
    }

    #[test]
    fn sequence_wraps_at_65535() {
        let t0 = Instant::now();
        let mut s = ReceiverStats::new(G711_CLOCK_RATE);
        feed(&mut s, t0, &clean(6, 65532, u32::MAX - 400));
        // 65532 probation, 65533..=65535, 0, 1 counted.
        assert_eq!(s.extended_highest_seq(), 65_536 + 1);
        assert_eq!(s.expected(), 5);
        assert_eq!(s.received(), 5);
        // A late packet from before the wrap does not add a cycle.
        s.on_packet(65535, (u32::MAX - 400).wrapping_add(480), t0 + MS * 120);
        assert_eq!(s.extended_highest_seq(), 65_537);
        // Several wraps.
        feed(&mut s, t0, &clean(3 * 65_536, 2, 0));
        assert_eq!(s.extended_highest_seq(), 4 * 65_536 + 1);
        assert_eq!(s.cumulative_lost(), -1); // the duplicate 65535
        assert!(s.jitter() > 0.0);
    }

    #[test]
    fn jitter_follows_a8_on_a_known_pattern() {
        let t0 = Instant::now();
        let mut s = ReceiverStats::new(G711_CLOCK_RATE);
        // Sent every 20 ms (160 units); arrivals at 0, 20, 45, 60, 85, 100 ms.
        let arrivals = [0u64, 20, 45, 60, 85, 100];
        let packets: Vec<_> = arrivals
            .iter()
            .enumerate()
            .map(|(i, &ms)| (i as u16, 160 * i as u32, ms))
            .collect();
        feed(&mut s, t0, &packets);
        // Counted from the second packet; the first has no predecessor for D. In timestamp
        // units (8 per ms), |D| for packets 3..6: |200-160|=40, |120-160|=40, 40, 40.
        // J1 = 40/16 = 2.5; J2 = 2.5 + 37.5/16 = 4.84375; J3 = 4.84375 + 35.15625/16 = 7.041015625;
        // J4 = 7.041015625 + 32.958984375/16 = 9.100952148...
        let mut j = 0.0f64;
        for _ in 0..4 {
            j += (40.0 - j) / 16.0;
        }
        assert!((j - 9.100_952_148_437_5).abs() < 1e-9);
        assert!((s.jitter() - j).abs() < 1e-6, "{} vs {j}", s.jitter());
        assert_eq!(s.jitter_rtcp(), 9);
        assert!((s.jitter_ms() - j / 8.0).abs() < 1e-6);
    }

    #[test]
    fn jitter_handles_timestamp_wrap_and_reordered_arrivals() {
        let t0 = Instant::now();
        let mut s = ReceiverStats::new(G711_CLOCK_RATE);
        feed(&mut s, t0, &clean(100, 0, u32::MAX - 160 * 50));
        assert!(s.jitter() < 1e-6);
        // A late packet's arrival is after its successor: D is still computed, no panic.
        s.on_packet(200, 160 * 200, t0 + MS * 4000);
        s.on_packet(199, 160 * 199, t0 + MS * 3990);
        assert!(s.jitter().is_finite());
    }

    #[test]
    fn lsr_and_dlsr() {
        let t0 = Instant::now();
        let mut s = ReceiverStats::new(G711_CLOCK_RATE);
        assert_eq!(s.lsr_dlsr(t0), (0, 0));
        s.on_sender_report(0x1234_5678_9abc_def0, t0);
        assert_eq!(
            s.lsr_dlsr(t0 + Duration::from_millis(1500)),
            (0x5678_9abc, 98_304)
        );
    }

    #[test]
    fn cumulative_loss_clamps_to_24_bits() {
        let t0 = Instant::now();
        let mut s = ReceiverStats::new(G711_CLOCK_RATE);
        feed(&mut s, t0, &clean(2, 0, 0));
        for _ in 0..0x80_0005 {
            s.on_packet(1, 160, t0);
        }
        assert_eq!(s.lost_rtcp(), -0x80_0000);
        assert_eq!(s.lost(), 0);
    }

    #[test]
    fn mos_model() {
        // Clean, no delay: R = 93.2 - 0.24 = 92.96, MOS 4.40.
        assert!((r_factor(0.0, 0.0, 0.0) - 92.96).abs() < 1e-9);
        assert!((mos(0.0, 0.0, 0.0) - 4.404).abs() < 0.001);
        // 10 % loss: Ie_eff = 95 × 10 / 35.1 = 27.07; R = 65.89; MOS 3.40.
        assert!((mos(10.0, 0.0, 0.0) - 3.40).abs() < 0.01);
        // Monotonic in each input.
        let mut prev = 5.0;
        for loss in 0..=100 {
            let m = mos(f64::from(loss), 0.0, 20.0);
            assert!(m <= prev && (1.0..=4.5).contains(&m));
            prev = m;
        }
        assert!(mos(0.0, 30.0, 20.0) < mos(0.0, 5.0, 20.0));
        assert!(mos(0.0, 0.0, 400.0) < mos(0.0, 0.0, 100.0));
        // Beyond 177.3 ms the delay penalty steepens.
        let slope = |d: f64| r_factor(0.0, 0.0, d) - r_factor(0.0, 0.0, d + 10.0);
        assert!(slope(300.0) > 4.0 * slope(50.0));
        // Bounds and nonsense.
        assert_eq!(mos(100.0, 1000.0, 5000.0), 1.0);
        assert_eq!(mos_from_r(120.0), 4.5);
        assert_eq!(mos_from_r(f64::NAN), 1.0);
        assert_eq!(mos(-5.0, f64::NAN, -1.0), mos(0.0, 0.0, 0.0));
    }
}
