//! SDP offer/answer (RFC 3264) for a test line that sends a G.711 tone. Pure: text in, decision
//! and answer text out. Offers are parsed with ezk-sdp-types; the answer is written here and
//! parsed back by the tests.

use std::net::{IpAddr, SocketAddr};

use base64::Engine as _;
use bytesstr::BytesStr;
use ezk_sdp_types::{
    Direction, MediaDescription, MediaType, SessionDescription, SrtpSuite, TaggedAddress,
    TransportProtocol,
};
use milliwatt_media_core::srtp::{MasterKey, Suite};
use milliwatt_media_core::Codec;

/// SDES-SRTP (RFC 4568) as agreed: the crypto line's tag and suite, and the caller's master key
/// (for its stream to us).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sdes {
    pub tag: u32,
    pub suite: Suite,
    pub caller_key: MasterKey,
    /// The offer's profile, mirrored in the answer: `RTP/SAVP` or `RTP/SAVPF`.
    pub proto: &'static str,
}

/// The first `a=crypto` line of `m` we can take: a suite we implement, one `inline:` key of 30
/// bytes without MKI, no session parameters; or why none.
fn pick_crypto(m: &MediaDescription) -> Result<Sdes, String> {
    let proto = match m.media.proto {
        TransportProtocol::RtpSavpf => "RTP/SAVPF",
        _ => "RTP/SAVP",
    };
    let mut why = String::from("RTP/SAVP without an a=crypto line (RFC 4568 SDES keys)");
    for c in &m.crypto {
        let suite = match c.suite {
            SrtpSuite::AES_CM_128_HMAC_SHA1_80 => Suite::AesCm128HmacSha1_80,
            SrtpSuite::AES_CM_128_HMAC_SHA1_32 => Suite::AesCm128HmacSha1_32,
            ref other => {
                why = format!(
                    "crypto suite {other} is not supported (AES_CM_128_HMAC_SHA1_80 or _32)"
                );
                continue;
            }
        };
        if !c.params.is_empty() {
            why = format!(
                "crypto line {} has session parameters we do not implement",
                c.tag
            );
            continue;
        }
        let [key] = &c.keys[..] else {
            why = format!("crypto line {} has more than one key", c.tag);
            continue;
        };
        if key.mki.is_some() {
            why = format!(
                "crypto line {} uses an MKI, which we do not implement",
                c.tag
            );
            continue;
        }
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(key.key_and_salt.as_bytes())
            .ok()
            .and_then(|b| MasterKey::from_bytes(&b));
        match bytes {
            Some(caller_key) => {
                return Ok(Sdes {
                    tag: c.tag,
                    suite,
                    caller_key,
                    proto,
                })
            }
            None => why = format!("crypto line {} has no 30-byte base64 inline key", c.tag),
        }
    }
    Err(why)
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SdpError {
    /// Answer 400: the body is not SDP.
    #[error("unparseable SDP: {0}")]
    Unparseable(String),
    /// Answer 488: SDP, but nothing we can answer.
    #[error("{0}")]
    NotAcceptable(String),
}

/// What we agreed with the caller.
#[derive(Debug, Clone, PartialEq)]
pub struct Negotiated {
    pub codec: Codec,
    /// The payload type to send the codec with (the caller's number for it).
    pub payload_type: u8,
    /// The caller's payload type for telephone-event, when offered and enabled.
    pub dtmf_payload_type: Option<u8>,
    /// Where the caller wants RTP; `None` when it holds (c=0.0.0.0) or the stream is inactive.
    pub remote: Option<SocketAddr>,
    /// Our direction in the answer.
    pub direction: Direction,
    /// Whether we should send the tone (the caller receives, and told us where).
    pub send: bool,
    /// The offer asks for RTP and RTCP on one port (RFC 5761 `a=rtcp-mux`): we accept, and
    /// media holds one socket for the session instead of two.
    pub rtcp_mux: bool,
    /// SRTP with SDES keys (an `RTP/SAVP` offer with a usable `a=crypto` line); `None`: RTP.
    pub srtp: Option<Sdes>,
    /// Index of the audio stream we accepted among the offer's m= lines.
    audio_index: usize,
    /// The offer's m= lines (type, proto, formats) to mirror as rejected in the answer.
    rejected: Vec<(usize, String)>,
    m_lines: usize,
}

fn codec_of(encoding: &str, clock_rate: u32) -> Option<Codec> {
    if clock_rate != 8000 {
        return None;
    }
    if encoding.eq_ignore_ascii_case("PCMU") {
        Some(Codec::Pcmu)
    } else if encoding.eq_ignore_ascii_case("PCMA") {
        Some(Codec::Pcma)
    } else {
        None
    }
}

/// The codec a payload type means in this m= line: its rtpmap, or the static assignment.
fn format_codec(m: &MediaDescription, pt: u8) -> Option<Codec> {
    match m.rtpmap.iter().find(|r| r.payload == pt) {
        Some(r) => codec_of(&r.encoding, r.clock_rate),
        None => match pt {
            0 => Some(Codec::Pcmu),
            8 => Some(Codec::Pcma),
            _ => None,
        },
    }
}

fn address_of(a: &TaggedAddress) -> Result<IpAddr, SdpError> {
    match a {
        TaggedAddress::IP4(ip) => Ok(IpAddr::V4(*ip)),
        TaggedAddress::IP6(ip) => Ok(IpAddr::V6(*ip)),
        TaggedAddress::IP4FQDN(h) | TaggedAddress::IP6FQDN(h) => Err(SdpError::NotAcceptable(
            format!("c= carries the host name {h:?}; an IP address is required"),
        )),
    }
}

/// Chooses the first of `prefs` that the offer's first usable audio stream contains.
pub fn negotiate(offer: &str, prefs: &[Codec], dtmf: bool) -> Result<Negotiated, SdpError> {
    let sdp = SessionDescription::parse(&BytesStr::from(offer))
        .map_err(|e| SdpError::Unparseable(e.to_string()))?;
    if sdp.media_descriptions.is_empty() {
        return Err(SdpError::NotAcceptable("the offer has no m= line".into()));
    }
    let mut reason = String::from("the offer has no audio stream");
    let mut chosen = None;
    for (i, m) in sdp.media_descriptions.iter().enumerate() {
        if m.media.media_type != MediaType::Audio || m.media.port == 0 {
            continue;
        }
        let srtp = match m.media.proto {
            TransportProtocol::RtpAvp | TransportProtocol::RtpAvpf => None,
            TransportProtocol::RtpSavp | TransportProtocol::RtpSavpf => match pick_crypto(m) {
                Ok(s) => Some(s),
                Err(why) => {
                    reason = why;
                    continue;
                }
            },
            _ => {
                reason = format!(
                    "audio over {} is not supported (RTP/AVP, or RTP/SAVP with SDES keys)",
                    m.media.proto
                );
                continue;
            }
        };
        let pick = prefs.iter().find_map(|want| {
            m.media
                .fmts
                .iter()
                .find(|&&pt| format_codec(m, pt) == Some(*want))
                .map(|&pt| (*want, pt))
        });
        match pick {
            Some(p) => {
                chosen = Some((i, m, p, srtp));
                break;
            }
            None => {
                reason = format!(
                    "no common codec: offered payload types {:?}, we accept {:?} at 8000 Hz",
                    m.media.fmts, prefs
                );
            }
        }
    }
    let Some((audio_index, m, (codec, payload_type), srtp)) = chosen else {
        return Err(SdpError::NotAcceptable(reason));
    };
    let connection = m
        .connection
        .as_ref()
        .or(sdp.connection.as_ref())
        .ok_or_else(|| SdpError::NotAcceptable("the offer has no c= line".into()))?;
    let ip = address_of(&connection.address)?;
    // No amplification: a stream only ever goes to one host (milliwatt_media_core::destination).
    if let Some(why) = milliwatt_media_core::destination::not_unicast(ip) {
        return Err(SdpError::NotAcceptable(format!("c=: {why}")));
    }
    let dtmf_payload_type = dtmf
        .then(|| {
            m.rtpmap
                .iter()
                .find(|r| {
                    r.encoding.eq_ignore_ascii_case("telephone-event") && r.clock_rate == 8000
                })
                .map(|r| r.payload)
                .filter(|pt| m.media.fmts.contains(pt))
        })
        .flatten();
    // The stream's direction, else the session's (both default to sendrecv).
    let offered = if m.direction != Direction::SendRecv {
        m.direction
    } else {
        sdp.direction
    };
    let hold_address = ip.is_unspecified();
    let direction = offered.flipped();
    let caller_receives = matches!(offered, Direction::SendRecv | Direction::RecvOnly);
    let remote = (!hold_address).then(|| SocketAddr::new(ip, m.media.port));
    let rejected = sdp
        .media_descriptions
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != audio_index)
        .map(|(i, m)| {
            let fmts: Vec<String> = m.media.fmts.iter().map(u8::to_string).collect();
            let fmts = if fmts.is_empty() {
                "0".to_string()
            } else {
                fmts.join(" ")
            };
            (
                i,
                format!("{} 0 {} {}", m.media.media_type, m.media.proto, fmts),
            )
        })
        .collect();
    Ok(Negotiated {
        codec,
        payload_type,
        dtmf_payload_type,
        remote,
        direction,
        send: caller_receives && remote.is_some(),
        rtcp_mux: m.rtcp_mux,
        srtp,
        audio_index,
        rejected,
        m_lines: sdp.media_descriptions.len(),
    })
}

/// Writes the answer: our address and port on the accepted audio stream, the other streams
/// rejected (port 0) in the offer's order.
pub fn answer(n: &Negotiated, host: &str, port: u16, session_id: u64, version: u64) -> String {
    answer_with_key(n, host, port, session_id, version, None)
}

/// [`answer`], with our SDES master key in the `a=crypto` line when the stream is SRTP (the
/// offer's tag and suite; RFC 4568 §5.1.2).
pub fn answer_with_key(
    n: &Negotiated,
    host: &str,
    port: u16,
    session_id: u64,
    version: u64,
    our_key: Option<&MasterKey>,
) -> String {
    let (net, addr_type) = match host.parse::<IpAddr>() {
        Ok(IpAddr::V6(_)) => ("IN", "IP6"),
        _ => ("IN", "IP4"),
    };
    let codec_name = match n.codec {
        Codec::Pcmu => "PCMU",
        Codec::Pcma => "PCMA",
    };
    let mut out = format!(
        "v=0\r\no=milliwatt {session_id} {version} {net} {addr_type} {host}\r\ns=milliwatt\r\n\
         c={net} {addr_type} {host}\r\nt=0 0\r\n"
    );
    for i in 0..n.m_lines {
        if i != n.audio_index {
            let line = &n
                .rejected
                .iter()
                .find(|(j, _)| *j == i)
                .expect("every other m= line")
                .1;
            out.push_str(&format!("m={line}\r\n"));
            continue;
        }
        let mut fmts = n.payload_type.to_string();
        if let Some(dtmf) = n.dtmf_payload_type {
            fmts.push_str(&format!(" {dtmf}"));
        }
        let proto = n.srtp.as_ref().map_or("RTP/AVP", |s| s.proto);
        out.push_str(&format!("m=audio {port} {proto} {fmts}\r\n"));
        if let (Some(s), Some(key)) = (&n.srtp, our_key) {
            out.push_str(&format!(
                "a=crypto:{} {} inline:{}\r\n",
                s.tag,
                s.suite.name(),
                base64::engine::general_purpose::STANDARD.encode(key.to_bytes())
            ));
        }
        out.push_str(&format!(
            "a=rtpmap:{} {codec_name}/8000\r\n",
            n.payload_type
        ));
        if let Some(dtmf) = n.dtmf_payload_type {
            out.push_str(&format!(
                "a=rtpmap:{dtmf} telephone-event/8000\r\na=fmtp:{dtmf} 0-16\r\n"
            ));
        }
        out.push_str(&format!("a=ptime:20\r\na={}\r\n", n.direction.as_str()));
        if n.rtcp_mux {
            out.push_str("a=rtcp-mux\r\n");
        }
    }
    out
}

/// Our offer for a late-offer INVITE (RFC 3261 13.2.1, RFC 3264 5): one audio stream at
/// `host:port` with `codecs` in order of preference (static payload types 0 and 8) and, with
/// `dtmf`, telephone-event on 101; sendrecv, 20 ms.
pub fn offer(
    codecs: &[Codec],
    dtmf: bool,
    host: &str,
    port: u16,
    session_id: u64,
    version: u64,
) -> String {
    let addr_type = match host.parse::<IpAddr>() {
        Ok(IpAddr::V6(_)) => "IP6",
        _ => "IP4",
    };
    let mut fmts: Vec<String> = codecs
        .iter()
        .map(|c| static_payload_type(*c).to_string())
        .collect();
    if dtmf {
        fmts.push(OFFER_DTMF_PAYLOAD_TYPE.to_string());
    }
    let mut out = format!(
        "v=0\r\no=milliwatt {session_id} {version} IN {addr_type} {host}\r\ns=milliwatt\r\n\
         c=IN {addr_type} {host}\r\nt=0 0\r\nm=audio {port} RTP/AVP {}\r\n",
        fmts.join(" ")
    );
    for c in codecs {
        let name = match c {
            Codec::Pcmu => "PCMU",
            Codec::Pcma => "PCMA",
        };
        out.push_str(&format!(
            "a=rtpmap:{} {name}/8000\r\n",
            static_payload_type(*c)
        ));
    }
    if dtmf {
        out.push_str(&format!(
            "a=rtpmap:{OFFER_DTMF_PAYLOAD_TYPE} telephone-event/8000\r\n\
             a=fmtp:{OFFER_DTMF_PAYLOAD_TYPE} 0-16\r\n"
        ));
    }
    out.push_str("a=ptime:20\r\na=sendrecv\r\n");
    out
}

/// The payload type we offer telephone-event with (the usual dynamic choice).
pub const OFFER_DTMF_PAYLOAD_TYPE: u8 = 101;

/// RFC 3551's static payload type of a G.711 law.
fn static_payload_type(c: Codec) -> u8 {
    match c {
        Codec::Pcmu => 0,
        Codec::Pcma => 8,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_late_offer_lists_our_codecs_in_order_and_its_answer_negotiates() {
        let o = super::offer(&[Codec::Pcma, Codec::Pcmu], true, "192.0.2.1", 20000, 7, 1);
        assert!(
            o.starts_with("v=0\r\no=milliwatt 7 1 IN IP4 192.0.2.1\r\n"),
            "{o}"
        );
        assert!(o.contains("c=IN IP4 192.0.2.1\r\n"), "{o}");
        assert!(o.contains("m=audio 20000 RTP/AVP 8 0 101\r\n"), "{o}");
        for l in [
            "a=rtpmap:8 PCMA/8000",
            "a=rtpmap:0 PCMU/8000",
            "a=rtpmap:101 telephone-event/8000",
            "a=fmtp:101 0-16",
            "a=sendrecv",
        ] {
            assert!(o.contains(&format!("{l}\r\n")), "{l} in {o}");
        }
        let v6 = super::offer(&[Codec::Pcmu], false, "2001:db8::1", 4000, 1, 1);
        assert!(
            v6.contains("c=IN IP6 2001:db8::1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"),
            "{v6}"
        );
        assert!(!v6.contains("telephone-event"));
        // The caller's answer picks one of them; it negotiates like an offer would.
        let answer = "v=0\r\no=c 1 1 IN IP4 198.51.100.2\r\ns=-\r\nc=IN IP4 198.51.100.2\r\n\
                      t=0 0\r\nm=audio 5000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";
        let n = negotiate(answer, &[Codec::Pcma, Codec::Pcmu], true).unwrap();
        assert_eq!((n.codec, n.payload_type), (Codec::Pcmu, 0));
        assert_eq!(n.remote, Some("198.51.100.2:5000".parse().unwrap()));
        assert!(n.send);
    }

    #[test]
    fn multicast_and_broadcast_addresses_are_refused_loopback_and_unicast_are_not() {
        let offer = |c: &str| {
            let family = if c.contains(':') { "IP6" } else { "IP4" };
            format!(
                "v=0\r\no=- 1 1 IN {family} {c}\r\ns=-\r\nc=IN {family} {c}\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"
            )
        };
        for bad in [
            "224.0.0.1",
            "239.255.255.250",
            "255.255.255.255",
            "ff02::1",
            "::ffff:224.0.0.5",
        ] {
            match negotiate(&offer(bad), &[Codec::Pcmu], false) {
                Err(SdpError::NotAcceptable(why)) => {
                    assert!(why.contains("unicast"), "{bad}: {why}")
                }
                other => panic!("{bad}: {other:?}"),
            }
        }
        for good in ["127.0.0.1", "192.0.2.10", "10.1.2.3", "::1", "2001:db8::1"] {
            let n = negotiate(&offer(good), &[Codec::Pcmu], false).expect(good);
            assert!(n.remote.is_some(), "{good}");
        }
    }
    use Codec::{Pcma as PCMA, Pcmu as PCMU};

    fn offer(m: &str, extra: &str) -> String {
        format!(
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm={m}\r\n{extra}"
        )
    }

    #[test]
    fn our_preference_order_wins() {
        let o = offer(
            "audio 4000 RTP/AVP 8 0 101",
            "a=rtpmap:101 telephone-event/8000\r\n",
        );
        let n = negotiate(&o, &[PCMU, PCMA], true).unwrap();
        assert_eq!((n.codec, n.payload_type), (PCMU, 0));
        assert_eq!(n.dtmf_payload_type, Some(101));
        assert_eq!(n.remote, Some("127.0.0.1:4000".parse().unwrap()));
        assert!(n.send);
        let n = negotiate(&o, &[PCMA, PCMU], true).unwrap();
        assert_eq!((n.codec, n.payload_type), (PCMA, 8));
        let n = negotiate(&offer("audio 4000 RTP/AVP 8", ""), &[PCMU, PCMA], true).unwrap();
        assert_eq!(n.codec, PCMA);
    }

    #[test]
    fn dynamic_payload_types_and_case() {
        let o = offer("audio 4000 RTP/AVP 96", "a=rtpmap:96 pcmu/8000\r\n");
        let n = negotiate(&o, &[PCMA, PCMU], false).unwrap();
        assert_eq!((n.codec, n.payload_type), (PCMU, 96));
        let o = offer("audio 4000 RTP/AVP 96", "a=rtpmap:96 PCMU/16000\r\n");
        assert!(matches!(
            negotiate(&o, &[PCMU], false),
            Err(SdpError::NotAcceptable(_))
        ));
    }

    #[test]
    fn no_common_codec_is_488_material() {
        let o = offer("audio 4000 RTP/AVP 18 9", "");
        let e = negotiate(&o, &[PCMU, PCMA], true).unwrap_err();
        assert!(
            matches!(&e, SdpError::NotAcceptable(r) if r.contains("no common codec")),
            "{e}"
        );
        let o = offer("video 4000 RTP/AVP 96", "a=rtpmap:96 VP8/90000\r\n");
        assert!(matches!(
            negotiate(&o, &[PCMU], true),
            Err(SdpError::NotAcceptable(_))
        ));
        let o = offer("audio 4000 RTP/SAVP 0", "");
        assert!(
            matches!(negotiate(&o, &[PCMU], true), Err(SdpError::NotAcceptable(r)) if r.contains("RTP/SAVP"))
        );
    }

    /// The RFC 3711 B.3 master key, base64 (what a caller's `inline:` would carry).
    const KEY_B64: &str = "4fl6DT4Bi+DWT6MsBt5BOQ7Gda1Jiv7rtpYLOqvm";

    #[test]
    fn an_sdes_offer_is_answered_with_our_key_in_its_suite() {
        let o = offer(
            "audio 4000 RTP/SAVP 0",
            &format!(
                "a=crypto:1 AES_256_CM_HMAC_SHA1_80 inline:{KEY_B64}{KEY_B64}\r\n\
                 a=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:{KEY_B64}|2^31\r\n\
                 a=crypto:3 AES_CM_128_HMAC_SHA1_80 inline:{KEY_B64}\r\n"
            ),
        );
        let n = negotiate(&o, &[PCMU], false).unwrap();
        let s = n.srtp.clone().expect("SRTP");
        assert_eq!(
            (s.tag, s.suite),
            (2, Suite::AesCm128HmacSha1_32),
            "the first usable line"
        );
        assert_eq!(
            s.caller_key.to_bytes().to_vec(),
            base64::engine::general_purpose::STANDARD
                .decode(KEY_B64)
                .unwrap()
        );
        let ours = MasterKey::from_bytes(&[7; 30]).unwrap();
        let a = answer_with_key(&n, "192.0.2.1", 20000, 1, 1, Some(&ours));
        assert!(a.contains("m=audio 20000 RTP/SAVP 0\r\n"), "{a}");
        let want = format!(
            "a=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:{}\r\n",
            base64::engine::general_purpose::STANDARD.encode([7u8; 30])
        );
        assert!(a.contains(&want), "{a}");
        // Our answer parses back with the same crypto line.
        let back = SessionDescription::parse(&BytesStr::from(a.as_str())).unwrap();
        assert_eq!(back.media_descriptions[0].crypto.len(), 1);
        // A plain offer stays plain.
        let plain = negotiate(&offer("audio 4000 RTP/AVP 0", ""), &[PCMU], false).unwrap();
        assert!(plain.srtp.is_none());
        assert!(
            answer_with_key(&plain, "192.0.2.1", 20000, 1, 1, Some(&ours))
                .contains("m=audio 20000 RTP/AVP 0\r\n")
        );
    }

    #[test]
    fn sdes_offers_we_cannot_take_get_488_saying_why() {
        for (crypto, says) in [
            (String::new(), "without an a=crypto line"),
            (
                format!("a=crypto:1 AES_256_CM_HMAC_SHA1_80 inline:{KEY_B64}{KEY_B64}\r\n"),
                "is not supported",
            ),
            (
                format!("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{KEY_B64}|2^20|1:4\r\n"),
                "MKI",
            ),
            (
                format!("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{KEY_B64} KDR=1\r\n"),
                "session parameters",
            ),
            (
                "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:c2hvcnQ=\r\n".into(),
                "30-byte",
            ),
        ] {
            let o = offer("audio 4000 RTP/SAVP 0", &crypto);
            match negotiate(&o, &[PCMU], false) {
                Err(SdpError::NotAcceptable(why)) => assert!(why.contains(says), "{crypto}: {why}"),
                other => panic!("{crypto}: {other:?}"),
            }
        }
    }

    #[test]
    fn telephone_event_only_when_enabled_and_offered() {
        let o = offer(
            "audio 4000 RTP/AVP 0 101",
            "a=rtpmap:101 telephone-event/8000\r\n",
        );
        assert_eq!(
            negotiate(&o, &[PCMU], false).unwrap().dtmf_payload_type,
            None
        );
        let o = offer("audio 4000 RTP/AVP 0", "");
        assert_eq!(
            negotiate(&o, &[PCMU], true).unwrap().dtmf_payload_type,
            None
        );
    }

    #[test]
    fn garbage_is_unparseable() {
        assert!(matches!(
            negotiate("hello", &[PCMU], true),
            Err(SdpError::Unparseable(_))
        ));
        assert!(matches!(
            negotiate("v=0\r\nm=audio x RTP/AVP 0\r\n", &[PCMU], true),
            Err(SdpError::Unparseable(_))
        ));
    }

    #[test]
    fn hold_and_directions() {
        let hold = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";
        let n = negotiate(hold, &[PCMU], true).unwrap();
        assert_eq!(n.remote, None);
        assert!(!n.send);
        let n = negotiate(
            &offer("audio 4000 RTP/AVP 0", "a=sendonly\r\n"),
            &[PCMU],
            true,
        )
        .unwrap();
        assert_eq!(n.direction, Direction::RecvOnly);
        assert!(!n.send);
        let n = negotiate(
            &offer("audio 4000 RTP/AVP 0", "a=recvonly\r\n"),
            &[PCMU],
            true,
        )
        .unwrap();
        assert_eq!(n.direction, Direction::SendOnly);
        assert!(n.send);
    }

    #[test]
    fn answer_mirrors_the_offer_streams_and_parses() {
        let o = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
             m=video 5000 RTP/AVP 96\r\na=rtpmap:96 VP8/90000\r\n\
             m=audio 4000 RTP/AVP 8 0 101\r\na=rtpmap:101 telephone-event/8000\r\n";
        let n = negotiate(o, &[PCMU, PCMA], true).unwrap();
        let a = answer(&n, "192.0.2.10", 10002, 42, 1);
        let parsed = SessionDescription::parse(&BytesStr::from(a.as_str())).unwrap();
        assert_eq!(parsed.media_descriptions.len(), 2);
        let video = &parsed.media_descriptions[0];
        assert_eq!(
            (video.media.media_type, video.media.port),
            (MediaType::Video, 0)
        );
        let audio = &parsed.media_descriptions[1];
        assert_eq!(audio.media.port, 10002);
        assert_eq!(audio.media.fmts, vec![0, 101]);
        assert_eq!(audio.rtpmap.len(), 2);
        assert_eq!(audio.fmtp[0].params.as_str(), "0-16");
        assert_eq!(audio.direction, Direction::SendRecv);
        assert!(a.contains("c=IN IP4 192.0.2.10\r\n"));
        assert!(a.contains("a=ptime:20\r\n"));
        assert!(!n.rtcp_mux && !audio.rtcp_mux, "no rtcp-mux unless offered");
    }

    #[test]
    fn rtcp_mux_is_accepted_when_offered() {
        let o = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
             m=audio 4000 RTP/AVP 0\r\na=rtcp-mux\r\n";
        let n = negotiate(o, &[PCMU], false).unwrap();
        assert!(n.rtcp_mux);
        let a = answer(&n, "192.0.2.10", 10002, 42, 1);
        let parsed = SessionDescription::parse(&BytesStr::from(a.as_str())).unwrap();
        assert!(parsed.media_descriptions[0].rtcp_mux, "{a}");
    }
}
