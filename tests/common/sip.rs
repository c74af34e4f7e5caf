//! A raw SIP-over-UDP peer for what SIPp cannot do: hand-made malformed requests, INVITE
//! retransmissions with the same branch, withholding the ACK, and timing each response.

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

pub struct RawSip {
    sock: UdpSocket,
    pub server: SocketAddr,
    pub local: SocketAddr,
}

/// A received message with its arrival time.
#[derive(Clone, Debug)]
pub struct Msg {
    pub at: Instant,
    pub text: String,
}

impl Msg {
    pub fn status(&self) -> Option<u16> {
        let first = self.text.lines().next()?;
        first
            .strip_prefix("SIP/2.0 ")?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    }

    pub fn method(&self) -> Option<&str> {
        let first = self.text.lines().next()?;
        if first.starts_with("SIP/2.0") {
            None
        } else {
            first.split_whitespace().next()
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.text.lines().find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    pub fn cseq_method(&self) -> Option<&str> {
        self.header("CSeq")?.split_whitespace().nth(1)
    }
}

impl RawSip {
    pub fn new(server: SocketAddr) -> RawSip {
        Self::new_from([127, 0, 0, 1], server)
    }

    /// A peer on another loopback address (127.0.0.0/8 is all loopback on Linux): another
    /// source address for the server.
    pub fn new_from(ip: [u8; 4], server: SocketAddr) -> RawSip {
        let sock = UdpSocket::bind((std::net::Ipv4Addr::from(ip), 0)).unwrap();
        let local = sock.local_addr().unwrap();
        RawSip {
            sock,
            server,
            local,
        }
    }

    pub fn send(&self, text: &str) {
        self.sock.send_to(text.as_bytes(), self.server).unwrap();
    }

    pub fn send_bytes(&self, bytes: &[u8]) {
        self.sock.send_to(bytes, self.server).unwrap();
    }

    /// The next message within `timeout`.
    pub fn recv(&self, timeout: Duration) -> Option<Msg> {
        self.sock.set_read_timeout(Some(timeout)).unwrap();
        let mut buf = vec![0u8; 65536];
        let (n, _) = self.sock.recv_from(&mut buf).ok()?;
        Some(Msg {
            at: Instant::now(),
            text: String::from_utf8_lossy(&buf[..n]).into_owned(),
        })
    }

    /// Messages until one satisfies `done` or `timeout` passes; returns all of them.
    pub fn recv_until(&self, timeout: Duration, done: impl Fn(&Msg) -> bool) -> Vec<Msg> {
        let deadline = Instant::now() + timeout;
        let mut out = Vec::new();
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.recv(left.max(Duration::from_millis(1))) {
                Some(m) => {
                    let stop = done(&m);
                    out.push(m);
                    if stop {
                        break;
                    }
                }
                None => break,
            }
        }
        out
    }

    /// An INVITE offering PCMU and telephone-event 101, RTP to 127.0.0.1:`sdp_port`.
    pub fn invite_with_dtmf(&self, call_id: &str, branch: &str, sdp_port: u16) -> String {
        self.invite_offering(call_id, branch, sdp_port, true)
    }

    /// An INVITE offering PCMU with RTCP on the RTP port (RFC 5761 `a=rtcp-mux`).
    pub fn invite_with_rtcp_mux(&self, call_id: &str, branch: &str, sdp_port: u16) -> String {
        self.invite_sdp(call_id, branch, sdp_port, "0", "a=rtcp-mux\r\n")
    }

    /// Places a call and ACKs the 200: returns the media address of the SDP answer.
    pub fn call(&self, invite: &str, call_id: &str) -> SocketAddr {
        self.send(invite);
        let ok = self
            .recv_until(Duration::from_secs(5), |m| m.status() == Some(200))
            .pop()
            .filter(|m| m.status() == Some(200))
            .expect("no 200 OK");
        self.send(&self.ack_for(&ok, call_id, "ack"));
        super::answered_media(&ok.text)
    }

    /// An INVITE offering PCMU; `sdp_port` is where the caller wants RTP (on loopback).
    pub fn invite(&self, call_id: &str, branch: &str, sdp_port: u16) -> String {
        self.invite_offering(call_id, branch, sdp_port, false)
    }

    fn invite_offering(&self, call_id: &str, branch: &str, sdp_port: u16, dtmf: bool) -> String {
        if dtmf {
            self.invite_sdp(
                call_id,
                branch,
                sdp_port,
                "0 101",
                "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\n",
            )
        } else {
            self.invite_sdp(call_id, branch, sdp_port, "0", "")
        }
    }

    /// An INVITE whose audio stream offers `fmts`, with `extra` attribute lines.
    fn invite_sdp(
        &self,
        call_id: &str,
        branch: &str,
        sdp_port: u16,
        fmts: &str,
        extra: &str,
    ) -> String {
        let sdp = format!(
            "v=0\r\no=raw 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
             m=audio {sdp_port} RTP/AVP {fmts}\r\na=rtpmap:0 PCMU/8000\r\n{extra}"
        );
        self.request(
            "INVITE",
            call_id,
            branch,
            1,
            "tag=rawfrom",
            true,
            "application/sdp",
            &sdp,
        )
    }

    #[allow(clippy::too_many_arguments)]
    pub fn request(
        &self,
        method: &str,
        call_id: &str,
        branch: &str,
        cseq: u32,
        from_params: &str,
        contact: bool,
        content_type: &str,
        body: &str,
    ) -> String {
        let from_params = if from_params.is_empty() {
            String::new()
        } else {
            format!(";{from_params}")
        };
        let contact = if contact {
            format!("Contact: <sip:raw@{}>\r\n", self.local)
        } else {
            String::new()
        };
        let ct = if body.is_empty() {
            String::new()
        } else {
            format!("Content-Type: {content_type}\r\n")
        };
        format!(
            "{method} sip:milliwatt@{server} SIP/2.0\r\n\
             Via: SIP/2.0/UDP {local};branch=z9hG4bK{branch};rport\r\n\
             From: <sip:raw@{local}>{from_params}\r\n\
             To: <sip:milliwatt@{server}>\r\n\
             Call-ID: {call_id}\r\n\
             CSeq: {cseq} {method}\r\n\
             {contact}Max-Forwards: 70\r\n\
             {ct}Content-Length: {len}\r\n\r\n{body}",
            server = self.server,
            local = self.local,
            len = body.len(),
        )
    }

    /// An in-dialog request (ACK, BYE) or a response, built from a received response/request.
    pub fn ack_for(&self, ok: &Msg, call_id: &str, branch: &str) -> String {
        let to = ok.header("To").expect("To in the 200");
        format!(
            "ACK sip:milliwatt@{server} SIP/2.0\r\n\
             Via: SIP/2.0/UDP {local};branch=z9hG4bK{branch};rport\r\n\
             From: <sip:raw@{local}>;tag=rawfrom\r\n\
             To: {to}\r\n\
             Call-ID: {call_id}\r\n\
             CSeq: 1 ACK\r\n\
             Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
            server = self.server,
            local = self.local,
        )
    }

    /// 200 OK to a request we received (BYE).
    pub fn ok_to(&self, req: &Msg) {
        let mut out = String::from("SIP/2.0 200 OK\r\n");
        for name in ["Via", "From", "To", "Call-ID", "CSeq"] {
            for l in req.text.lines() {
                if let Some((n, _)) = l.split_once(':') {
                    if n.trim().eq_ignore_ascii_case(name) {
                        out.push_str(l.trim_end());
                        out.push_str("\r\n");
                    }
                }
            }
        }
        out.push_str("Content-Length: 0\r\n\r\n");
        self.send(&out);
    }
}
