//! Every conversion between the wire types and the domain types of the cores. A malformed
//! request becomes one precise `Status` here (`INVALID_ARGUMENT` naming the field), so the
//! services never look inside a prost message.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, SystemTime};

use milliwatt_media_core::session::{
    Event, EventKind, Figures, MediaError, Quality, Snapshot, State, ToneRequest,
};
use milliwatt_media_core::srtp::{MasterKey, SrtpKeys, Suite};
use milliwatt_media_core::tone::{Shape, Sweep};
use milliwatt_media_core::{Codec, SessionId};
use milliwatt_signaling_core::call::MediaFailure;
use tonic::Status;

use crate::v1 as pb;

impl From<Codec> for pb::Codec {
    fn from(c: Codec) -> pb::Codec {
        match c {
            Codec::Pcmu => pb::Codec::Pcmu,
            Codec::Pcma => pb::Codec::Pcma,
        }
    }
}

impl TryFrom<pb::Codec> for Codec {
    type Error = pb::Codec;

    fn try_from(c: pb::Codec) -> Result<Codec, pb::Codec> {
        match c {
            pb::Codec::Pcmu => Ok(Codec::Pcmu),
            pb::Codec::Pcma => Ok(Codec::Pcma),
            other => Err(other),
        }
    }
}

impl From<State> for pb::SessionState {
    fn from(s: State) -> pb::SessionState {
        match s {
            State::Allocated => pb::SessionState::Allocated,
            State::WaitingForCaller => pb::SessionState::WaitingForCaller,
            State::Sending => pb::SessionState::Sending,
            State::Stopped => pb::SessionState::Stopped,
            State::Released => pb::SessionState::Released,
        }
    }
}

impl From<EventKind> for pb::session_event::Kind {
    fn from(k: EventKind) -> pb::session_event::Kind {
        use pb::session_event::Kind;
        match k {
            EventKind::Allocated => Kind::Allocated,
            EventKind::ToneStarted => Kind::ToneStarted,
            EventKind::ToneStopped => Kind::ToneStopped,
            EventKind::Released => Kind::Released,
            EventKind::Dtmf => Kind::Dtmf,
            EventKind::RtpSourceLatched => Kind::RtpSourceLatched,
            EventKind::Quality => Kind::Quality,
        }
    }
}

impl From<Quality> for pb::Quality {
    fn from(q: Quality) -> pb::Quality {
        pb::Quality {
            packets_received: q.packets_received,
            bytes_received: q.bytes_received,
            packets_lost: q.packets_lost,
            loss_percent: q.loss_percent,
            jitter_ms: q.jitter_ms,
            mos: q.mos,
            packets_invalid: q.packets_invalid,
            packets_from_unexpected_source: q.packets_from_unexpected_source,
            rtp_source: q.rtp_source.map(|a| a.to_string()).unwrap_or_default(),
            rtcp_received: q.rtcp_received,
            remote_loss_percent: q.remote_loss_percent,
            remote_jitter_ms: q.remote_jitter_ms,
            rtt_ms: q.rtt_ms,
            dtmf_digits: q.dtmf_digits,
            echoed_packets: q.echoed_packets,
            echo_turnaround_avg_ms: q.echo_turnaround_avg_ms,
            echo_turnaround_max_ms: q.echo_turnaround_max_ms,
            rtp_ssrc: q.rtp_ssrc,
        }
    }
}

impl From<Event> for pb::SessionEvent {
    fn from(e: Event) -> pb::SessionEvent {
        pb::SessionEvent {
            kind: pb::session_event::Kind::from(e.kind) as i32,
            session: Some(e.session.into()),
            reason: e.reason,
            at: Some(timestamp(e.at)),
            digit: e.digit.map(|(d, _)| d.to_string()).unwrap_or_default(),
            digit_duration_ms: e.digit.map(|(_, t)| t.as_millis() as u32).unwrap_or(0),
        }
    }
}

impl From<pb::Quality> for Quality {
    fn from(q: pb::Quality) -> Quality {
        Quality {
            packets_received: q.packets_received,
            bytes_received: q.bytes_received,
            packets_lost: q.packets_lost,
            loss_percent: q.loss_percent,
            jitter_ms: q.jitter_ms,
            mos: q.mos,
            packets_invalid: q.packets_invalid,
            packets_from_unexpected_source: q.packets_from_unexpected_source,
            rtp_source: q.rtp_source.parse().ok(),
            rtcp_received: q.rtcp_received,
            remote_loss_percent: q.remote_loss_percent,
            remote_jitter_ms: q.remote_jitter_ms,
            rtt_ms: q.rtt_ms,
            dtmf_digits: q.dtmf_digits,
            echoed_packets: q.echoed_packets,
            echo_turnaround_avg_ms: q.echo_turnaround_avg_ms,
            echo_turnaround_max_ms: q.echo_turnaround_max_ms,
            rtp_ssrc: q.rtp_ssrc,
        }
    }
}

/// The figures of a released session, as its owner logs them.
impl From<pb::Session> for Figures {
    fn from(s: pb::Session) -> Figures {
        Figures {
            packets_sent: s.packets_sent,
            quality: s.quality.unwrap_or_default().into(),
        }
    }
}

/// What a failed call to media means for a call: no port, unavailable (retry later), or a
/// refusal (a bug on one side).
pub fn media_failure(s: &Status) -> MediaFailure {
    use tonic::Code;
    match s.code() {
        Code::ResourceExhausted => MediaFailure::PortsExhausted,
        Code::NotFound => MediaFailure::NotFound,
        Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Unknown => {
            MediaFailure::Unavailable(s.message().to_string())
        }
        c => MediaFailure::Refused(format!("{c:?}: {}", s.message())),
    }
}

/// The StartTone request for `tone` on session `id` (the inverse of the `TryFrom` below).
pub fn start_tone_request(id: &SessionId, tone: &ToneRequest) -> pb::StartToneRequest {
    pb::StartToneRequest {
        session_id: id.to_string(),
        remote_address: tone.remote.ip().to_string(),
        remote_port: u32::from(tone.remote.port()),
        codec: pb::Codec::from(tone.codec) as i32,
        payload_type: u32::from(tone.payload_type),
        frequency_hz: tone.frequency_hz,
        level_dbm0: tone.level_dbm0,
        duration_ms: tone
            .duration
            .map(|d| u32::try_from(d.as_millis()).unwrap_or(u32::MAX))
            .unwrap_or(0),
        dtmf_payload_type: tone.dtmf_payload_type.map(u32::from).unwrap_or(0),
        wait_for_caller_rtp: tone.wait_for_caller_rtp,
        second_frequency_hz: tone.shape.second.map(|s| s.0).unwrap_or(0),
        second_level_dbm0: tone.shape.second.map(|s| s.1).unwrap_or(0.0),
        sweep_to_hz: tone.shape.sweep.map(|s| s.to_hz).unwrap_or(0),
        sweep_ms: tone.shape.sweep.map(|s| s.ms).unwrap_or(0),
        cadence_ms: tone.shape.cadence_ms.clone(),
        echo: tone.echo,
        srtp: tone.srtp.as_ref().map(|s| pb::SrtpKeys {
            suite: s.suite.name().into(),
            send_key: s.send.to_bytes().to_vec(),
            recv_key: s.recv.to_bytes().to_vec(),
        }),
    }
}

/// The status for a media error: unknown sessions `NOT_FOUND`, no free port `RESOURCE_EXHAUSTED`.
pub fn status_of(e: MediaError) -> Status {
    {
        match e {
            MediaError::NotFound(_) => Status::not_found(e.to_string()),
            MediaError::PortsExhausted | MediaError::OutOfDescriptors => {
                Status::resource_exhausted(e.to_string())
            }
        }
    }
}

/// `INVALID_ARGUMENT` naming the field: `field: reason`.
pub fn bad(field: &str, reason: impl std::fmt::Display) -> Status {
    Status::invalid_argument(format!("{field}: {reason}"))
}

/// A session id from a request field, or `INVALID_ARGUMENT` naming the field.
pub fn session_id(field: &str, id: &str) -> Result<SessionId, Status> {
    id.parse()
        .map_err(|_| bad(field, format!("{id:?} is not a session id (16 hex digits)")))
}

impl TryFrom<pb::StartToneRequest> for ToneRequest {
    type Error = Status;

    fn try_from(r: pb::StartToneRequest) -> Result<Self, Status> {
        let ip: IpAddr = r.remote_address.parse().map_err(|_| {
            bad(
                "remote_address",
                format!("{:?} is not an IP address", r.remote_address),
            )
        })?;
        if ip.is_unspecified() {
            return Err(bad("remote_address", format!("{ip} cannot receive RTP")));
        }
        if let Some(why) = milliwatt_media_core::destination::not_unicast(ip) {
            return Err(bad("remote_address", why));
        }
        let port = u16::try_from(r.remote_port)
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| {
                bad(
                    "remote_port",
                    format!("{} is not a port (1..65535)", r.remote_port),
                )
            })?;
        let codec = pb::Codec::try_from(r.codec)
            .ok()
            .and_then(|c| Codec::try_from(c).ok())
            .ok_or_else(|| bad("codec", format!("{} is not PCMU or PCMA", r.codec)))?;
        let payload_type = u8::try_from(r.payload_type)
            .ok()
            .filter(|pt| *pt < 128 && !(72..=76).contains(pt))
            .ok_or_else(|| {
                bad(
                    "payload_type",
                    format!(
                        "{} is not an RTP payload type (0..127, not 72..76)",
                        r.payload_type
                    ),
                )
            })?;
        if r.echo {
            let shaped = r.second_frequency_hz != 0
                || r.sweep_to_hz != 0
                || r.sweep_ms != 0
                || !r.cadence_ms.is_empty();
            if shaped {
                return Err(bad(
                    "echo",
                    "an echo sends the caller's audio back: no second tone, sweep or cadence",
                ));
            }
        }
        if (r.frequency_hz == 0 && !r.echo) || r.frequency_hz >= 4000 {
            return Err(bad(
                "frequency_hz",
                format!("{} Hz is not 1..3999", r.frequency_hz),
            ));
        }
        let dtmf_payload_type = match r.dtmf_payload_type {
            0 => None,
            pt @ 96..=127 => Some(pt as u8),
            pt => {
                return Err(bad(
                    "dtmf_payload_type",
                    format!("{pt} is not a dynamic payload type (96..127), or 0 for none"),
                ))
            }
        };
        // An echo sends no tone: its level may be left 0.
        let level_ok = (-60.0..=3.0).contains(&r.level_dbm0) || (r.echo && r.level_dbm0 == 0.0);
        if !level_ok {
            return Err(bad(
                "level_dbm0",
                format!("{} dBm0 is not -60..3", r.level_dbm0),
            ));
        }
        let shape = Shape {
            second: (r.second_frequency_hz != 0)
                .then_some((r.second_frequency_hz, r.second_level_dbm0)),
            sweep: (r.sweep_to_hz != 0 || r.sweep_ms != 0).then_some(Sweep {
                to_hz: r.sweep_to_hz,
                ms: r.sweep_ms,
            }),
            cadence_ms: r.cadence_ms,
        };
        if !r.echo {
            shape
                .check(r.frequency_hz, r.level_dbm0)
                .map_err(|e| bad(e.field.proto_field(), e.reason))?;
        }
        let srtp = match r.srtp {
            None => None,
            Some(k) => {
                let suite = Suite::from_name(&k.suite).ok_or_else(|| {
                    bad(
                        "srtp.suite",
                        format!(
                            "{:?} is not AES_CM_128_HMAC_SHA1_80 or AES_CM_128_HMAC_SHA1_32",
                            k.suite
                        ),
                    )
                })?;
                let key = |field, b: &[u8]| {
                    MasterKey::from_bytes(b).ok_or_else(|| {
                        bad(
                            field,
                            format!("{} bytes; a master key and salt are 30", b.len()),
                        )
                    })
                };
                Some(SrtpKeys {
                    suite,
                    send: key("srtp.send_key", &k.send_key)?,
                    recv: key("srtp.recv_key", &k.recv_key)?,
                })
            }
        };
        Ok(ToneRequest {
            remote: SocketAddr::new(ip, port),
            codec,
            payload_type,
            frequency_hz: r.frequency_hz,
            level_dbm0: r.level_dbm0,
            duration: (r.duration_ms > 0).then(|| Duration::from_millis(u64::from(r.duration_ms))),
            dtmf_payload_type,
            wait_for_caller_rtp: r.wait_for_caller_rtp,
            shape,
            echo: r.echo,
            srtp,
        })
    }
}

pub fn timestamp(t: SystemTime) -> pbjson_types::Timestamp {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    pbjson_types::Timestamp {
        seconds: d.as_secs() as i64,
        nanos: d.subsec_nanos() as i32,
    }
}

impl From<Snapshot> for pb::Session {
    fn from(s: Snapshot) -> pb::Session {
        let tone = s.tone.as_ref();
        pb::Session {
            session_id: s.id.to_string(),
            call_id: s.call_id,
            owner: s.owner,
            state: pb::SessionState::from(s.state) as i32,
            codec: tone
                .map(|t| pb::Codec::from(t.codec))
                .unwrap_or(pb::Codec::Unspecified) as i32,
            payload_type: tone.map(|t| u32::from(t.payload_type)).unwrap_or(0),
            local_address: s.local_host,
            local_port: u32::from(s.local_port),
            remote_address: tone.map(|t| t.remote.ip().to_string()).unwrap_or_default(),
            remote_port: tone.map(|t| u32::from(t.remote.port())).unwrap_or(0),
            frequency_hz: tone.map(|t| t.frequency_hz).unwrap_or(0),
            level_dbm0: tone.map(|t| t.level_dbm0).unwrap_or(0.0),
            ssrc: s.ssrc,
            packets_sent: s.packets_sent,
            bytes_sent: s.bytes_sent,
            packets_skipped: s.packets_skipped,
            created_at: Some(timestamp(s.created_at)),
            age_ms: s.age.as_millis() as u64,
            dtmf_payload_type: tone
                .and_then(|t| t.dtmf_payload_type)
                .map(u32::from)
                .unwrap_or(0),
            second_frequency_hz: tone.and_then(|t| t.shape.second).map(|s| s.0).unwrap_or(0),
            second_level_dbm0: tone
                .and_then(|t| t.shape.second)
                .map(|s| s.1)
                .unwrap_or(0.0),
            sweep_to_hz: tone
                .and_then(|t| t.shape.sweep)
                .map(|s| s.to_hz)
                .unwrap_or(0),
            sweep_ms: tone.and_then(|t| t.shape.sweep).map(|s| s.ms).unwrap_or(0),
            cadence_ms: tone.map(|t| t.shape.cadence_ms.clone()).unwrap_or_default(),
            echo: tone.is_some_and(|t| t.echo),
            srtp_suite: tone
                .and_then(|t| t.srtp.as_ref())
                .map(|s| s.suite.name().to_string())
                .unwrap_or_default(),
            quality: s.quality.map(Into::into),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> pb::StartToneRequest {
        pb::StartToneRequest {
            session_id: "0123456789abcdef".into(),
            remote_address: "127.0.0.1".into(),
            remote_port: 4000,
            codec: pb::Codec::Pcmu as i32,
            payload_type: 0,
            frequency_hz: 440,
            level_dbm0: -10.0,
            duration_ms: 0,
            dtmf_payload_type: 101,
            wait_for_caller_rtp: true,
            second_frequency_hz: 0,
            second_level_dbm0: 0.0,
            sweep_to_hz: 0,
            sweep_ms: 0,
            cadence_ms: vec![],
            echo: false,
            srtp: None,
        }
    }

    fn field_of(r: pb::StartToneRequest) -> String {
        let s = ToneRequest::try_from(r).expect_err("invalid");
        assert_eq!(s.code(), tonic::Code::InvalidArgument);
        s.message().split(':').next().unwrap().to_string()
    }

    #[test]
    fn start_tone_fields_are_checked_one_by_one() {
        let t = ToneRequest::try_from(valid()).unwrap();
        assert_eq!(t.remote, "127.0.0.1:4000".parse().unwrap());
        assert_eq!(t.duration, None);
        assert_eq!(
            field_of(pb::StartToneRequest {
                remote_address: "nope".into(),
                ..valid()
            }),
            "remote_address"
        );
        for not_unicast in ["0.0.0.0", "224.0.0.1", "255.255.255.255", "ff02::1"] {
            assert_eq!(
                field_of(pb::StartToneRequest {
                    remote_address: not_unicast.into(),
                    ..valid()
                }),
                "remote_address",
                "{not_unicast}"
            );
        }
        assert_eq!(
            field_of(pb::StartToneRequest {
                remote_port: 0,
                ..valid()
            }),
            "remote_port"
        );
        assert_eq!(
            field_of(pb::StartToneRequest {
                remote_port: 70000,
                ..valid()
            }),
            "remote_port"
        );
        assert_eq!(
            field_of(pb::StartToneRequest {
                codec: 0,
                ..valid()
            }),
            "codec"
        );
        assert_eq!(
            field_of(pb::StartToneRequest {
                codec: 9,
                ..valid()
            }),
            "codec"
        );
        assert_eq!(
            field_of(pb::StartToneRequest {
                payload_type: 128,
                ..valid()
            }),
            "payload_type"
        );
        assert_eq!(
            field_of(pb::StartToneRequest {
                payload_type: 72,
                ..valid()
            }),
            "payload_type"
        );
        assert_eq!(
            field_of(pb::StartToneRequest {
                frequency_hz: 4000,
                ..valid()
            }),
            "frequency_hz"
        );
        assert_eq!(
            field_of(pb::StartToneRequest {
                level_dbm0: 10.0,
                ..valid()
            }),
            "level_dbm0"
        );
        assert_eq!(
            field_of(pb::StartToneRequest {
                level_dbm0: f64::NAN,
                ..valid()
            }),
            "level_dbm0"
        );
    }

    #[test]
    fn a_valid_request_survives_the_round_trip() {
        let id: SessionId = "0123456789abcdef".parse().unwrap();
        let t = ToneRequest::try_from(valid()).unwrap();
        let back = start_tone_request(&id, &t);
        assert_eq!(back, valid());
        assert_eq!(ToneRequest::try_from(back).unwrap(), t);
        // A shaped signal too: busy tone (480 + 620 Hz, 0.5 s on, 0.5 s off), and a sweep.
        for shaped in [
            pb::StartToneRequest {
                frequency_hz: 480,
                level_dbm0: -24.0,
                second_frequency_hz: 620,
                second_level_dbm0: -24.0,
                cadence_ms: vec![500, 500],
                ..valid()
            },
            pb::StartToneRequest {
                frequency_hz: 300,
                sweep_to_hz: 3000,
                sweep_ms: 2000,
                ..valid()
            },
        ] {
            let t = ToneRequest::try_from(shaped.clone()).unwrap();
            assert!(t.shape != Shape::default());
            assert_eq!(start_tone_request(&id, &t), shaped);
        }
    }

    #[test]
    fn srtp_keys_round_trip_and_bad_ones_name_their_field() {
        let keys = pb::SrtpKeys {
            suite: "AES_CM_128_HMAC_SHA1_80".into(),
            send_key: vec![1; 30],
            recv_key: vec![2; 30],
        };
        let r = pb::StartToneRequest {
            srtp: Some(keys.clone()),
            ..valid()
        };
        let t = ToneRequest::try_from(r.clone()).unwrap();
        assert_eq!(t.srtp.as_ref().unwrap().suite, Suite::AesCm128HmacSha1_80);
        let id: SessionId = "0123456789abcdef".parse().unwrap();
        assert_eq!(start_tone_request(&id, &t), r);
        for (bad, field) in [
            (
                pb::SrtpKeys {
                    suite: "AEAD_AES_128_GCM".into(),
                    ..keys.clone()
                },
                "srtp.suite",
            ),
            (
                pb::SrtpKeys {
                    send_key: vec![1; 29],
                    ..keys.clone()
                },
                "srtp.send_key",
            ),
            (
                pb::SrtpKeys {
                    recv_key: vec![],
                    ..keys.clone()
                },
                "srtp.recv_key",
            ),
        ] {
            assert_eq!(
                field_of(pb::StartToneRequest {
                    srtp: Some(bad),
                    ..valid()
                }),
                field
            );
        }
    }

    #[test]
    fn an_echo_needs_no_tone_and_takes_no_shape() {
        let echo = pb::StartToneRequest {
            echo: true,
            frequency_hz: 0,
            level_dbm0: 0.0,
            ..valid()
        };
        assert!(ToneRequest::try_from(echo.clone()).unwrap().echo);
        assert_eq!(
            field_of(pb::StartToneRequest {
                cadence_ms: vec![500, 500],
                ..echo
            }),
            "echo"
        );
    }

    #[test]
    fn a_bad_shape_names_its_field() {
        for (r, field) in [
            (
                pb::StartToneRequest {
                    second_frequency_hz: 440,
                    ..valid()
                },
                "second_frequency_hz",
            ),
            (
                pb::StartToneRequest {
                    second_frequency_hz: 350,
                    second_level_dbm0: 3.0,
                    ..valid()
                },
                "second_level_dbm0",
            ),
            (
                pb::StartToneRequest {
                    sweep_ms: 1000,
                    ..valid()
                },
                "sweep_to_hz",
            ),
            (
                pb::StartToneRequest {
                    sweep_to_hz: 3000,
                    ..valid()
                },
                "sweep_ms",
            ),
            (
                pb::StartToneRequest {
                    cadence_ms: vec![500, 510],
                    ..valid()
                },
                "cadence_ms",
            ),
        ] {
            assert_eq!(field_of(r), field);
        }
    }

    #[test]
    fn media_errors_get_precise_statuses() {
        assert_eq!(
            status_of(MediaError::NotFound("x".into())).code(),
            tonic::Code::NotFound
        );
        assert_eq!(
            status_of(MediaError::PortsExhausted).code(),
            tonic::Code::ResourceExhausted
        );
    }

    #[test]
    fn session_ids_are_checked() {
        assert!(session_id("session_id", "0123456789abcdef").is_ok());
        let e = session_id("session_id", "x").unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        assert!(e.message().starts_with("session_id:"));
    }
}
