//! ITU-T G.711 companding (μ-law and A-law) on 16-bit linear samples, following the reference
//! algorithm (the CCITT/Sun `g711.c` segment search). Pure functions; the tone tables call them
//! once per table sample, never per packet.

const SEG_UEND: [i32; 8] = [0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF, 0x3FFF, 0x7FFF];
const SEG_AEND: [i32; 8] = [0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF];
const ULAW_BIAS: i32 = 0x84;

fn segment(value: i32, ends: &[i32; 8]) -> usize {
    ends.iter().position(|&end| value <= end).unwrap_or(8)
}

/// Encodes a 16-bit linear sample as μ-law (PCMU).
pub fn linear_to_ulaw(sample: i16) -> u8 {
    let s = i32::from(sample);
    let (magnitude, mask) = if s < 0 {
        (ULAW_BIAS - s, 0x7F)
    } else {
        (s + ULAW_BIAS, 0xFF)
    };
    let seg = segment(magnitude, &SEG_UEND);
    if seg >= 8 {
        return (0x7F ^ mask) as u8;
    }
    let uval = ((seg as i32) << 4) | ((magnitude >> (seg + 3)) & 0xF);
    (uval ^ mask) as u8
}

/// Decodes a μ-law (PCMU) byte to a 16-bit linear sample.
pub fn ulaw_to_linear(code: u8) -> i16 {
    let u = !code;
    let mut t = ((i32::from(u) & 0x0F) << 3) + ULAW_BIAS;
    t <<= (u & 0x70) >> 4;
    (if u & 0x80 != 0 {
        ULAW_BIAS - t
    } else {
        t - ULAW_BIAS
    }) as i16
}

/// Encodes a 16-bit linear sample as A-law (PCMA).
pub fn linear_to_alaw(sample: i16) -> u8 {
    let mut v = i32::from(sample) >> 3;
    let mask = if v >= 0 {
        0xD5
    } else {
        v = -v - 1;
        0x55
    };
    let seg = segment(v, &SEG_AEND);
    if seg >= 8 {
        return (0x7F ^ mask) as u8;
    }
    let mut aval = (seg as i32) << 4;
    aval |= if seg < 2 {
        (v >> 1) & 0xF
    } else {
        (v >> seg) & 0xF
    };
    (aval ^ mask) as u8
}

/// Decodes an A-law (PCMA) byte to a 16-bit linear sample.
pub fn alaw_to_linear(code: u8) -> i16 {
    let a = code ^ 0x55;
    let mut t = (i32::from(a) & 0x0F) << 4;
    let seg = (a & 0x70) >> 4;
    match seg {
        0 => t += 8,
        1 => t += 0x108,
        _ => {
            t += 0x108;
            t <<= seg - 1;
        }
    }
    (if a & 0x80 != 0 { t } else { -t }) as i16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ulaw_reference_values() {
        // Values of the ITU-T G.711 μ-law decoder in 16-bit linear (14-bit value << 2).
        assert_eq!(ulaw_to_linear(0x00), -32124);
        assert_eq!(ulaw_to_linear(0x80), 32124);
        assert_eq!(ulaw_to_linear(0xFF), 0);
        assert_eq!(ulaw_to_linear(0x7F), 0);
        assert_eq!(ulaw_to_linear(0xFE), 8);
        assert_eq!(ulaw_to_linear(0x7E), -8);
        assert_eq!(linear_to_ulaw(0), 0xFF);
        assert_eq!(linear_to_ulaw(-1), 0x7F);
        assert_eq!(linear_to_ulaw(i16::MAX), 0x80);
        assert_eq!(linear_to_ulaw(i16::MIN), 0x00);
    }

    #[test]
    fn alaw_reference_values() {
        assert_eq!(alaw_to_linear(0xD5), 8);
        assert_eq!(alaw_to_linear(0x55), -8);
        assert_eq!(alaw_to_linear(0xAA), 32256);
        assert_eq!(alaw_to_linear(0x2A), -32256);
        assert_eq!(linear_to_alaw(0), 0xD5);
        assert_eq!(linear_to_alaw(-1), 0x55);
        assert_eq!(linear_to_alaw(i16::MAX), 0xAA);
        assert_eq!(linear_to_alaw(i16::MIN), 0x2A);
    }

    #[test]
    fn every_code_survives_decode_then_encode() {
        for code in 0..=255u8 {
            let back = linear_to_ulaw(ulaw_to_linear(code));
            // 0x7F is μ-law's negative zero; it decodes to 0, which encodes as positive zero.
            let expected = if code == 0x7F { 0xFF } else { code };
            assert_eq!(back, expected, "μ-law code {code:#04x}");
            assert_eq!(
                linear_to_alaw(alaw_to_linear(code)),
                code,
                "A-law code {code:#04x}"
            );
        }
    }

    #[test]
    fn encoding_is_monotonic_and_error_is_within_half_a_step() {
        let (mut last_u, mut last_a) = (i16::MIN, i16::MIN);
        for s in i16::MIN..=i16::MAX {
            let du = ulaw_to_linear(linear_to_ulaw(s));
            let da = alaw_to_linear(linear_to_alaw(s));
            assert!(du >= last_u && da >= last_a, "not monotonic at {s}");
            last_u = du;
            last_a = da;
            // Quantisation error grows with the segment: at most half the step of the largest
            // segment (1024 for μ-law above 16-bit clip region, 512 for A-law) and at most ~3.2 %
            // of the magnitude plus the smallest step.
            let s32 = i32::from(s);
            let bound_u = (s32.abs() / 16).max(8) + 130; // clip region above 32635
            let bound_a = (s32.abs() / 16).max(16) + 260;
            assert!((i32::from(du) - s32).abs() <= bound_u, "μ-law {s} -> {du}");
            assert!((i32::from(da) - s32).abs() <= bound_a, "A-law {s} -> {da}");
        }
    }
}
