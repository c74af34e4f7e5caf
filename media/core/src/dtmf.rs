//! DTMF digits from RFC 4733 telephone-event packets. Pure: arrival time is passed in.
//!
//! Payload (RFC 4733 §2.3): event (8 bits), E (end), R (reserved), volume (6 bits), duration
//! (16 bits, timestamp units since the event's start). All packets of one event carry the RTP
//! timestamp of its start (§2.3.1), so the timestamp identifies the event; the marker is set on
//! the first packet only, which may be lost, so it is not relied on.
//!
//! Each digit is reported once, at its end, with its duration:
//! - when the first end packet (E bit) arrives; its retransmissions (§2.5.1.4 sends the end packet
//!   three times) and any later packet of the event are ignored;
//! - when all end packets were lost: when a packet of a newer event arrives, or when no packet of
//!   the event has arrived for the end timeout ([`DEFAULT_END_TIMEOUT`], checked by
//!   [`DtmfDetector::poll`]); the digit then says `end_received: false` and carries the last
//!   duration seen.
//!
//! Packets older than the current event (by RTP timestamp, modulo 2^32) are ignored. An event
//! longer than the 16-bit duration continues in a new segment (§2.5.1.3): a new timestamp, no
//! marker, the same event code, after a segment that reached duration 0xFFFF; it is the same
//! digit and its durations add up.
//!
//! Events 0–9 are '0'–'9', 10 '*', 11 '#', 12–15 'A'–'D', 16 (flash) 'F'. Other event codes
//! (RFC 4734 tones and the like) are followed so they delimit events, but not reported.
//!
//! Driving it (the str0m pattern): [`DtmfDetector::handle_packet`] for each telephone-event RTP
//! packet in arrival order, then [`DtmfDetector::poll`] until it returns `None`; call `poll` again
//! at [`DtmfDetector::poll_timeout`].

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How long after the last packet of an event without an end packet the digit is reported.
/// Senders refresh an event every 50 ms or faster (RFC 4733 §2.5.1.2), so a silence of 500 ms
/// means the end packets were lost, with room for jitter.
pub const DEFAULT_END_TIMEOUT: Duration = Duration::from_millis(500);

/// Event code of flash (hook flash, RFC 4733 §3.2).
pub const EVENT_FLASH: u8 = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DtmfError {
    #[error("telephone-event payload of {len} bytes: at least 4 needed")]
    TooShort { len: usize },
}

/// One telephone-event payload (RFC 4733 §2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventPayload {
    pub event: u8,
    pub end: bool,
    /// Power level in -dBm0 (0..=63).
    pub volume: u8,
    pub duration: u16,
}

/// Reads the first 4 bytes (a packet may carry more, e.g. redundant events).
pub fn parse_payload(payload: &[u8]) -> Result<EventPayload, DtmfError> {
    match payload {
        [event, flags, d0, d1, ..] => Ok(EventPayload {
            event: *event,
            end: flags & 0x80 != 0,
            volume: flags & 0x3f,
            duration: u16::from_be_bytes([*d0, *d1]),
        }),
        _ => Err(DtmfError::TooShort { len: payload.len() }),
    }
}

/// The key of a DTMF event code (RFC 4733 §3.2), `None` for other events.
pub fn event_char(event: u8) -> Option<char> {
    match event {
        0..=9 => Some(char::from(b'0' + event)),
        10 => Some('*'),
        11 => Some('#'),
        12..=15 => Some(char::from(b'A' + event - 12)),
        EVENT_FLASH => Some('F'),
        _ => None,
    }
}

/// A detected digit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Digit {
    pub digit: char,
    pub event: u8,
    /// RTP timestamp of the event's start (of its first segment).
    pub timestamp: u32,
    /// In timestamp units (all segments).
    pub duration: u32,
    pub volume: u8,
    /// False when the end packets were lost (reported at the next event or the timeout).
    pub end_received: bool,
}

impl Digit {
    /// The duration as time, at the event's RTP clock rate (8000 for telephone-event/8000).
    pub fn duration_time(&self, clock_rate: u32) -> Duration {
        Duration::from_nanos(
            u64::from(self.duration) * 1_000_000_000 / u64::from(clock_rate.max(1)),
        )
    }
}

#[derive(Debug, Clone)]
struct Current {
    /// Timestamp of the event's first segment, and of its current segment.
    first_timestamp: u32,
    timestamp: u32,
    event: u8,
    volume: u8,
    /// Duration of the segments before the current one.
    previous_segments: u32,
    duration: u16,
    last_seen: Instant,
}

#[derive(Debug, Clone)]
pub struct DtmfDetector {
    end_timeout: Duration,
    current: Option<Current>,
    /// Timestamp of the last event finished: its packets and older ones are ignored.
    last_finished: Option<u32>,
    ready: VecDeque<Digit>,
}

impl Default for DtmfDetector {
    fn default() -> Self {
        Self::new()
    }
}

/// True if timestamp `a` is later than `b` (RFC 1982 serial arithmetic on 32 bits).
fn is_newer(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) > 0
}

impl DtmfDetector {
    pub fn new() -> Self {
        Self::with_end_timeout(DEFAULT_END_TIMEOUT)
    }

    pub fn with_end_timeout(end_timeout: Duration) -> Self {
        DtmfDetector {
            end_timeout,
            current: None,
            last_finished: None,
            ready: VecDeque::new(),
        }
    }

    /// One telephone-event packet: its RTP timestamp, marker and payload, arriving at `now`.
    /// A payload shorter than 4 bytes is an error and changes nothing.
    pub fn handle_packet(
        &mut self,
        now: Instant,
        timestamp: u32,
        marker: bool,
        payload: &[u8],
    ) -> Result<(), DtmfError> {
        let p = parse_payload(payload)?;
        if self
            .last_finished
            .is_some_and(|done| !is_newer(timestamp, done))
        {
            return Ok(()); // a retransmitted end, or a late packet of a finished event
        }
        if let Some(c) = &mut self.current {
            if timestamp == c.timestamp {
                c.last_seen = now;
                // Durations only grow within a segment; a reordered older update changes nothing.
                if p.event == c.event {
                    c.duration = c.duration.max(p.duration);
                }
                if p.end {
                    self.finish(true);
                }
                return Ok(());
            }
            if !is_newer(timestamp, c.timestamp) {
                return Ok(()); // a late packet of an earlier segment
            }
            if !marker && p.event == c.event && c.duration == u16::MAX {
                // The next segment of a long event.
                c.previous_segments += u32::from(u16::MAX);
                c.timestamp = timestamp;
                c.duration = p.duration;
                c.last_seen = now;
                if p.end {
                    self.finish(true);
                }
                return Ok(());
            }
            // A newer event: the current one's end packets were lost.
            self.finish(false);
        }
        self.current = Some(Current {
            first_timestamp: timestamp,
            timestamp,
            event: p.event,
            volume: p.volume,
            previous_segments: 0,
            duration: p.duration,
            last_seen: now,
        });
        if p.end {
            self.finish(true);
        }
        Ok(())
    }

    /// Ends the current event and queues its digit.
    fn finish(&mut self, end_received: bool) {
        let Some(c) = self.current.take() else {
            return;
        };
        self.last_finished = Some(c.timestamp);
        if let Some(digit) = event_char(c.event) {
            self.ready.push_back(Digit {
                digit,
                event: c.event,
                timestamp: c.first_timestamp,
                duration: c.previous_segments + u32::from(c.duration),
                volume: c.volume,
                end_received,
            });
        }
    }

    /// The next digit detected, if any; also ends an event whose end packets were lost once the
    /// end timeout has passed at `now`.
    pub fn poll(&mut self, now: Instant) -> Option<Digit> {
        if self.ready.is_empty()
            && self
                .current
                .as_ref()
                .is_some_and(|c| now.saturating_duration_since(c.last_seen) >= self.end_timeout)
        {
            self.finish(false);
        }
        self.ready.pop_front()
    }

    /// When [`DtmfDetector::poll`] should be called next (after draining it), if an event is in
    /// progress.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.current
            .as_ref()
            .map(|c| c.last_seen + self.end_timeout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// A packet as it arrives: (ms since start, RTP timestamp, marker, payload).
    type Arrival = (u64, u32, bool, [u8; 4]);

    fn payload(event: u8, end: bool, duration: u16) -> [u8; 4] {
        let d = duration.to_be_bytes();
        [event, (u8::from(end) << 7) | 10, d[0], d[1]]
    }

    /// The packets of one event as a sender emits them (RFC 4733 §2.5): every 20 ms, the first
    /// with the marker and duration 160, updates growing by 160, then the end packet three times
    /// with the final duration. `updates` packets before the end.
    fn event(at_ms: u64, ts: u32, event: u8, updates: u16) -> Vec<Arrival> {
        let mut v: Vec<Arrival> = (1..=updates)
            .map(|k| {
                (
                    at_ms + 20 * u64::from(k - 1),
                    ts,
                    k == 1,
                    payload(event, false, 160 * k),
                )
            })
            .collect();
        let end_at = at_ms + 20 * u64::from(updates);
        for r in 0..3 {
            v.push((
                end_at + 20 * r,
                ts,
                false,
                payload(event, true, 160 * (updates + 1)),
            ));
        }
        v
    }

    /// Feeds arrivals, draining `poll` after each; returns the digits in order.
    fn run(d: &mut DtmfDetector, t0: Instant, arrivals: &[Arrival]) -> Vec<Digit> {
        let mut out = Vec::new();
        for (ms, ts, m, p) in arrivals {
            let now = t0 + MS * *ms as u32;
            d.handle_packet(now, *ts, *m, p).unwrap();
            while let Some(digit) = d.poll(now) {
                out.push(digit);
            }
        }
        out
    }

    fn chars(digits: &[Digit]) -> String {
        digits.iter().map(|d| d.digit).collect()
    }

    #[test]
    fn one_two_hash_each_once() {
        let t0 = Instant::now();
        let mut d = DtmfDetector::new();
        let mut stream = event(0, 16_000, 1, 4);
        stream.extend(event(300, 16_000 + 2400, 2, 4));
        stream.extend(event(600, 16_000 + 4800, 11, 4));
        let digits = run(&mut d, t0, &stream);
        assert_eq!(chars(&digits), "12#");
        for (digit, ts) in digits.iter().zip([16_000, 18_400, 20_800]) {
            assert!(digit.end_received);
            assert_eq!(digit.duration, 800);
            assert_eq!(digit.duration_time(8000), Duration::from_millis(100));
            assert_eq!(digit.timestamp, ts);
            assert_eq!(digit.volume, 10);
        }
        // Nothing else, ever: no event is in progress.
        assert_eq!(d.poll_timeout(), None);
        assert_eq!(d.poll(t0 + Duration::from_secs(60)), None);
    }

    #[test]
    fn lost_end_packets_report_at_the_next_event() {
        let t0 = Instant::now();
        let mut d = DtmfDetector::new();
        let mut stream: Vec<Arrival> = event(0, 1000, 5, 4)
            .into_iter()
            .filter(|a| a.3[1] & 0x80 == 0)
            .collect();
        stream.extend(event(200, 3000, 6, 4));
        let digits = run(&mut d, t0, &stream);
        assert_eq!(chars(&digits), "56");
        assert!(!digits[0].end_received);
        assert_eq!(digits[0].duration, 640); // the last update seen
        assert!(digits[1].end_received);
    }

    #[test]
    fn lost_end_packets_report_after_the_timeout() {
        let t0 = Instant::now();
        let mut d = DtmfDetector::new();
        let stream: Vec<Arrival> = event(0, 1000, 9, 4)
            .into_iter()
            .filter(|a| a.3[1] & 0x80 == 0)
            .collect();
        assert!(run(&mut d, t0, &stream).is_empty());
        // The last update arrived at 60 ms.
        let due = t0 + MS * 60 + DEFAULT_END_TIMEOUT;
        assert_eq!(d.poll_timeout(), Some(due));
        assert_eq!(d.poll(due - MS), None);
        let digit = d.poll(due).unwrap();
        assert_eq!((digit.digit, digit.end_received), ('9', false));
        assert_eq!(d.poll(due), None);
        assert_eq!(d.poll_timeout(), None);
        // The end packets turn up late after all: not a second digit.
        d.handle_packet(due + MS, 1000, false, &payload(9, true, 800))
            .unwrap();
        assert_eq!(d.poll(due + MS * 1000), None);
    }

    #[test]
    fn late_reordered_and_partial_packets() {
        let t0 = Instant::now();
        let mut d = DtmfDetector::new();
        let stream: Vec<Arrival> = vec![
            // First packet (marker) lost; an update, the end, then an older update arriving late.
            (20, 500, false, payload(3, false, 320)),
            (60, 500, false, payload(3, true, 640)),
            (61, 500, false, payload(3, false, 480)),
            (80, 500, false, payload(3, true, 640)),
            // Only an end packet of the next event.
            (300, 900, false, payload(4, true, 400)),
            (320, 900, false, payload(4, true, 400)),
            // A packet from before both events.
            (330, 100, true, payload(7, false, 160)),
            // The same digit twice in a row is two events.
            (400, 1500, true, payload(4, false, 160)),
            (420, 1500, false, payload(4, true, 320)),
            (600, 2000, true, payload(4, false, 160)),
            (620, 2000, false, payload(4, true, 320)),
        ];
        let digits = run(&mut d, t0, &stream);
        assert_eq!(chars(&digits), "3444");
        assert_eq!(digits[0].duration, 640);
        assert_eq!(digits[1].duration, 400);
        assert!(digits.iter().all(|d| d.end_received));
        assert_eq!(d.poll(t0 + Duration::from_secs(10)), None);
    }

    #[test]
    fn a_long_event_continues_in_new_segments() {
        let t0 = Instant::now();
        let mut d = DtmfDetector::new();
        let ts0 = u32::MAX - 1000; // and the timestamp wraps in between
        let ts1 = ts0.wrapping_add(0xffff);
        let stream: Vec<Arrival> = vec![
            (0, ts0, true, payload(0, false, 160)),
            (8000, ts0, false, payload(0, false, 64_000)),
            (8190, ts0, false, payload(0, false, 0xffff)),
            (8200, ts1, false, payload(0, false, 160)),
            (8300, ts1, false, payload(0, true, 960)),
            (8320, ts1, false, payload(0, true, 960)),
            // A late packet of the first segment.
            (8330, ts0, false, payload(0, false, 64_160)),
        ];
        let digits = run(&mut d, t0, &stream);
        assert_eq!(chars(&digits), "0");
        assert_eq!(digits[0].duration, 0xffff + 960);
        assert_eq!(digits[0].timestamp, ts0);
    }

    #[test]
    fn event_codes() {
        let keys: String = (0..=16).map(|e| event_char(e).unwrap()).collect();
        assert_eq!(keys, "0123456789*#ABCDF");
        assert_eq!(event_char(17), None);
        assert_eq!(event_char(255), None);

        let t0 = Instant::now();
        let mut d = DtmfDetector::new();
        let mut stream = event(0, 100, 32, 2); // an RFC 4734 tone (V.21): not a digit
        stream.extend(event(200, 2000, EVENT_FLASH, 2));
        stream.extend(event(400, 4000, 15, 2));
        assert_eq!(chars(&run(&mut d, t0, &stream)), "FD");
    }

    #[test]
    fn short_payload_is_an_error_and_changes_nothing() {
        let t0 = Instant::now();
        let mut d = DtmfDetector::new();
        assert_eq!(
            d.handle_packet(t0, 1, true, &[1, 0x80, 0]),
            Err(DtmfError::TooShort { len: 3 })
        );
        assert_eq!(
            d.handle_packet(t0, 1, true, &[]),
            Err(DtmfError::TooShort { len: 0 })
        );
        assert_eq!(d.poll_timeout(), None);
        assert_eq!(d.poll(t0 + Duration::from_secs(1)), None);
        assert_eq!(
            parse_payload(&[11, 0x8a, 0x03, 0x20, 0xff]),
            Ok(EventPayload {
                event: 11,
                end: true,
                volume: 10,
                duration: 800
            })
        );
        // The reserved bit is ignored.
        assert_eq!(parse_payload(&[1, 0x40, 0, 0]).unwrap().volume, 0);
    }
}
