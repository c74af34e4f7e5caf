//! SDP offer/answer: any offer text is refused with a reason or answered, and our answer is
//! SDP that parses, keeps the offer's m= lines (RFC 3264 section 6) and uses a codec we
//! prefer with the caller's payload type.
//!
//! Input: the first byte picks the codec preferences (low 2 bits) and telephone-event (bit
//! 2); the rest is the offer (UTF-8, as signaling refuses anything else before this point).
#![no_main]

use bytesstr::BytesStr;
use ezk_sdp_types::SessionDescription;
use libfuzzer_sys::fuzz_target;
use milliwatt_media_core::Codec;
use milliwatt_signaling_core::sdp::{answer, negotiate};

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let Ok(offer) = std::str::from_utf8(rest) else {
        return;
    };
    let prefs: &[Codec] = match flags & 3 {
        0 => &[Codec::Pcmu, Codec::Pcma],
        1 => &[Codec::Pcma, Codec::Pcmu],
        2 => &[Codec::Pcmu],
        _ => &[Codec::Pcma],
    };
    let dtmf = flags & 4 != 0;
    let Ok(n) = negotiate(offer, prefs, dtmf) else {
        return;
    };
    assert!(
        prefs.contains(&n.codec),
        "negotiated {:?} not in {prefs:?}",
        n.codec
    );
    assert!(
        dtmf || n.dtmf_payload_type.is_none(),
        "telephone-event when disabled"
    );
    let offered = SessionDescription::parse(&BytesStr::from(offer)).expect("negotiated => parsed");
    for host in ["127.0.0.1", "::1"] {
        let text = answer(&n, host, 40_000, 1, 1);
        let ours = SessionDescription::parse(&BytesStr::from(text.as_str()))
            .unwrap_or_else(|e| panic!("our answer does not parse ({e}): {text:?}"));
        assert_eq!(
            ours.media_descriptions.len(),
            offered.media_descriptions.len(),
            "the answer's m= lines differ from the offer's: {text:?}"
        );
        let accepted: Vec<_> = ours
            .media_descriptions
            .iter()
            .filter(|m| m.media.port != 0)
            .collect();
        assert_eq!(accepted.len(), 1, "one accepted stream in {text:?}");
        assert_eq!(accepted[0].media.port, 40_000);
    }
});
