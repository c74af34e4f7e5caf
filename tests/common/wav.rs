//! 16-bit PCM WAV files (what baresip and Linphone record), and the judge of a recorded tone.

use std::path::Path;

use super::rtp::{goertzel_power, zero_crossing_frequency};

/// A 16-bit PCM WAV file.
pub struct Wav {
    pub rate: u32,
    pub channels: u16,
    pub samples: Vec<i16>,
    /// Bytes the data chunk's size claims beyond the end of the file (0 for a file closed
    /// properly).
    pub missing: usize,
}

fn le16(b: &[u8]) -> u16 {
    u16::from_le_bytes([b[0], b[1]])
}

fn le32(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

/// Reads a RIFF/WAVE file holding 16-bit PCM.
pub fn read_wav(path: &Path) -> Wav {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(
        bytes.len() >= 12 && &bytes[0..4] == b"RIFF" && &bytes[8..12] == b"WAVE",
        "{} is not a RIFF/WAVE file",
        path.display()
    );
    let mut fmt: Option<(u16, u16, u32, u16)> = None;
    let mut pos = 12;
    while pos + 8 <= bytes.len() {
        let id = &bytes[pos..pos + 4];
        let size = le32(&bytes[pos + 4..pos + 8]) as usize;
        let body = pos + 8;
        let end = body.saturating_add(size).min(bytes.len());
        if id == b"fmt " {
            assert!(size >= 16, "fmt chunk of {size} bytes");
            let b = &bytes[body..];
            fmt = Some((le16(&b[0..]), le16(&b[2..]), le32(&b[4..]), le16(&b[14..])));
        } else if id == b"data" {
            let (format, channels, rate, bits) = fmt.expect("a data chunk before the fmt chunk");
            assert_eq!(format, 1, "WAV format {format}, expected 1 (PCM)");
            assert_eq!(bits, 16, "{bits} bits per sample, expected 16");
            let samples = bytes[body..end]
                .chunks_exact(2)
                .map(|c| i16::from_le_bytes([c[0], c[1]]))
                .collect();
            return Wav {
                rate,
                channels,
                samples,
                missing: size - (end - body),
            };
        }
        pos = body + size + size % 2;
    }
    panic!("{}: no data chunk", path.display());
}

/// Writes a mono 16-bit PCM WAV file.
pub fn write_wav(path: &Path, rate: u32, samples: &[i16]) {
    let data_len = (samples.len() * 2) as u32;
    let mut b = Vec::with_capacity(44 + samples.len() * 2);
    b.extend_from_slice(b"RIFF");
    b.extend_from_slice(&(36 + data_len).to_le_bytes());
    b.extend_from_slice(b"WAVEfmt ");
    b.extend_from_slice(&16u32.to_le_bytes());
    b.extend_from_slice(&1u16.to_le_bytes()); // PCM
    b.extend_from_slice(&1u16.to_le_bytes()); // mono
    b.extend_from_slice(&rate.to_le_bytes());
    b.extend_from_slice(&(rate * 2).to_le_bytes());
    b.extend_from_slice(&2u16.to_le_bytes());
    b.extend_from_slice(&16u16.to_le_bytes());
    b.extend_from_slice(b"data");
    b.extend_from_slice(&data_len.to_le_bytes());
    for s in samples {
        b.extend_from_slice(&s.to_le_bytes());
    }
    std::fs::write(path, b).unwrap();
}

/// Judges the tone in a softphone's recording of what it received and decoded with `codec`
/// (PCMU or PCMA): mono 8 kHz, the tone segment (first to last sample above a quarter of the
/// peak) lasting `seconds` ±0.5, at `frequency` ±1 Hz and dominating, at -10 dBm0 ±0.5. Returns a
/// line saying what it found.
pub fn judge_recording(wav: &Wav, codec: &str, frequency: f64, seconds: f64) -> String {
    assert_eq!(wav.channels, 1, "recording channels");
    assert_eq!(wav.rate, 8000, "recording sample rate");
    let rate = f64::from(wav.rate);
    let audio: Vec<f64> = wav.samples.iter().map(|&s| f64::from(s)).collect();
    let peak = audio.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    assert!(
        peak >= 2000.0,
        "no tone in the recording: peak {peak} over {} samples",
        audio.len()
    );
    // The tone segment: from the first to the last sample above a quarter of the peak.
    let threshold = peak / 4.0;
    let first = audio.iter().position(|v| v.abs() > threshold).unwrap();
    let last = audio.iter().rposition(|v| v.abs() > threshold).unwrap();
    let tone = &audio[first..=last];
    let duration = tone.len() as f64 / rate;
    assert!(
        (duration - seconds).abs() <= 0.5,
        "the tone lasted {duration:.3} s in the recording, expected {seconds} s ±0.5"
    );
    let measured = zero_crossing_frequency(tone, rate);
    assert!(
        (measured - frequency).abs() <= 1.0,
        "the recording is {measured:.2} Hz, expected {frequency} Hz ±1"
    );
    let on = goertzel_power(tone, frequency, rate);
    let off = goertzel_power(tone, frequency * 1.5, rate);
    assert!(
        on > 1000.0 * off,
        "the tone does not dominate the recording (on {on}, off {off})"
    );
    // The level: the recording holds the G.711 decoder's output. G.711 overload points:
    // +3.17 dBm0 (μ-law, peak 8159 << 2), +3.14 dBm0 (A-law, 4096 << 3).
    let rms = (tone.iter().map(|v| v * v).sum::<f64>() / tone.len() as f64).sqrt();
    #[allow(clippy::approx_constant)] // 3.14 is A-law's overload level, not pi
    let (overload_peak, overload_dbm0) = if codec == "PCMU" {
        (32636.0, 3.17)
    } else {
        (32768.0, 3.14)
    };
    let peak0: f64 = overload_peak / 10f64.powf(overload_dbm0 / 20.0);
    let level_dbm0 = 20.0 * (rms * 2f64.sqrt() / peak0).log10();
    assert!(
        (level_dbm0 + 10.0).abs() <= 0.5,
        "tone level {level_dbm0:.2} dBm0 in the recording, expected -10 dBm0"
    );
    format!(
        "{measured:.3} Hz, {duration:.3} s of tone (recording {:.3} s), {level_dbm0:.2} dBm0",
        audio.len() as f64 / rate
    )
}
