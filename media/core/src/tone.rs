//! Precomputed G.711 signal tables. A tone of integer frequency `f` at 8000 Hz repeats exactly
//! every `8000 / gcd(8000, f)` samples (200 for 440 Hz, 2000 for 1004 Hz), and two tones added
//! together every least common multiple of theirs (800 for dial tone's 350 + 440 Hz), so one
//! period is encoded once and every packet is a 160-byte slice of it: no math and no allocation
//! per packet. A sweep is encoded whole (one table per sweep time); a cadence (on/off times, each
//! a whole number of packets) picks, per packet, the signal or a packet of silence.

use std::f64::consts::PI;

pub const SAMPLE_RATE: u32 = 8000;
/// Samples in one 20 ms packet.
pub const SAMPLES_PER_PACKET: usize = 160;

/// Peak linear amplitude (16-bit scale) of a 0 dBm0 sine: G.711's overload point is +3.17 dBm0
/// for μ-law (peak 8159 << 2) and +3.14 dBm0 for A-law (peak 4096 << 3).
const ULAW_0DBM0_PEAK: f64 = 32636.0 / 1.440_1; // 10^(3.17/20)
const ALAW_0DBM0_PEAK: f64 = 32768.0 / 1.435_1; // 10^(3.14/20)

/// The highest peak a signal may have, in dBm0 of a sine's peak: the tone keys' upper limit.
pub const MAX_PEAK_DBM0: f64 = 3.0;
/// At most this many on/off values in a cadence (four on/off pairs, as E.180's longest).
pub const MAX_CADENCE_VALUES: usize = 8;
/// Longest sweep and longest cadence cycle.
pub const MAX_CYCLE_MS: u32 = 60_000;

pub use crate::codec::Codec;

impl Codec {
    fn zero_dbm0_peak(self) -> f64 {
        match self {
            Codec::Pcmu => ULAW_0DBM0_PEAK,
            Codec::Pcma => ALAW_0DBM0_PEAK,
        }
    }
}

/// A sweep: the frequency goes linearly from the tone's frequency to `to_hz` in `ms`, then
/// starts again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Sweep {
    pub to_hz: u32,
    pub ms: u32,
}

/// What a signal is beyond one steady sine (the default: nothing more).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Shape {
    /// A second sine added to the first (dual tones, e.g. dial tone 350 + 440 Hz): its frequency
    /// and level in dBm0.
    pub second: Option<(u32, f64)>,
    /// A frequency sweep from the tone's frequency (not with a second tone).
    pub sweep: Option<Sweep>,
    /// On/off times in ms, alternating and starting with on (ringback `[2000, 4000]`); empty:
    /// continuous. During "off" the stream goes on with packets of silence.
    pub cadence_ms: Vec<u32>,
}

/// `steady`, or the parts: `+620 Hz at -24.0 dBm0, cadence 500/500 ms` (for logs).
impl std::fmt::Display for Shape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts = Vec::new();
        if let Some((hz, l)) = self.second {
            parts.push(format!("+{hz} Hz at {l:.1} dBm0"));
        }
        if let Some(s) = self.sweep {
            parts.push(format!("sweep to {} Hz in {} ms", s.to_hz, s.ms));
        }
        if !self.cadence_ms.is_empty() {
            let c: Vec<String> = self.cadence_ms.iter().map(u32::to_string).collect();
            parts.push(format!("cadence {} ms", c.join("/")));
        }
        if parts.is_empty() {
            f.write_str("steady")
        } else {
            f.write_str(&parts.join(", "))
        }
    }
}

/// Which part of a [`Shape`] is wrong; each edge names it its own way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShapeField {
    SecondFrequency,
    SecondLevel,
    SweepTo,
    SweepMs,
    Cadence,
}

impl ShapeField {
    /// The configuration key (in a plan or `[behavior]`).
    pub fn config_key(self) -> &'static str {
        match self {
            ShapeField::SecondFrequency => "second_frequency",
            ShapeField::SecondLevel => "second_level_dbm0",
            ShapeField::SweepTo => "sweep_to_frequency",
            ShapeField::SweepMs => "sweep_ms",
            ShapeField::Cadence => "cadence_ms",
        }
    }

    /// The StartTone field.
    pub fn proto_field(self) -> &'static str {
        match self {
            ShapeField::SecondFrequency => "second_frequency_hz",
            ShapeField::SecondLevel => "second_level_dbm0",
            ShapeField::SweepTo => "sweep_to_hz",
            ShapeField::SweepMs => "sweep_ms",
            ShapeField::Cadence => "cadence_ms",
        }
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{reason}")]
pub struct ShapeError {
    pub field: ShapeField,
    pub reason: String,
}

fn frequency_ok(f: u32) -> bool {
    f > 0 && f < SAMPLE_RATE / 2
}

impl Shape {
    /// Whether this shape can be played with a first tone of `frequency_hz` at `level_dbm0`
    /// (those two are checked by the caller): ranges, combinations, and a peak G.711 carries.
    pub fn check(&self, frequency_hz: u32, level_dbm0: f64) -> Result<(), ShapeError> {
        let err = |field, reason: String| Err(ShapeError { field, reason });
        if let Some((f2, l2)) = self.second {
            if !frequency_ok(f2) {
                return err(
                    ShapeField::SecondFrequency,
                    format!("{f2} Hz cannot be carried at 8000 Hz sampling: must be 1..3999"),
                );
            }
            if f2 == frequency_hz {
                return err(
                    ShapeField::SecondFrequency,
                    format!("{f2} Hz is the first tone's frequency"),
                );
            }
            if !(-60.0..=3.0).contains(&l2) {
                return err(
                    ShapeField::SecondLevel,
                    format!("{l2} dBm0 is out of range -60..3"),
                );
            }
            let peak = 20.0 * (10f64.powf(level_dbm0 / 20.0) + 10f64.powf(l2 / 20.0)).log10();
            if peak > MAX_PEAK_DBM0 + 1e-9 {
                return err(
                    ShapeField::SecondLevel,
                    format!(
                        "{level_dbm0} and {l2} dBm0 add up to a peak of a {peak:.2} dBm0 sine, \
                         above +3: G.711 would clip it (lower the levels)"
                    ),
                );
            }
        }
        if let Some(s) = self.sweep {
            if self.second.is_some() {
                return err(
                    ShapeField::SweepTo,
                    "a sweep cannot be combined with a second tone".into(),
                );
            }
            if !frequency_ok(s.to_hz) {
                return err(
                    ShapeField::SweepTo,
                    format!(
                        "{} Hz cannot be carried at 8000 Hz sampling: must be 1..3999",
                        s.to_hz
                    ),
                );
            }
            if s.to_hz == frequency_hz {
                return err(
                    ShapeField::SweepTo,
                    format!("{} Hz is where the sweep starts", s.to_hz),
                );
            }
            if !(100..=MAX_CYCLE_MS).contains(&s.ms) {
                return err(
                    ShapeField::SweepMs,
                    format!("{} ms is out of range 100..{MAX_CYCLE_MS}", s.ms),
                );
            }
        }
        let c = &self.cadence_ms;
        if !c.is_empty() {
            if !c.len().is_multiple_of(2) || c.len() > MAX_CADENCE_VALUES {
                return err(
                    ShapeField::Cadence,
                    format!(
                        "{} values: a cadence is 1 to {} on/off pairs (e.g. [2000, 4000])",
                        c.len(),
                        MAX_CADENCE_VALUES / 2
                    ),
                );
            }
            if let Some(v) = c.iter().find(|v| **v == 0 || !v.is_multiple_of(20)) {
                return err(
                    ShapeField::Cadence,
                    format!("{v} ms is not a whole number of 20 ms packets (20, 40, ...)"),
                );
            }
            let total: u64 = c.iter().map(|v| u64::from(*v)).sum();
            if total > u64::from(MAX_CYCLE_MS) {
                return err(
                    ShapeField::Cadence,
                    format!("a cycle of {total} ms is longer than {MAX_CYCLE_MS} ms"),
                );
            }
        }
        Ok(())
    }
}

/// Key of the table cache: tables are shared by all sessions with the same signal.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ToneKey {
    pub codec: Codec,
    pub frequency_hz: u32,
    /// Level in hundredths of a dB (a float is no hash key).
    pub level_centi_dbm0: i32,
    /// The second tone: frequency and level in hundredths of a dB.
    pub second: Option<(u32, i32)>,
    pub sweep: Option<Sweep>,
    pub cadence_ms: Vec<u32>,
}

fn centi(level_dbm0: f64) -> i32 {
    (level_dbm0 * 100.0).round() as i32
}

impl ToneKey {
    /// One steady sine.
    pub fn new(codec: Codec, frequency_hz: u32, level_dbm0: f64) -> ToneKey {
        ToneKey::shaped(codec, frequency_hz, level_dbm0, &Shape::default())
    }

    /// A signal of `shape` (checked at the edges with [`Shape::check`]).
    pub fn shaped(codec: Codec, frequency_hz: u32, level_dbm0: f64, shape: &Shape) -> ToneKey {
        ToneKey {
            codec,
            frequency_hz,
            level_centi_dbm0: centi(level_dbm0),
            second: shape.second.map(|(f, l)| (f, centi(l))),
            sweep: shape.sweep,
            cadence_ms: shape.cadence_ms.clone(),
        }
    }
}

/// One period of an encoded signal, extended by one packet so that any packet is one slice, and
/// a packet of silence after that; with a cadence, which packets of its cycle are on.
#[derive(Debug)]
pub struct ToneTable {
    period: usize,
    /// Samples after which the whole signal (period and cadence) repeats: offsets are taken
    /// modulo this.
    cycle: u64,
    /// The cadence's cycle in samples (0: continuous) and its "on" spans within it.
    cadence_len: u64,
    on: Vec<(u64, u64)>,
    data: Box<[u8]>,
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

fn lcm(a: u64, b: u64) -> u64 {
    a / gcd(a, b) * b
}

fn sine_period(frequency_hz: u32) -> u64 {
    u64::from(SAMPLE_RATE) / gcd(u64::from(SAMPLE_RATE), u64::from(frequency_hz))
}

impl ToneTable {
    /// Frequencies must be 1..SAMPLE_RATE/2 and the shape valid (checked at the edges: config
    /// and gRPC).
    pub fn new(key: ToneKey) -> ToneTable {
        Self::with_phase(key, 0.0)
    }

    fn with_phase(key: ToneKey, phase: f64) -> ToneTable {
        assert!(
            frequency_ok(key.frequency_hz),
            "frequency checked at the edge"
        );
        let peak = key.codec.zero_dbm0_peak();
        let amplitude = |centi: i32| peak * 10f64.powf(f64::from(centi) / 2000.0);
        let rate = f64::from(SAMPLE_RATE);
        let a1 = amplitude(key.level_centi_dbm0);
        let w1 = 2.0 * PI * f64::from(key.frequency_hz) / rate;
        // One period of linear samples.
        let linear: Vec<f64> = if let Some(s) = key.sweep {
            // Phase-continuous linear chirp: the phase is the running sum of the frequency.
            let n = (u64::from(s.ms) * u64::from(SAMPLE_RATE) / 1000) as usize;
            let (f0, f1) = (f64::from(key.frequency_hz), f64::from(s.to_hz));
            let mut acc = phase;
            (0..n)
                .map(|i| {
                    let v = a1 * acc.sin();
                    acc += 2.0 * PI * (f0 + (f1 - f0) * i as f64 / n as f64) / rate;
                    v
                })
                .collect()
        } else if let Some((f2, l2)) = key.second {
            let period = lcm(sine_period(key.frequency_hz), sine_period(f2)) as usize;
            let (a2, w2) = (amplitude(l2), 2.0 * PI * f64::from(f2) / rate);
            (0..period)
                .map(|n| a1 * (n as f64 * w1 + phase).sin() + a2 * (n as f64 * w2 + phase).sin())
                .collect()
        } else {
            let period = sine_period(key.frequency_hz) as usize;
            (0..period)
                .map(|n| a1 * (n as f64 * w1 + phase).sin())
                .collect()
        };
        let period = linear.len();
        let encode = |v: f64| {
            key.codec
                .encode(v.round().clamp(f64::from(i16::MIN), f64::from(i16::MAX)) as i16)
        };
        let mut data: Vec<u8> = Vec::with_capacity(period + 2 * SAMPLES_PER_PACKET);
        data.extend(linear.iter().map(|v| encode(*v)));
        for n in 0..SAMPLES_PER_PACKET {
            data.push(data[n % period]);
        }
        data.extend((0..SAMPLES_PER_PACKET).map(|_| encode(0.0)));
        let per_ms = u64::from(SAMPLE_RATE) / 1000;
        let mut on = Vec::new();
        let mut at = 0u64;
        for (i, ms) in key.cadence_ms.iter().enumerate() {
            let len = u64::from(*ms) * per_ms;
            if i % 2 == 0 {
                on.push((at, at + len));
            }
            at += len;
        }
        let cadence_len = at;
        let cycle = if cadence_len == 0 {
            period as u64
        } else {
            lcm(period as u64, cadence_len)
        };
        ToneTable {
            period,
            cycle,
            cadence_len,
            on,
            data: data.into_boxed_slice(),
        }
    }

    /// Samples in one period of the signal (without its cadence).
    pub fn period(&self) -> usize {
        self.period
    }

    /// The 160 samples starting at `offset` (taken modulo the cycle): the signal's, or silence
    /// where the cadence is off. Offsets are whole packets from the start, so a packet never
    /// straddles a cadence step (each is a whole number of packets).
    pub fn packet(&self, offset: usize) -> &[u8] {
        let o = offset as u64 % self.cycle;
        if self.cadence_len > 0 {
            let c = o % self.cadence_len;
            if !self.on.iter().any(|(a, b)| (*a..*b).contains(&c)) {
                let s = self.period + SAMPLES_PER_PACKET;
                return &self.data[s..s + SAMPLES_PER_PACKET];
            }
        }
        let o = (o % self.period as u64) as usize;
        &self.data[o..o + SAMPLES_PER_PACKET]
    }

    /// The offset `packets` packets after `offset`.
    pub fn advance(&self, offset: usize, packets: u64) -> usize {
        let c = u128::from(self.cycle);
        let step = (SAMPLES_PER_PACKET as u128 % c) * (u128::from(packets) % c);
        ((offset as u128 + step) % c) as usize
    }
}
#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Goertzel power of `freq` in `samples`.
    pub fn goertzel(samples: &[f64], freq: f64) -> f64 {
        let w = 2.0 * PI * freq / f64::from(SAMPLE_RATE);
        let c = 2.0 * w.cos();
        let (mut s1, mut s2) = (0.0, 0.0);
        for &x in samples {
            let s0 = x + c * s1 - s2;
            s2 = s1;
            s1 = s0;
        }
        s1 * s1 + s2 * s2 - c * s1 * s2
    }

    fn decoded(table: &ToneTable, codec: Codec, packets: u64) -> Vec<f64> {
        let mut out = Vec::new();
        let mut offset = 0;
        for _ in 0..packets {
            out.extend(
                table
                    .packet(offset)
                    .iter()
                    .map(|&b| f64::from(codec.decode(b))),
            );
            offset = table.advance(offset, 1);
        }
        out
    }

    #[test]
    fn period_is_exact() {
        assert_eq!(
            ToneTable::new(ToneKey::new(Codec::Pcmu, 440, -10.0)).period(),
            200
        );
        assert_eq!(
            ToneTable::new(ToneKey::new(Codec::Pcmu, 1004, -10.0)).period(),
            2000
        );
        assert_eq!(
            ToneTable::new(ToneKey::new(Codec::Pcma, 1000, -10.0)).period(),
            8
        );
        assert_eq!(
            ToneTable::new(ToneKey::new(Codec::Pcma, 3999, -10.0)).period(),
            8000
        );
    }

    #[test]
    fn digital_milliwatt_matches_g711_tables() {
        // G.711 Tables 5 and 6: 1 kHz at 0 dBm0 sampled pi/8 into the negative half-cycle
        // (the tables begin with codes whose sign bit is 0, i.e. negative samples).
        let phase = PI + PI / 8.0;
        let u = ToneTable::with_phase(ToneKey::new(Codec::Pcmu, 1000, 0.0), phase);
        let a = ToneTable::with_phase(ToneKey::new(Codec::Pcma, 1000, 0.0), phase);
        let u8s = u.packet(0)[..8].to_vec();
        let a8s = a.packet(0)[..8].to_vec();
        assert_eq!(
            u8s,
            [0x1E, 0x0B, 0x0B, 0x1E, 0x9E, 0x8B, 0x8B, 0x9E],
            "{u8s:02x?}"
        );
        assert_eq!(
            a8s,
            [0x34, 0x21, 0x21, 0x34, 0xB4, 0xA1, 0xA1, 0xB4],
            "{a8s:02x?}"
        );
    }

    #[test]
    fn level_and_frequency_survive_decoding() {
        for codec in [Codec::Pcmu, Codec::Pcma] {
            for (freq, level) in [(440u32, -10.0), (1004, -10.0), (1004, -20.0), (2600, -3.0)] {
                let table = ToneTable::new(ToneKey::new(codec, freq, level));
                let x = decoded(&table, codec, 50);
                let rms = (x.iter().map(|v| v * v).sum::<f64>() / x.len() as f64).sqrt();
                let dbm0 = 20.0 * (rms * 2f64.sqrt() / codec.zero_dbm0_peak()).log10();
                assert!(
                    (dbm0 - level).abs() < 0.3,
                    "{codec:?} {freq} Hz: {dbm0} dBm0"
                );
                let on = goertzel(&x, f64::from(freq));
                for off in [f64::from(freq) - 5.0, f64::from(freq) + 5.0, 1000.0] {
                    if (off - f64::from(freq)).abs() > 1.0 {
                        assert!(on > 100.0 * goertzel(&x, off), "{codec:?} {freq} vs {off}");
                    }
                }
            }
        }
    }

    #[test]
    fn packets_are_continuous_across_the_period_boundary() {
        let codec = Codec::Pcmu;
        let table = ToneTable::new(ToneKey::new(codec, 1004, -10.0));
        let reference = ToneTable::new(ToneKey::new(codec, 1004, -10.0));
        let mut offset = 0usize;
        for i in 0..200u64 {
            let p = table.packet(offset);
            for (j, &b) in p.iter().enumerate() {
                let n = (i as usize * SAMPLES_PER_PACKET + j) % reference.period();
                assert_eq!(b, reference.data[n]);
            }
            offset = table.advance(offset, 1);
        }
        assert_eq!(table.advance(0, 7), table.advance(table.advance(0, 3), 4));
    }

    /// Decoded packets of `key`, one per entry.
    fn packets(key: ToneKey, n: u64) -> Vec<Vec<f64>> {
        let codec = key.codec;
        let table = ToneTable::new(key);
        let mut offset = 0;
        (0..n)
            .map(|_| {
                let p = table
                    .packet(offset)
                    .iter()
                    .map(|&b| f64::from(codec.decode(b)))
                    .collect();
                offset = table.advance(offset, 1);
                p
            })
            .collect()
    }

    /// The level in dBm0 of the component at `freq` in `x` (Goertzel amplitude).
    fn component_dbm0(x: &[f64], freq: f64, codec: Codec) -> f64 {
        let amplitude = 2.0 * goertzel(x, freq).sqrt() / x.len() as f64;
        20.0 * (amplitude / codec.zero_dbm0_peak()).log10()
    }

    #[test]
    fn dual_tones_carry_both_frequencies_at_their_levels() {
        // North American precise dial tone: 350 + 440 Hz at -13 dBm0 each; busy 480 + 620 at -24.
        for codec in [Codec::Pcmu, Codec::Pcma] {
            for (f1, f2, l1, l2, period) in
                [(350, 440, -13.0, -13.0, 800), (480, 620, -24.0, -20.0, 400)]
            {
                let shape = Shape {
                    second: Some((f2, l2)),
                    ..Shape::default()
                };
                assert_eq!(shape.check(f1, l1), Ok(()));
                let key = ToneKey::shaped(codec, f1, l1, &shape);
                assert_eq!(ToneTable::new(key.clone()).period(), period);
                let x: Vec<f64> = packets(key, 50).concat();
                for (f, l) in [(f1, l1), (f2, l2)] {
                    let got = component_dbm0(&x, f64::from(f), codec);
                    assert!((got - l).abs() < 0.3, "{codec:?} {f} Hz: {got} dBm0");
                }
                let stray = component_dbm0(&x, 1000.0, codec);
                assert!(stray < -45.0, "{codec:?}: 1000 Hz at {stray} dBm0");
            }
        }
    }

    #[test]
    fn a_cadence_alternates_the_signal_and_silence_by_whole_packets() {
        // UK ringing: 400 on, 200 off, 400 on, 2000 off, twice around.
        let shape = Shape {
            second: Some((450, -10.0)),
            cadence_ms: vec![400, 200, 400, 2000],
            ..Shape::default()
        };
        let key = ToneKey::shaped(Codec::Pcmu, 400, -10.0, &shape);
        let on: Vec<bool> = packets(key, 300)
            .iter()
            .map(|p| p.iter().any(|v| *v != 0.0))
            .collect();
        let mut runs = vec![(on[0], 0usize)];
        for b in on {
            match runs.last_mut() {
                Some((v, n)) if *v == b => *n += 1,
                _ => runs.push((b, 1)),
            }
        }
        assert_eq!(
            runs,
            [
                (true, 20),
                (false, 10),
                (true, 20),
                (false, 100),
                (true, 20),
                (false, 10),
                (true, 20),
                (false, 100)
            ]
        );
        // Skipped packet times land where they would have been.
        let table = ToneTable::new(ToneKey::shaped(Codec::Pcmu, 400, -10.0, &shape));
        assert_eq!(table.advance(0, 150), 0, "the cycle is 3 s");
        assert_eq!(table.advance(table.advance(0, 149), 1), 0);
    }

    #[test]
    fn a_sweep_rises_linearly_and_starts_again() {
        let shape = Shape {
            sweep: Some(Sweep {
                to_hz: 3000,
                ms: 1000,
            }),
            ..Shape::default()
        };
        let key = ToneKey::shaped(Codec::Pcmu, 300, -10.0, &shape);
        assert_eq!(ToneTable::new(key.clone()).period(), 8000);
        let p = packets(key, 100);
        // Each 100 ms window's frequency (zero crossings) is the sweep's at the window's middle.
        for w in 0..20 {
            let x: Vec<f64> = p[w * 5..w * 5 + 5].concat();
            let crossings = x
                .windows(2)
                .filter(|v| (v[0] < 0.0) != (v[1] < 0.0))
                .count();
            let got = crossings as f64 / 2.0 / 0.1;
            let t = ((w % 10) as f64 + 0.5) / 10.0;
            let expected = 300.0 + 2700.0 * t;
            assert!(
                (got - expected).abs() <= 20.0,
                "window {w}: {got} Hz, expected {expected}"
            );
        }
    }

    #[test]
    fn shapes_out_of_range_name_the_field() {
        let bad = |s: Shape, f: u32, l: f64| s.check(f, l).unwrap_err().field;
        let second = |f, l| Shape {
            second: Some((f, l)),
            ..Shape::default()
        };
        assert_eq!(
            bad(second(4000, -10.0), 440, -10.0),
            ShapeField::SecondFrequency
        );
        assert_eq!(
            bad(second(440, -10.0), 440, -10.0),
            ShapeField::SecondFrequency
        );
        assert_eq!(bad(second(350, -61.0), 440, -10.0), ShapeField::SecondLevel);
        // Two sines at 0 dBm0 peak at +6: clipped.
        assert_eq!(bad(second(350, 0.0), 440, 0.0), ShapeField::SecondLevel);
        assert_eq!(second(350, -3.1).check(440, -3.1), Ok(()));
        let sweep = |to_hz, ms| Shape {
            sweep: Some(Sweep { to_hz, ms }),
            ..Shape::default()
        };
        assert_eq!(bad(sweep(0, 1000), 300, -10.0), ShapeField::SweepTo);
        assert_eq!(bad(sweep(300, 1000), 300, -10.0), ShapeField::SweepTo);
        assert_eq!(bad(sweep(3000, 99), 300, -10.0), ShapeField::SweepMs);
        assert_eq!(bad(sweep(3000, 60_001), 300, -10.0), ShapeField::SweepMs);
        let both = Shape {
            second: Some((350, -13.0)),
            sweep: Some(Sweep {
                to_hz: 3000,
                ms: 1000,
            }),
            ..Shape::default()
        };
        assert_eq!(bad(both, 440, -13.0), ShapeField::SweepTo);
        let cadence = |c: Vec<u32>| Shape {
            cadence_ms: c,
            ..Shape::default()
        };
        for c in [
            vec![500],
            vec![500, 0],
            vec![500, 510],
            vec![20; 10],
            vec![40_000, 20_020],
        ] {
            assert_eq!(
                bad(cadence(c.clone()), 440, -10.0),
                ShapeField::Cadence,
                "{c:?}"
            );
        }
        assert_eq!(cadence(vec![2000, 4000]).check(440, -10.0), Ok(()));
        assert_eq!(Shape::default().to_string(), "steady");
        let busy = Shape {
            second: Some((620, -24.0)),
            cadence_ms: vec![500, 500],
            ..Shape::default()
        };
        assert_eq!(
            busy.to_string(),
            "+620 Hz at -24.0 dBm0, cadence 500/500 ms"
        );
    }
}
