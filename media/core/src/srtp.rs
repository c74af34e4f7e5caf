//! SRTP and SRTCP (RFC 3711) for the SDES suites `AES_CM_128_HMAC_SHA1_80` and
//! `AES_CM_128_HMAC_SHA1_32` (RFC 4568): session key derivation (key derivation rate 0, no MKI),
//! AES-128 counter-mode encryption, HMAC-SHA1 authentication, the rollover counter and a replay
//! window. Pure: master keys in, packets in and out; the shells own sockets and keys' origin.

use aes::cipher::{KeyIvInit, StreamCipher};
use hmac::{Hmac, Mac};
use sha1::Sha1;

type Aes128Ctr = ctr::Ctr128BE<aes::Aes128>;
type HmacSha1 = Hmac<Sha1>;

/// Master key and master salt lengths of the AES_CM_128 suites.
pub const MASTER_KEY_LEN: usize = 16;
pub const MASTER_SALT_LEN: usize = 14;
/// SRTCP's authentication tag: 80 bits with either suite (RFC 4568 §6.2).
const SRTCP_TAG_LEN: usize = 10;
/// Received packets older than this many indexes behind the newest are refused.
const REPLAY_WINDOW: u64 = 64;

/// An SDES crypto suite (RFC 4568 §6.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Suite {
    AesCm128HmacSha1_80,
    AesCm128HmacSha1_32,
}

impl Suite {
    pub fn name(self) -> &'static str {
        match self {
            Suite::AesCm128HmacSha1_80 => "AES_CM_128_HMAC_SHA1_80",
            Suite::AesCm128HmacSha1_32 => "AES_CM_128_HMAC_SHA1_32",
        }
    }

    pub fn from_name(name: &str) -> Option<Suite> {
        [Suite::AesCm128HmacSha1_80, Suite::AesCm128HmacSha1_32]
            .into_iter()
            .find(|s| s.name() == name)
    }

    /// The SRTP authentication tag's length in bytes.
    pub fn tag_len(self) -> usize {
        match self {
            Suite::AesCm128HmacSha1_80 => 10,
            Suite::AesCm128HmacSha1_32 => 4,
        }
    }
}

/// A master key and salt (the 30 bytes of an SDES `inline:` key).
#[derive(Clone, PartialEq, Eq)]
pub struct MasterKey {
    pub key: [u8; MASTER_KEY_LEN],
    pub salt: [u8; MASTER_SALT_LEN],
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

impl MasterKey {
    /// From the 30 bytes of key || salt.
    pub fn from_bytes(b: &[u8]) -> Option<MasterKey> {
        if b.len() != MASTER_KEY_LEN + MASTER_SALT_LEN {
            return None;
        }
        let mut key = [0; MASTER_KEY_LEN];
        let mut salt = [0; MASTER_SALT_LEN];
        key.copy_from_slice(&b[..MASTER_KEY_LEN]);
        salt.copy_from_slice(&b[MASTER_KEY_LEN..]);
        Some(MasterKey { key, salt })
    }

    pub fn to_bytes(&self) -> [u8; MASTER_KEY_LEN + MASTER_SALT_LEN] {
        let mut b = [0; MASTER_KEY_LEN + MASTER_SALT_LEN];
        b[..MASTER_KEY_LEN].copy_from_slice(&self.key);
        b[MASTER_KEY_LEN..].copy_from_slice(&self.salt);
        b
    }

    /// A session key of `len` bytes for `label` (RFC 3711 §4.3.1, key derivation rate 0): the
    /// AES-CM keystream of the master key from IV = (master salt XOR label at byte 7) || 0x0000.
    fn derive(&self, label: u8, len: usize) -> Vec<u8> {
        let mut iv = [0u8; 16];
        iv[..MASTER_SALT_LEN].copy_from_slice(&self.salt);
        iv[7] ^= label;
        let mut out = vec![0u8; len];
        Aes128Ctr::new(&self.key.into(), &iv.into()).apply_keystream(&mut out);
        out
    }
}

/// A session's SRTP: the suite, our master key (what we send) and the caller's (what it sends).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SrtpKeys {
    pub suite: Suite,
    pub send: MasterKey,
    pub recv: MasterKey,
}

/// One direction's session keys (SRTP or SRTCP).
#[derive(Clone)]
struct SessionKeys {
    enc: [u8; 16],
    salt: [u8; 14],
    auth: HmacSha1,
}

impl SessionKeys {
    fn new(master: &MasterKey, labels: (u8, u8, u8)) -> SessionKeys {
        let mut enc = [0; 16];
        enc.copy_from_slice(&master.derive(labels.0, 16));
        let mut salt = [0; 14];
        salt.copy_from_slice(&master.derive(labels.2, 14));
        let auth = HmacSha1::new_from_slice(&master.derive(labels.1, 20)).expect("any key length");
        SessionKeys { enc, salt, auth }
    }

    /// XORs the keystream for packet `index` of `ssrc` into `data` (RFC 3711 §4.1.1: IV =
    /// salt·2^16 XOR SSRC·2^64 XOR index·2^16).
    fn crypt(&self, ssrc: u32, index: u64, data: &mut [u8]) {
        let mut iv = [0u8; 16];
        iv[..14].copy_from_slice(&self.salt);
        for (i, b) in ssrc.to_be_bytes().iter().enumerate() {
            iv[4 + i] ^= b;
        }
        for (i, b) in index.to_be_bytes()[2..].iter().enumerate() {
            iv[8 + i] ^= b;
        }
        Aes128Ctr::new(&self.enc.into(), &iv.into()).apply_keystream(data);
    }

    fn tag(&self, parts: &[&[u8]]) -> [u8; 20] {
        let mut mac = self.auth.clone();
        for p in parts {
            mac.update(p);
        }
        mac.finalize().into_bytes().into()
    }
}

/// Why a received packet was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SrtpError {
    #[error("too short for SRTP")]
    TooShort,
    #[error("authentication failed")]
    Auth,
    #[error("replayed or too old")]
    Replay,
}

/// Length of an RTP header with its CSRCs and extension, if `p` holds one.
fn rtp_header_len(p: &[u8]) -> Option<usize> {
    if p.len() < 12 {
        return None;
    }
    let mut len = 12 + 4 * usize::from(p[0] & 0x0F);
    if p[0] & 0x10 != 0 {
        let ext = p.get(len + 2..len + 4)?;
        len += 4 + 4 * usize::from(u16::from_be_bytes([ext[0], ext[1]]));
    }
    (len <= p.len()).then_some(len)
}

/// The sending side of one SRTP stream and its SRTCP.
#[derive(Clone)]
pub struct SrtpSender {
    suite: Suite,
    rtp: SessionKeys,
    rtcp: SessionKeys,
    /// Rollover counter and the last sequence number sent.
    roc: u32,
    last_seq: Option<u16>,
    rtcp_index: u32,
}

impl SrtpSender {
    pub fn new(suite: Suite, master: &MasterKey) -> SrtpSender {
        SrtpSender {
            suite,
            rtp: SessionKeys::new(master, (0, 1, 2)),
            rtcp: SessionKeys::new(master, (3, 4, 5)),
            roc: 0,
            last_seq: None,
            rtcp_index: 0,
        }
    }

    /// Bytes SRTP adds to an RTP packet.
    pub fn overhead(&self) -> usize {
        self.suite.tag_len()
    }

    /// Protects the RTP packet in `buf[..len]` in place: its payload encrypted and the tag
    /// appended; returns the new length. `buf` must have room for [`SrtpSender::overhead`] more.
    pub fn protect(&mut self, buf: &mut [u8], len: usize) -> usize {
        let header = rtp_header_len(&buf[..len]).expect("an RTP packet of ours");
        let seq = u16::from_be_bytes([buf[2], buf[3]]);
        let ssrc = u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]);
        // Sequence numbers we send only go forward: a wrap is a new roll.
        if let Some(last) = self.last_seq {
            if seq < last && last - seq > 0x8000 {
                self.roc = self.roc.wrapping_add(1);
            }
        }
        self.last_seq = Some(seq);
        let index = (u64::from(self.roc) << 16) | u64::from(seq);
        self.rtp.crypt(ssrc, index, &mut buf[header..len]);
        let tag = self.rtp.tag(&[&buf[..len], &self.roc.to_be_bytes()]);
        let t = self.suite.tag_len();
        buf[len..len + t].copy_from_slice(&tag[..t]);
        len + t
    }

    /// Protects an RTCP compound packet: encrypted after its first 8 bytes, E flag and SRTCP
    /// index appended, then the 80-bit tag.
    pub fn protect_rtcp(&mut self, packet: &[u8]) -> Vec<u8> {
        let mut out = packet.to_vec();
        if out.len() < 8 {
            return out;
        }
        let ssrc = u32::from_be_bytes([out[4], out[5], out[6], out[7]]);
        let index = self.rtcp_index & 0x7FFF_FFFF;
        self.rtcp_index = self.rtcp_index.wrapping_add(1) & 0x7FFF_FFFF;
        self.rtcp.crypt(ssrc, u64::from(index), &mut out[8..]);
        out.extend_from_slice(&(0x8000_0000 | index).to_be_bytes());
        let tag = self.rtcp.tag(&[&out]);
        out.extend_from_slice(&tag[..SRTCP_TAG_LEN]);
        out
    }
}

/// The receiving side of the caller's SRTP stream and its SRTCP.
#[derive(Clone)]
pub struct SrtpReceiver {
    suite: Suite,
    rtp: SessionKeys,
    rtcp: SessionKeys,
    /// The highest index received and a bitmap of the `REPLAY_WINDOW` before it.
    highest: Option<u64>,
    window: u64,
    rtcp_highest: Option<u32>,
}

impl SrtpReceiver {
    pub fn new(suite: Suite, master: &MasterKey) -> SrtpReceiver {
        SrtpReceiver {
            suite,
            rtp: SessionKeys::new(master, (0, 1, 2)),
            rtcp: SessionKeys::new(master, (3, 4, 5)),
            highest: None,
            window: 0,
            rtcp_highest: None,
        }
    }

    /// The packet index of sequence number `seq` (RFC 3711 §3.3.1 / Appendix A).
    fn estimate(&self, seq: u16) -> u64 {
        let Some(h) = self.highest else {
            return u64::from(seq);
        };
        let (roc, s_l) = (h >> 16, (h & 0xFFFF) as u16);
        let v = if s_l < 0x8000 {
            if seq > s_l && seq - s_l > 0x8000 {
                roc.wrapping_sub(1)
            } else {
                roc
            }
        } else if s_l - 0x8000 > seq {
            roc + 1
        } else {
            roc
        };
        (v << 16) | u64::from(seq)
    }

    /// Checks the SRTP packet `p` and decrypts it in place (no allocation per packet): the RTP
    /// packet is then `p[..len]` (the tag cut off), or why not (`p` unchanged).
    pub fn unprotect_in_place(&mut self, p: &mut [u8]) -> Result<usize, SrtpError> {
        let t = self.suite.tag_len();
        if p.len() < 12 + t {
            return Err(SrtpError::TooShort);
        }
        let (body, tag) = p.split_at_mut(p.len() - t);
        let header = rtp_header_len(body).ok_or(SrtpError::TooShort)?;
        let seq = u16::from_be_bytes([body[2], body[3]]);
        let ssrc = u32::from_be_bytes([body[8], body[9], body[10], body[11]]);
        let index = self.estimate(seq);
        if let Some(h) = self.highest {
            if index <= h && (h - index >= REPLAY_WINDOW || self.window & (1 << (h - index)) != 0) {
                return Err(SrtpError::Replay);
            }
        }
        let roc = ((index >> 16) as u32).to_be_bytes();
        let want = self.rtp.tag(&[&*body, &roc]);
        if !constant_time_eq(&want[..t], tag) {
            return Err(SrtpError::Auth);
        }
        match self.highest {
            Some(h) if index <= h => self.window |= 1 << (h - index),
            Some(h) => {
                let shift = index - h;
                self.window = if shift >= 64 { 0 } else { self.window << shift };
                self.window |= 1;
                self.highest = Some(index);
            }
            None => {
                self.highest = Some(index);
                self.window = 1;
            }
        }
        self.rtp.crypt(ssrc, index, &mut body[header..]);
        Ok(body.len())
    }

    /// [`SrtpReceiver::unprotect_in_place`] on a copy: the RTP packet, or why not.
    #[cfg(test)]
    fn unprotect(&mut self, p: &[u8]) -> Result<Vec<u8>, SrtpError> {
        let mut out = p.to_vec();
        let len = self.unprotect_in_place(&mut out)?;
        out.truncate(len);
        Ok(out)
    }

    /// Checks and decrypts an SRTCP packet: the RTCP compound packet, or why not.
    pub fn unprotect_rtcp(&mut self, p: &[u8]) -> Result<Vec<u8>, SrtpError> {
        if p.len() < 8 + 4 + SRTCP_TAG_LEN {
            return Err(SrtpError::TooShort);
        }
        let (body, tag) = p.split_at(p.len() - SRTCP_TAG_LEN);
        let want = self.rtcp.tag(&[body]);
        if !constant_time_eq(&want[..SRTCP_TAG_LEN], tag) {
            return Err(SrtpError::Auth);
        }
        let (packet, e_index) = body.split_at(body.len() - 4);
        let e_index = u32::from_be_bytes([e_index[0], e_index[1], e_index[2], e_index[3]]);
        let index = e_index & 0x7FFF_FFFF;
        if self.rtcp_highest.is_some_and(|h| index <= h) {
            return Err(SrtpError::Replay);
        }
        self.rtcp_highest = Some(index);
        let mut out = packet.to_vec();
        if e_index & 0x8000_0000 != 0 {
            let ssrc = u32::from_be_bytes([out[4], out[5], out[6], out[7]]);
            self.rtcp.crypt(ssrc, u64::from(index), &mut out[8..]);
        }
        Ok(out)
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn master() -> MasterKey {
        MasterKey::from_bytes(&hex(
            "E1F97A0D3E018BE0D64FA32C06DE41390EC675AD498AFEEBB6960B3AABE6",
        ))
        .unwrap()
    }

    #[test]
    fn session_keys_derive_as_rfc_3711_appendix_b3_lists_them() {
        let m = master();
        assert_eq!(m.derive(0, 16), hex("C61E7A93744F39EE10734AFE3FF7A087"));
        assert_eq!(m.derive(2, 14), hex("30CBBC08863D8C85D49DB34A9AE1"));
        assert_eq!(
            m.derive(1, 20),
            hex("CEBE321F6FF7716B6FD4AB49AF256A156D38BAA4")
        );
    }

    #[test]
    fn the_keystream_is_rfc_3711_appendix_b2s() {
        // Session key and salt given directly: SSRC 0, index 0.
        let keys = SessionKeys {
            enc: hex("2B7E151628AED2A6ABF7158809CF4F3C").try_into().unwrap(),
            salt: hex("F0F1F2F3F4F5F6F7F8F9FAFBFCFD").try_into().unwrap(),
            auth: HmacSha1::new_from_slice(&[0; 20]).unwrap(),
        };
        let mut zeros = vec![0u8; 48];
        keys.crypt(0, 0, &mut zeros);
        assert_eq!(
            zeros,
            hex("E03EAD0935C95E80E166B16DD92B4EB4\
                 D23513162B02D0F72A43A2FE4A5F97AB\
                 41E95B3BB0A2E8DD477901E4FCA894C0")
        );
    }

    #[test]
    fn packets_match_libsrtps_reference_packets() {
        // libsrtp's test/srtp_driver.c ("against reference packet"): SSRC 0xCAFEBABE, the
        // RFC 3711 B.3 master key, 16 bytes of 0xAB.
        let mut tx = SrtpSender::new(Suite::AesCm128HmacSha1_80, &master());
        let plain = hex("800F1234DECAFBADCAFEBABEABABABABABABABABABABABABABABABAB");
        let mut buf = plain.clone();
        buf.resize(plain.len() + 10, 0);
        let n = tx.protect(&mut buf, plain.len());
        assert_eq!(
            buf[..n],
            hex("800F1234DECAFBADCAFEBABE4E55DC4CE79978D88CA4D215949D2402B78D6ACC99EA179B8DBB")
        );
        let mut rx = SrtpReceiver::new(Suite::AesCm128HmacSha1_80, &master());
        assert_eq!(rx.unprotect(&buf[..n]).unwrap(), plain);
        // Its SRTCP packet carries index 1 (libsrtp counts from 1; the index travels with it).
        tx.rtcp_index = 1;
        let rtcp = hex("81C8000BCAFEBABEABABABABABABABABABABABABABABABAB");
        let p = tx.protect_rtcp(&rtcp);
        assert_eq!(
            p,
            hex("81C8000BCAFEBABE7128035BE487B9BDBEF89041F977A5A8\
                 80000001993E08CD54D6C1230798")
        );
        assert_eq!(rx.unprotect_rtcp(&p).unwrap(), rtcp);
    }

    fn rtp(seq: u16, payload: u8) -> Vec<u8> {
        let mut p = vec![0x80, 0x00];
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
        p.extend_from_slice(&0xCAFE_F00Du32.to_be_bytes());
        p.extend(std::iter::repeat_n(payload, 160));
        p
    }

    #[test]
    fn a_receiver_reads_what_a_sender_protects_across_the_sequence_wrap() {
        for suite in [Suite::AesCm128HmacSha1_80, Suite::AesCm128HmacSha1_32] {
            let mut tx = SrtpSender::new(suite, &master());
            let mut rx = SrtpReceiver::new(suite, &master());
            for i in 0..2_000u32 {
                let seq = (65_000 + i) as u16;
                let plain = rtp(seq, (i % 251) as u8);
                let mut buf = plain.clone();
                buf.resize(plain.len() + tx.overhead(), 0);
                let n = tx.protect(&mut buf, plain.len());
                assert_eq!(n, plain.len() + suite.tag_len());
                assert_ne!(buf[12..plain.len()], plain[12..], "encrypted");
                assert_eq!(buf[..12], plain[..12], "the header stays in clear");
                assert_eq!(
                    rx.unprotect(&buf[..n]).unwrap(),
                    plain,
                    "{suite:?} packet {i}"
                );
            }
        }
    }

    #[test]
    fn tampered_replayed_and_foreign_packets_are_refused() {
        let suite = Suite::AesCm128HmacSha1_80;
        let mut tx = SrtpSender::new(suite, &master());
        let mut rx = SrtpReceiver::new(suite, &master());
        let protect = |tx: &mut SrtpSender, seq| {
            let plain = rtp(seq, 7);
            let mut buf = plain.clone();
            buf.resize(plain.len() + 10, 0);
            let n = tx.protect(&mut buf, plain.len());
            buf.truncate(n);
            buf
        };
        let first = protect(&mut tx, 100);
        let mut bad = first.clone();
        bad[20] ^= 1;
        assert_eq!(rx.unprotect(&bad), Err(SrtpError::Auth));
        assert!(rx.unprotect(&first).is_ok());
        assert_eq!(rx.unprotect(&first), Err(SrtpError::Replay));
        // Out of order within the window is fine, once.
        let (p102, p101) = (protect(&mut tx, 102), protect(&mut tx, 101));
        assert!(rx.unprotect(&p102).is_ok());
        assert!(rx.unprotect(&p101).is_ok());
        assert_eq!(rx.unprotect(&p101), Err(SrtpError::Replay));
        // Another key: refused.
        let other = MasterKey::from_bytes(&[9; 30]).unwrap();
        let mut stranger = SrtpSender::new(suite, &other);
        assert_eq!(
            rx.unprotect(&protect(&mut stranger, 103)),
            Err(SrtpError::Auth)
        );
        assert_eq!(rx.unprotect(&first[..15]), Err(SrtpError::TooShort));
    }

    #[test]
    fn srtcp_round_trips_and_is_authenticated() {
        let suite = Suite::AesCm128HmacSha1_32;
        let mut tx = SrtpSender::new(suite, &master());
        let mut rx = SrtpReceiver::new(suite, &master());
        // A receiver report: V=2, RC=0, PT=201, length 1, SSRC.
        let rr = hex("80C90001CAFEF00D");
        let sr = hex("80C80006CAFEF00D0000000100000002000000030000000400000005");
        for packet in [&rr, &sr, &rr] {
            let p = tx.protect_rtcp(packet);
            assert_eq!(p.len(), packet.len() + 4 + 10, "E|index and an 80-bit tag");
            assert_eq!(p[..8], packet[..8], "header and SSRC in clear");
            assert_eq!(&rx.unprotect_rtcp(&p).unwrap(), packet);
            assert_eq!(rx.unprotect_rtcp(&p), Err(SrtpError::Replay));
        }
        let mut p = tx.protect_rtcp(&sr);
        p[10] ^= 0x40;
        assert_eq!(rx.unprotect_rtcp(&p), Err(SrtpError::Auth));
    }

    #[test]
    fn suites_and_keys_read_and_write() {
        assert_eq!(
            Suite::from_name("AES_CM_128_HMAC_SHA1_80"),
            Some(Suite::AesCm128HmacSha1_80)
        );
        assert_eq!(Suite::from_name("AES_256_CM_HMAC_SHA1_80"), None);
        let m = master();
        assert_eq!(MasterKey::from_bytes(&m.to_bytes()), Some(m));
        assert_eq!(MasterKey::from_bytes(&[0; 29]), None);
        assert_eq!(
            format!("{:?}", master()),
            "MasterKey(..)",
            "keys stay out of logs"
        );
    }
}
