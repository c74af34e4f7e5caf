//! The session table: which sessions exist, whose they are, what they send, which RTP ports are
//! free, and when a session must go (its owner's lease lapsed, or its tone ended more than the
//! grace ago). Pure: time comes in as arguments and sockets are the shell's business — the
//! shell takes a port here, binds it outside any lock, and inserts the session when it is bound.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant, SystemTime};

use crate::codec::SessionId;
use crate::session::{MediaError, State, ToneRequest};

#[derive(Debug, Clone)]
pub struct TableConfig {
    /// Even RTP ports (RTCP on +1), in the order they are handed out.
    pub ports: Vec<u16>,
    pub default_lease: Duration,
    /// How long a session whose tone ended stays (for a last look, and late releases).
    pub grace: Duration,
}

/// One session's state.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The shell's handle for this session's I/O (pacing, receive task).
    pub key: u64,
    pub call_id: String,
    pub owner: String,
    pub state: State,
    pub tone: Option<ToneRequest>,
    pub port: u16,
    pub created: Instant,
    pub created_at: SystemTime,
    /// When the tone finished or was stopped (for the grace period).
    pub idle_since: Option<Instant>,
    /// The SSRC of this session's RTP stream, once one was started (kept across hold).
    pub ssrc: Option<u32>,
    /// Whether the caller's RTP has reached the session's port (after a StartTone).
    pub caller_rtp_seen: bool,
    /// The start a StartTone that waits for the caller's RTP left for [`SessionTable::caller_rtp`].
    pub pending: Option<ToneStart>,
}

/// How to start a tone: a new RTP stream, or the session's stream continued (same SSRC,
/// sequence and timestamp go on, marker set).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ToneStart {
    pub key: u64,
    pub ssrc: u32,
    pub resume: bool,
    /// Not now: when the caller's first RTP packet arrives ([`SessionTable::caller_rtp`]).
    pub waiting: bool,
}

/// Why a session should be released now, if it should: its owner's lease lapsed, or its tone
/// ended more than `grace` ago.
pub fn expiry_reason(
    now: Instant,
    owner_renewed: Option<(Instant, Duration)>,
    idle_since: Option<Instant>,
    grace: Duration,
) -> Option<&'static str> {
    match owner_renewed {
        Some((at, lease)) if now.saturating_duration_since(at) <= lease => {}
        _ => return Some("lease expired"),
    }
    match idle_since {
        Some(t) if now.saturating_duration_since(t) > grace => Some("tone finished"),
        _ => None,
    }
}

#[derive(Debug)]
pub struct SessionTable {
    cfg: TableConfig,
    sessions: HashMap<SessionId, Entry>,
    keys: HashMap<u64, SessionId>,
    free_ports: VecDeque<u16>,
    /// Owner -> (last renewal, lease).
    owners: HashMap<String, (Instant, Duration)>,
    next_key: u64,
    total: u64,
    expired: u64,
}

/// (active sessions, sending sessions, free ports, total allocated, expired)
pub type Counts = (u32, u32, u32, u64, u64);

impl SessionTable {
    pub fn new(cfg: TableConfig) -> SessionTable {
        SessionTable {
            free_ports: cfg.ports.iter().copied().collect(),
            cfg,
            sessions: HashMap::new(),
            keys: HashMap::new(),
            owners: HashMap::new(),
            next_key: 1,
            total: 0,
            expired: 0,
        }
    }

    /// The next free port to try, taken out of the pool; give it back with
    /// [`SessionTable::port_busy`] when it cannot be bound, or use it in
    /// [`SessionTable::insert`].
    pub fn take_port(&mut self) -> Option<u16> {
        self.free_ports.pop_front()
    }

    /// A taken port someone else holds: back to the end of the pool.
    pub fn port_busy(&mut self, port: u16) {
        self.free_ports.push_back(port);
    }

    /// A taken port that could not be tried (no descriptor left): back to the front.
    pub fn port_untried(&mut self, port: u16) {
        self.free_ports.push_front(port);
    }

    pub fn free_ports(&self) -> usize {
        self.free_ports.len()
    }

    /// Records a session on a port from [`SessionTable::take_port`]; renews its owner's lease.
    /// Returns the session's key and lease.
    #[allow(clippy::too_many_arguments)]
    pub fn insert(
        &mut self,
        id: SessionId,
        call_id: &str,
        owner: &str,
        lease: Option<Duration>,
        port: u16,
        now: Instant,
        wall: SystemTime,
    ) -> (u64, Duration) {
        let lease = lease.unwrap_or(self.cfg.default_lease);
        let key = self.next_key;
        self.next_key += 1;
        self.total += 1;
        self.owners.insert(owner.to_string(), (now, lease));
        self.keys.insert(key, id.clone());
        self.sessions.insert(
            id,
            Entry {
                key,
                call_id: call_id.to_string(),
                owner: owner.to_string(),
                state: State::Allocated,
                tone: None,
                port,
                created: now,
                created_at: wall,
                idle_since: None,
                ssrc: None,
                caller_rtp_seen: false,
                pending: None,
            },
        );
        (key, lease)
    }

    fn entry(&mut self, id: &SessionId) -> Result<&mut Entry, MediaError> {
        self.sessions
            .get_mut(id)
            .ok_or_else(|| MediaError::NotFound(id.to_string()))
    }

    /// Starts (or restarts, after hold or with new parameters) the tone. The stream goes on
    /// (same SSRC) when the session has one with the same payload type; otherwise a new
    /// stream starts with `new_ssrc`.
    pub fn start_tone(
        &mut self,
        id: &SessionId,
        req: ToneRequest,
        new_ssrc: u32,
    ) -> Result<ToneStart, MediaError> {
        let e = self.entry(id)?;
        let same_payload = e.tone.as_ref().map(|t| t.payload_type) == Some(req.payload_type);
        let (ssrc, resume) = match e.ssrc {
            Some(ssrc) if same_payload => (ssrc, true),
            _ => (new_ssrc, false),
        };
        e.ssrc = Some(ssrc);
        e.idle_since = None;
        let start = ToneStart {
            key: e.key,
            ssrc,
            resume,
            waiting: req.wait_for_caller_rtp && !e.caller_rtp_seen,
        };
        if start.waiting {
            e.state = State::WaitingForCaller;
            e.pending = Some(start);
        } else {
            e.state = State::Sending;
            e.pending = None;
        }
        e.tone = Some(req);
        Ok(start)
    }

    /// The caller's RTP reached the session with key `key` (the receive task tells, once per
    /// StartTone): a start that waited for it is due now. Later StartTone requests on the
    /// session start at once.
    pub fn caller_rtp(&mut self, key: u64) -> Option<(SessionId, ToneStart)> {
        let id = self.keys.get(&key)?.clone();
        let e = self.sessions.get_mut(&id)?;
        e.caller_rtp_seen = true;
        let start = e.pending.take()?;
        e.state = State::Sending;
        Some((
            id,
            ToneStart {
                waiting: false,
                ..start
            },
        ))
    }

    /// Stops sending (hold). Returns the key when it was sending (the shell stops the stream).
    pub fn stop_tone(&mut self, id: &SessionId, now: Instant) -> Result<Option<u64>, MediaError> {
        let e = self.entry(id)?;
        if e.state == State::WaitingForCaller {
            // Nothing was sent: the start is called off.
            e.pending = None;
            e.state = State::Stopped;
            e.idle_since = Some(now);
            return Ok(None);
        }
        if e.state != State::Sending {
            return Ok(None);
        }
        e.state = State::Stopped;
        e.idle_since = Some(now);
        Ok(Some(e.key))
    }

    /// A stream's duration elapsed on its pacing thread.
    pub fn tone_finished(&mut self, key: u64, now: Instant) -> Option<SessionId> {
        let id = self.keys.get(&key)?.clone();
        let e = self.sessions.get_mut(&id)?;
        if e.state != State::Sending {
            return None;
        }
        e.state = State::Stopped;
        e.idle_since = Some(now);
        Some(id)
    }

    /// Removes the session and returns its port to the pool.
    pub fn release(&mut self, id: &SessionId) -> Result<Entry, MediaError> {
        let mut e = self
            .sessions
            .remove(id)
            .ok_or_else(|| MediaError::NotFound(id.to_string()))?;
        self.keys.remove(&e.key);
        self.free_ports.push_back(e.port);
        e.state = State::Released;
        Ok(e)
    }

    /// Renews the owner's lease; returns how many sessions it holds.
    pub fn renew(&mut self, owner: &str, now: Instant) -> u32 {
        let lease = self
            .owners
            .get(owner)
            .map(|(_, l)| *l)
            .unwrap_or(self.cfg.default_lease);
        self.owners.insert(owner.to_string(), (now, lease));
        self.sessions.values().filter(|s| s.owner == owner).count() as u32
    }

    /// The sessions that must go now, with the reason; counts them as expired and forgets
    /// owners with no session and a lapsed lease. Release each with [`SessionTable::release`].
    pub fn sweep(&mut self, now: Instant) -> Vec<(SessionId, &'static str)> {
        let expired: Vec<(SessionId, &'static str)> = self
            .sessions
            .iter()
            .filter_map(|(id, s)| {
                expiry_reason(
                    now,
                    self.owners.get(&s.owner).copied(),
                    s.idle_since,
                    self.cfg.grace,
                )
                .map(|r| (id.clone(), r))
            })
            .collect();
        self.expired += expired.len() as u64;
        let in_use: std::collections::HashSet<&str> = self
            .sessions
            .iter()
            .filter(|(id, _)| !expired.iter().any(|(e, _)| e == *id))
            .map(|(_, s)| s.owner.as_str())
            .collect();
        let keep: std::collections::HashSet<String> =
            in_use.into_iter().map(str::to_string).collect();
        self.owners.retain(|o, (at, lease)| {
            keep.contains(o) || now.saturating_duration_since(*at) <= *lease
        });
        expired
    }

    pub fn id_of(&self, key: u64) -> Option<&SessionId> {
        self.keys.get(&key)
    }

    pub fn get(&self, id: &SessionId) -> Result<&Entry, MediaError> {
        self.sessions
            .get(id)
            .ok_or_else(|| MediaError::NotFound(id.to_string()))
    }

    pub fn iter(&self) -> impl Iterator<Item = (&SessionId, &Entry)> {
        self.sessions.iter()
    }

    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    pub fn counts(&self) -> Counts {
        let sending = self
            .sessions
            .values()
            .filter(|s| s.state == State::Sending)
            .count();
        (
            self.sessions.len() as u32,
            sending as u32,
            self.free_ports.len() as u32,
            self.total,
            self.expired,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::Codec;

    const S: fn(u64) -> Duration = Duration::from_secs;

    fn table(ports: &[u16]) -> SessionTable {
        SessionTable::new(TableConfig {
            ports: ports.to_vec(),
            default_lease: S(30),
            grace: S(5),
        })
    }

    fn tone(pt: u8) -> ToneRequest {
        ToneRequest {
            remote: "127.0.0.1:4000".parse().unwrap(),
            codec: if pt == 8 { Codec::Pcma } else { Codec::Pcmu },
            payload_type: pt,
            frequency_hz: 440,
            level_dbm0: -10.0,
            duration: None,
            dtmf_payload_type: None,
            wait_for_caller_rtp: false,
            shape: Default::default(),
            echo: false,
            srtp: None,
        }
    }

    fn id(n: u64) -> SessionId {
        SessionId::from_random(n)
    }

    fn add(
        t: &mut SessionTable,
        n: u64,
        owner: &str,
        lease: Option<Duration>,
        now: Instant,
    ) -> u64 {
        let port = t.take_port().expect("a free port");
        t.insert(
            id(n),
            "call",
            owner,
            lease,
            port,
            now,
            SystemTime::UNIX_EPOCH,
        )
        .0
    }

    #[test]
    fn expiry_follows_lease_and_grace() {
        let t0 = Instant::now();
        let lease = S(30);
        let grace = S(5);
        assert_eq!(
            expiry_reason(t0 + S(10), Some((t0, lease)), None, grace),
            None
        );
        assert_eq!(
            expiry_reason(t0 + S(31), Some((t0, lease)), None, grace),
            Some("lease expired")
        );
        assert_eq!(expiry_reason(t0, None, None, grace), Some("lease expired"));
        assert_eq!(
            expiry_reason(t0 + S(4), Some((t0, lease)), Some(t0), grace),
            None
        );
        assert_eq!(
            expiry_reason(t0 + S(6), Some((t0, lease)), Some(t0), grace),
            Some("tone finished")
        );
    }

    #[test]
    fn ports_are_handed_out_returned_and_busy_ones_go_last() {
        let mut t = table(&[10, 12, 14]);
        assert_eq!(t.take_port(), Some(10));
        t.port_busy(10);
        assert_eq!(t.take_port(), Some(12));
        assert_eq!(t.take_port(), Some(14));
        assert_eq!(t.take_port(), Some(10));
        assert_eq!(t.take_port(), None, "exhausted");
        let now = Instant::now();
        t.insert(id(1), "c", "o", None, 12, now, SystemTime::UNIX_EPOCH);
        assert_eq!(t.counts(), (1, 0, 0, 1, 0));
        let e = t.release(&id(1)).unwrap();
        assert_eq!((e.port, e.state), (12, State::Released));
        assert_eq!(t.take_port(), Some(12), "released port is free again");
        assert_eq!(
            t.release(&id(1)).err(),
            Some(MediaError::NotFound(id(1).to_string()))
        );
    }

    #[test]
    fn a_start_that_waits_for_the_caller_comes_with_its_first_rtp() {
        let t0 = Instant::now();
        let mut t = table(&[4000]);
        let (key, _) = t.insert(id(1), "c", "o", None, 4000, t0, SystemTime::now());
        assert_eq!(
            t.caller_rtp(key),
            None,
            "RTP before StartTone starts nothing"
        );
        let mut t = table(&[4000]);
        let (key, _) = t.insert(id(1), "c", "o", None, 4000, t0, SystemTime::now());
        let wait = ToneRequest {
            wait_for_caller_rtp: true,
            ..tone(0)
        };
        let start = t.start_tone(&id(1), wait.clone(), 7).unwrap();
        assert!(start.waiting);
        assert_eq!(t.get(&id(1)).unwrap().state, State::WaitingForCaller);
        let (who, due) = t.caller_rtp(key).expect("the start is due");
        assert_eq!(who, id(1));
        assert_eq!(
            (due.key, due.ssrc, due.resume, due.waiting),
            (key, 7, false, false)
        );
        assert_eq!(t.get(&id(1)).unwrap().state, State::Sending);
        assert_eq!(t.caller_rtp(key), None, "once");
        // Hold and resume: the caller has sent RTP, so the new start does not wait.
        assert_eq!(t.stop_tone(&id(1), t0).unwrap(), Some(key));
        let again = t.start_tone(&id(1), wait.clone(), 9).unwrap();
        assert!(!again.waiting && again.resume);
        assert_eq!(t.get(&id(1)).unwrap().state, State::Sending);
    }

    #[test]
    fn a_waiting_start_is_called_off_by_stop() {
        let t0 = Instant::now();
        let mut t = table(&[4000]);
        let (key, _) = t.insert(id(1), "c", "o", None, 4000, t0, SystemTime::now());
        let wait = ToneRequest {
            wait_for_caller_rtp: true,
            ..tone(0)
        };
        assert!(t.start_tone(&id(1), wait, 7).unwrap().waiting);
        assert_eq!(t.stop_tone(&id(1), t0).unwrap(), None, "no stream to stop");
        assert_eq!(t.get(&id(1)).unwrap().state, State::Stopped);
        assert_eq!(t.caller_rtp(key), None, "nothing left to start");
    }

    #[test]
    fn a_held_stream_resumes_with_its_ssrc_and_a_new_codec_starts_a_new_one() {
        let now = Instant::now();
        let mut t = table(&[10]);
        let key = add(&mut t, 1, "o", None, now);
        let first = t.start_tone(&id(1), tone(0), 111).unwrap();
        assert_eq!(
            first,
            ToneStart {
                key,
                ssrc: 111,
                resume: false,
                waiting: false,
            }
        );
        assert_eq!(t.stop_tone(&id(1), now).unwrap(), Some(key));
        assert_eq!(t.stop_tone(&id(1), now).unwrap(), None, "already stopped");
        let resumed = t.start_tone(&id(1), tone(0), 222).unwrap();
        assert_eq!(
            resumed,
            ToneStart {
                key,
                ssrc: 111,
                resume: true,
                waiting: false,
            }
        );
        let pcma = t.start_tone(&id(1), tone(8), 333).unwrap();
        assert_eq!(
            pcma,
            ToneStart {
                key,
                ssrc: 333,
                resume: false,
                waiting: false,
            }
        );
        assert_eq!(t.get(&id(1)).unwrap().ssrc, Some(333));
        assert!(matches!(
            t.start_tone(&id(9), tone(0), 1),
            Err(MediaError::NotFound(_))
        ));
    }

    #[test]
    fn lapsed_owners_lose_their_sessions_and_finished_tones_go_after_the_grace() {
        let t0 = Instant::now();
        let mut t = table(&[10, 12, 14]);
        add(&mut t, 1, "gone", Some(S(2)), t0);
        add(&mut t, 2, "alive", Some(S(2)), t0);
        let k3 = add(&mut t, 3, "alive", Some(S(2)), t0);
        t.start_tone(&id(3), tone(0), 7).unwrap();
        assert_eq!(t.sweep(t0 + S(1)), vec![]);
        assert_eq!(t.renew("alive", t0 + S(2)), 2);
        assert_eq!(t.tone_finished(k3, t0 + S(2)), Some(id(3)));
        assert_eq!(t.tone_finished(k3, t0 + S(2)), None, "once");
        assert_eq!(t.sweep(t0 + S(3)), vec![(id(1), "lease expired")]);
        t.release(&id(1)).unwrap();
        assert_eq!(t.renew("alive", t0 + S(7)), 2);
        let mut gone = t.sweep(t0 + S(8));
        gone.sort();
        assert_eq!(gone, vec![(id(3), "tone finished")]);
        assert_eq!(t.counts().4, 2, "expired counted");
    }
}
