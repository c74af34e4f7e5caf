//! RFC 6035 session quality reports (`application/vq-rtcpxr`), sent by SIP PUBLISH to a
//! configured collector when a call ends: what media measured of the caller's RTP, in the
//! format carriers' quality collectors read. "Local" is this service (its RTP endpoint, the
//! stream it received), "Remote" the caller.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The `Event` package (RFC 6035 §4.1) and the body's content type.
pub const EVENT: &str = "vq-rtcpxr";
pub const CONTENT_TYPE: &str = "application/vq-rtcpxr";

/// One call's report.
#[derive(Debug, Clone, PartialEq)]
pub struct VqReport {
    pub call_id: String,
    /// Our URI in the dialog (the INVITE's To) and the caller's (its From), as written.
    pub local_id: String,
    pub remote_id: String,
    /// Our RTP address (as advertised in our SDP: an IP address, or the name configured) and
    /// SSRC; the caller's RTP source and SSRC (None before any RTP).
    pub local_host: String,
    pub local_port: u16,
    pub local_ssrc: u32,
    pub remote_addr: Option<SocketAddr>,
    pub remote_ssrc: Option<u32>,
    /// From the answer (ACK) to the end.
    pub start: SystemTime,
    pub stop: SystemTime,
    /// The payload type and codec name of the stream.
    pub payload_type: u8,
    pub codec: String,
    /// The caller's stream as it reached us.
    pub loss_percent: f64,
    pub jitter_ms: f64,
    /// Round trip from RTCP, in ms (None without).
    pub rtt_ms: Option<f64>,
    /// E-model MOS estimate (None before any RTP arrived).
    pub mos: Option<f64>,
    /// The dialog: Call-ID, our tag (To) and the caller's (From).
    pub to_tag: String,
    pub from_tag: String,
}

/// `YYYY-MM-DDTHH:MM:SSZ` (RFC 6035's timestamps are RFC 3339 UTC).
pub fn rfc3339(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

fn addr(ip: &str, port: u16, ssrc: u32) -> String {
    format!("IP={ip} PORT={port} SSRC=0x{ssrc:08X}")
}

/// The report's body (RFC 6035 §4.7), CRLF line ends.
pub fn body(r: &VqReport) -> String {
    let mut b = String::new();
    let mut line = |s: String| {
        b.push_str(&s);
        b.push_str("\r\n");
    };
    line("VQSessionReport: CallTerm".into());
    line(format!("CallID: {}", r.call_id));
    line(format!("LocalID: {}", r.local_id));
    line(format!("RemoteID: {}", r.remote_id));
    line(format!("OrigID: {}", r.remote_id));
    line(format!(
        "LocalAddr: {}",
        addr(&r.local_host, r.local_port, r.local_ssrc)
    ));
    if let (Some(a), Some(ssrc)) = (r.remote_addr, r.remote_ssrc) {
        line(format!(
            "RemoteAddr: {}",
            addr(&a.ip().to_string(), a.port(), ssrc)
        ));
    }
    line("LocalMetrics:".into());
    line(format!(
        "Timestamps: START={} STOP={}",
        rfc3339(r.start),
        rfc3339(r.stop)
    ));
    line(format!(
        "SessionDesc: PT={} PD={} SR=8000 FD=20 FPP=1 PPS=50 SSUP=off",
        r.payload_type, r.codec
    ));
    line(format!("PacketLoss: NLR={:.1} JDR=0.0", r.loss_percent));
    let mut delay = String::from("Delay:");
    if let Some(rtt) = r.rtt_ms {
        let _ = write!(delay, " RTD={rtt:.0}");
    }
    let _ = write!(delay, " IAJ={:.0}", r.jitter_ms);
    line(delay);
    if let Some(mos) = r.mos {
        line(format!("QualityEst: MOSLQ={mos:.1} MOSCQ={mos:.1}"));
    }
    line(format!(
        "DialogID: {};to-tag={};from-tag={}",
        r.call_id, r.to_tag, r.from_tag
    ));
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_utc_rfc_3339() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        // 2026-12-06 23:10:05 UTC.
        let t = UNIX_EPOCH + Duration::from_secs(1_796_598_605);
        assert_eq!(rfc3339(t), "2026-12-06T23:10:05Z");
        // A leap day.
        let t = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(rfc3339(t), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn the_body_has_every_field_rfc_6035_asks_for() {
        let start = UNIX_EPOCH + Duration::from_secs(1_796_598_605);
        let r = VqReport {
            call_id: "abc@host".into(),
            local_id: "<sip:1004@192.0.2.1>".into(),
            remote_id: "\"Alice\" <sip:alice@192.0.2.9>".into(),
            local_host: "192.0.2.1".into(),
            local_port: 20000,
            local_ssrc: 0xDEAD_BEEF,
            remote_addr: Some("192.0.2.9:4000".parse().unwrap()),
            remote_ssrc: Some(0x1234),
            start,
            stop: start + Duration::from_secs(20),
            payload_type: 0,
            codec: "PCMU".into(),
            loss_percent: 2.04,
            jitter_ms: 1.6,
            rtt_ms: Some(12.4),
            mos: Some(4.21),
            to_tag: "t1".into(),
            from_tag: "f1".into(),
        };
        assert_eq!(
            body(&r),
            "VQSessionReport: CallTerm\r\n\
             CallID: abc@host\r\n\
             LocalID: <sip:1004@192.0.2.1>\r\n\
             RemoteID: \"Alice\" <sip:alice@192.0.2.9>\r\n\
             OrigID: \"Alice\" <sip:alice@192.0.2.9>\r\n\
             LocalAddr: IP=192.0.2.1 PORT=20000 SSRC=0xDEADBEEF\r\n\
             RemoteAddr: IP=192.0.2.9 PORT=4000 SSRC=0x00001234\r\n\
             LocalMetrics:\r\n\
             Timestamps: START=2026-12-06T23:10:05Z STOP=2026-12-06T23:10:25Z\r\n\
             SessionDesc: PT=0 PD=PCMU SR=8000 FD=20 FPP=1 PPS=50 SSUP=off\r\n\
             PacketLoss: NLR=2.0 JDR=0.0\r\n\
             Delay: RTD=12 IAJ=2\r\n\
             QualityEst: MOSLQ=4.2 MOSCQ=4.2\r\n\
             DialogID: abc@host;to-tag=t1;from-tag=f1\r\n"
        );
        // No RTP from the caller: no RemoteAddr, no MOS; no RTCP: no RTD.
        let silent = VqReport {
            remote_addr: None,
            remote_ssrc: None,
            rtt_ms: None,
            mos: None,
            ..r
        };
        let b = body(&silent);
        assert!(!b.contains("RemoteAddr") && !b.contains("QualityEst") && !b.contains("RTD"));
        assert!(b.contains("Delay: IAJ=2\r\n"), "{b}");
    }
}
