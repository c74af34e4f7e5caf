//! Precomputed G.711 tone tables. A tone of integer frequency `f` at 8000 Hz repeats exactly every
//! `8000 / gcd(8000, f)` samples (200 for 440 Hz, 2000 for 1004 Hz), so one period is encoded once
//! and every packet is a 160-byte slice of it: no math and no allocation per packet.

use std::f64::consts::PI;

pub const SAMPLE_RATE: u32 = 8000;
/// Samples in one 20 ms packet.
pub const SAMPLES_PER_PACKET: usize = 160;

/// Peak linear amplitude (16-bit scale) of a 0 dBm0 sine: G.711's overload point is +3.17 dBm0
/// for μ-law (peak 8159 << 2) and +3.14 dBm0 for A-law (peak 4096 << 3).
const ULAW_0DBM0_PEAK: f64 = 32636.0 / 1.440_1; // 10^(3.17/20)
const ALAW_0DBM0_PEAK: f64 = 32768.0 / 1.435_1; // 10^(3.14/20)

pub use crate::codec::Codec;

impl Codec {
    fn zero_dbm0_peak(self) -> f64 {
        match self {
            Codec::Pcmu => ULAW_0DBM0_PEAK,
            Codec::Pcma => ALAW_0DBM0_PEAK,
        }
    }
}

/// Key of the table cache: tables are shared by all sessions with the same tone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ToneKey {
    pub codec: Codec,
    pub frequency_hz: u32,
    /// Level in hundredths of a dB (a float is no hash key).
    pub level_centi_dbm0: i32,
}

impl ToneKey {
    pub fn new(codec: Codec, frequency_hz: u32, level_dbm0: f64) -> ToneKey {
        ToneKey {
            codec,
            frequency_hz,
            level_centi_dbm0: (level_dbm0 * 100.0).round() as i32,
        }
    }
}

/// One period of an encoded sine, extended by one packet so that any packet is one slice.
#[derive(Debug)]
pub struct ToneTable {
    period: usize,
    data: Box<[u8]>,
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

impl ToneTable {
    /// `frequency_hz` must be 1..SAMPLE_RATE/2 (checked at the edges: config and gRPC).
    pub fn new(key: ToneKey) -> ToneTable {
        Self::with_phase(key, 0.0)
    }

    fn with_phase(key: ToneKey, phase: f64) -> ToneTable {
        assert!(
            key.frequency_hz > 0 && key.frequency_hz < SAMPLE_RATE / 2,
            "frequency checked at the edge"
        );
        let period = (SAMPLE_RATE / gcd(SAMPLE_RATE, key.frequency_hz)) as usize;
        let amplitude =
            key.codec.zero_dbm0_peak() * 10f64.powf(f64::from(key.level_centi_dbm0) / 2000.0);
        let step = 2.0 * PI * f64::from(key.frequency_hz) / f64::from(SAMPLE_RATE);
        let data: Box<[u8]> = (0..period + SAMPLES_PER_PACKET)
            .map(|n| {
                let v = amplitude * ((n % period) as f64 * step + phase).sin();
                key.codec
                    .encode(v.round().clamp(f64::from(i16::MIN), f64::from(i16::MAX)) as i16)
            })
            .collect();
        ToneTable { period, data }
    }

    /// Samples in one period of the tone.
    pub fn period(&self) -> usize {
        self.period
    }

    /// The 160 samples starting at `offset` (taken modulo the period).
    pub fn packet(&self, offset: usize) -> &[u8] {
        let o = offset % self.period;
        &self.data[o..o + SAMPLES_PER_PACKET]
    }

    /// The offset `packets` packets after `offset`.
    pub fn advance(&self, offset: usize, packets: u64) -> usize {
        let step =
            (SAMPLES_PER_PACKET as u64 % self.period as u64) * (packets % self.period as u64);
        ((offset as u64 + step) % self.period as u64) as usize
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
}
