//! The caller's own quality, reported back in SIP: our BYE and our 200 to the caller's BYE carry
//! an `X-RTP-Stat` header with what media measured of the caller's RTP and what it sent, so a
//! caller learns how its stream arrived without any tool of ours. The fields follow the
//! `P-RTP-Stat`/`X-RTP-Stat` headers phones and SBCs write (two-letter names, comma-separated),
//! with the MOS estimate added.

/// The header's name.
pub const HEADER: &str = "X-RTP-Stat";

/// One call's figures at its end.
#[derive(Debug, Clone, PartialEq)]
pub struct RtpStat {
    /// RTP packets we sent (the tone).
    pub packets_sent: u64,
    /// The caller's RTP packets that reached us, and their bytes (RTP header included).
    pub packets_received: u64,
    pub bytes_received: u64,
    /// The caller's packets missing by sequence number, and their share in percent.
    pub packets_lost: u64,
    pub loss_percent: f64,
    /// Interarrival jitter of the caller's stream (RFC 3550 6.4.1), in ms.
    pub jitter_ms: f64,
    /// Round trip from the caller's RTCP receiver reports, in ms (0 without any).
    pub rtt_ms: f64,
    /// The E-model's MOS estimate for the caller's stream (0 before any RTP arrived).
    pub mos: f64,
    /// The codec we sent, e.g. `PCMU`.
    pub codec: String,
    /// From the ACK to the end, in whole seconds.
    pub talk_seconds: u64,
}

/// The header's value: `PS=<sent>,PR=<received>,OR=<bytes received>,PL=<lost>,LP=<loss %>,`
/// `JI=<jitter ms>,LA=<rtt ms>,MO=<MOS>,EN=<codec>,DU=<seconds>`.
pub fn value(s: &RtpStat) -> String {
    format!(
        "PS={},PR={},OR={},PL={},LP={:.2},JI={:.1},LA={:.0},MO={:.2},EN={},DU={}",
        s.packets_sent,
        s.packets_received,
        s.bytes_received,
        s.packets_lost,
        s.loss_percent,
        s.jitter_ms,
        s.rtt_ms,
        s.mos,
        s.codec,
        s.talk_seconds
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_figure_in_its_field() {
        let s = RtpStat {
            packets_sent: 1000,
            packets_received: 997,
            bytes_received: 159_520,
            packets_lost: 3,
            loss_percent: 0.3009,
            jitter_ms: 1.26,
            rtt_ms: 12.4,
            mos: 4.3851,
            codec: "PCMU".into(),
            talk_seconds: 20,
        };
        assert_eq!(
            value(&s),
            "PS=1000,PR=997,OR=159520,PL=3,LP=0.30,JI=1.3,LA=12,MO=4.39,EN=PCMU,DU=20"
        );
    }

    #[test]
    fn a_caller_that_sent_nothing_reads_as_zeros() {
        let s = RtpStat {
            packets_sent: 150,
            packets_received: 0,
            bytes_received: 0,
            packets_lost: 0,
            loss_percent: 0.0,
            jitter_ms: 0.0,
            rtt_ms: 0.0,
            mos: 0.0,
            codec: "PCMA".into(),
            talk_seconds: 3,
        };
        assert_eq!(
            value(&s),
            "PS=150,PR=0,OR=0,PL=0,LP=0.00,JI=0.0,LA=0,MO=0.00,EN=PCMA,DU=3"
        );
    }
}
