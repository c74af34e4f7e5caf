//! The pacing scheduler: which sessions are due to send, given the time. No clock, no I/O: the
//! caller passes `now` and sends what [`Pacer::poll`] reports.
//!
//! Every session sends one packet per 20 ms. A session is placed in one of 20 one-millisecond
//! phase slots (the least loaded), so the sessions' packets spread evenly over the packet time
//! instead of all leaving at once. A poll walks the slots whose time has come since the previous
//! poll, at most one packet time plus the catch-up window: after a stall (a pacing thread, or
//! the virtual CPU under it, not scheduled for a while) a session sends the packets it owes from
//! the last `catch_up` packet times too, in order, so the caller's audio has no gap, only
//! jitter; packet times further back are skipped (the sequence goes on, the RTP timestamp jumps).
//! With a catch-up of 0, a session sends once per poll, never a burst.

use std::time::{Duration, Instant};

use crate::rtp::PTIME_MS;

const SLOTS: usize = PTIME_MS as usize;
const SLOT: Duration = Duration::from_millis(1);

#[derive(Debug)]
pub struct Pacer<K> {
    epoch: Instant,
    slots: Vec<Vec<K>>,
    /// The last tick (ms since epoch) whose slot was processed.
    done_through: Option<u64>,
    len: usize,
    /// How many ticks back a poll walks at most: one packet time plus the catch-up window.
    window: u64,
}

impl<K: Copy + PartialEq> Pacer<K> {
    /// A pacer that never catches up: after a stall each session sends once.
    pub fn new(epoch: Instant) -> Self {
        Self::with_catch_up(epoch, 0)
    }

    /// A pacer that, after a stall, still sends the packets due in the last `catch_up` packet
    /// times (besides the one due now); older packet times are skipped.
    pub fn with_catch_up(epoch: Instant, catch_up: u32) -> Self {
        Pacer {
            epoch,
            slots: (0..SLOTS).map(|_| Vec::new()).collect(),
            done_through: None,
            len: 0,
            window: (u64::from(catch_up) + 1) * PTIME_MS,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Adds a session in the least loaded phase slot; returns the slot.
    pub fn insert(&mut self, key: K) -> usize {
        if self.len == 0 {
            // Idle until now: the slots walked before are history. Without this the next poll
            // walked back up to a packet time and sent the new session's first packet at once,
            // counted as up to 19 ms late.
            self.done_through = None;
        }
        let slot = (0..SLOTS)
            .min_by_key(|&s| self.slots[s].len())
            .expect("SLOTS > 0");
        self.slots[slot].push(key);
        self.len += 1;
        slot
    }

    pub fn remove(&mut self, key: K) -> bool {
        for slot in &mut self.slots {
            if let Some(i) = slot.iter().position(|k| *k == key) {
                slot.swap_remove(i);
                self.len -= 1;
                return true;
            }
        }
        false
    }

    /// Milliseconds since the epoch (the pacer's clock).
    pub fn tick_of(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.epoch).as_millis() as u64
    }

    /// How late a poll may be before a session's oldest packet times owed are skipped: one
    /// packet time plus the catch-up window.
    pub fn catch_up_window(&self) -> Duration {
        SLOT * self.window as u32
    }

    /// The instant of a tick.
    pub fn instant_of(&self, tick: u64) -> Instant {
        self.epoch + SLOT * tick as u32
    }

    /// Calls `due(key, due_tick)` for every session whose packet time has come since the previous
    /// poll, in order of due tick (a session at most 1 + catch-up times per call, for packet
    /// times a whole packet time apart), and returns when to poll next.
    pub fn poll(&mut self, now: Instant, mut due: impl FnMut(K, u64)) -> Instant {
        let now_tick = self.tick_of(now);
        let first = match self.done_through {
            Some(t) if t >= now_tick => return self.instant_of(t + 1),
            Some(t) => (t + 1).max(now_tick.saturating_sub(self.window - 1)),
            None => now_tick,
        };
        for tick in first..=now_tick {
            for &key in &self.slots[(tick % SLOTS as u64) as usize] {
                due(key, tick);
            }
        }
        self.done_through = Some(now_tick);
        self.instant_of(now_tick + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn phases_spread_evenly() {
        let mut p = Pacer::new(Instant::now());
        let slots: Vec<usize> = (0..100).map(|k| p.insert(k)).collect();
        let mut counts = [0; SLOTS];
        for s in slots {
            counts[s] += 1;
        }
        assert!(counts.iter().all(|&c| c == 5), "{counts:?}");
    }

    #[test]
    fn each_session_sends_every_20ms_in_simulated_time() {
        let t0 = Instant::now();
        let mut p = Pacer::new(t0);
        for k in 0..50u32 {
            p.insert(k);
        }
        let mut sends: HashMap<u32, Vec<u64>> = HashMap::new();
        let mut now = t0;
        let end = t0 + Duration::from_secs(2);
        while now < end {
            let next = p.poll(now, |k, tick| sends.entry(k).or_default().push(tick));
            assert!(next > now);
            now = next; // a perfect sleeper
        }
        for (k, ticks) in &sends {
            assert!(
                ticks.len() >= 99 && ticks.len() <= 100,
                "{k}: {}",
                ticks.len()
            );
            assert!(
                ticks.windows(2).all(|w| w[1] - w[0] == 20),
                "{k}: {ticks:?}"
            );
        }
    }

    #[test]
    fn late_polls_send_with_the_due_tick_and_never_burst() {
        let t0 = Instant::now();
        let mut p = Pacer::new(t0);
        for k in 0..40u32 {
            p.insert(k);
        }
        let mut sends: HashMap<u32, Vec<u64>> = HashMap::new();
        // Jittery wake-ups: 0, 3, 7 ms late, and one stall of 95 ms.
        let wakes = [0u64, 3, 10, 17, 40, 135, 136, 150, 170, 190];
        for w in wakes {
            p.poll(t0 + Duration::from_millis(w), |k, tick| {
                sends.entry(k).or_default().push(tick)
            });
        }
        for ticks in sends.values() {
            // No session ever sends twice in one packet time.
            assert!(ticks.windows(2).all(|w| w[1] - w[0] >= 20), "{ticks:?}");
            // Due ticks keep the session's phase.
            assert!(ticks.iter().all(|t| t % 20 == ticks[0] % 20));
        }
        // After the 95 ms stall (40 -> 135), each session sent exactly once for ticks 116..=135.
        let after: usize = sends
            .values()
            .map(|t| t.iter().filter(|&&x| (116..=135).contains(&x)).count())
            .sum();
        assert_eq!(after, 40);
    }

    /// Polls every millisecond from 0 to 400 but for a stall (no poll) over `stall`; returns
    /// each session's due ticks in the order sent.
    fn run_with_stall(
        catch_up: u32,
        stall: std::ops::RangeInclusive<u64>,
    ) -> HashMap<u32, Vec<u64>> {
        let t0 = Instant::now();
        let mut p = Pacer::with_catch_up(t0, catch_up);
        for k in 0..40u32 {
            p.insert(k);
        }
        let mut sends: HashMap<u32, Vec<u64>> = HashMap::new();
        for ms in (0..=400u64).filter(|ms| !stall.contains(ms)) {
            p.poll(t0 + Duration::from_millis(ms), |k, tick| {
                sends.entry(k).or_default().push(tick)
            });
        }
        sends
    }

    #[test]
    fn a_stall_within_the_catch_up_window_leaves_no_packet_time_out() {
        // 59 ms without a poll; a catch-up of 3 packet times covers it.
        let sends = run_with_stall(3, 41..=99);
        assert_eq!(sends.len(), 40);
        for ticks in sends.values() {
            assert!(ticks.windows(2).all(|w| w[1] - w[0] == 20), "{ticks:?}");
            assert!(ticks[0] < 20 && *ticks.last().unwrap() > 380, "{ticks:?}");
        }
        // The poll at 100 sent what was owed: some sessions two or three packets at once.
        let burst = sends
            .values()
            .filter(|t| t.iter().filter(|&&x| (41..=100).contains(&x)).count() == 3)
            .count();
        assert!(burst > 0);
    }

    #[test]
    fn a_stall_past_the_catch_up_window_skips_only_the_oldest_packet_times() {
        // 99 ms without a poll; the poll at 140 walks ticks 61..=140 (1 + 3 packet times), so
        // each session skips exactly its packet time in 41..=60.
        let sends = run_with_stall(3, 41..=139);
        assert_eq!(
            Pacer::<u32>::with_catch_up(Instant::now(), 3).catch_up_window(),
            Duration::from_millis(80)
        );
        for ticks in sends.values() {
            let steps: Vec<u64> = ticks.windows(2).map(|w| w[1] - w[0]).collect();
            assert_eq!(steps.iter().filter(|&&s| s == 40).count(), 1, "{ticks:?}");
            assert!(steps.iter().all(|&s| s == 20 || s == 40), "{ticks:?}");
            assert!(ticks.iter().all(|t| !(41..=60).contains(t)), "{ticks:?}");
        }
    }

    #[test]
    fn a_session_added_after_idle_starts_at_its_next_slot_not_in_the_past() {
        let t0 = Instant::now();
        let mut p = Pacer::new(t0);
        p.insert(1u32);
        p.poll(t0, |_, _| {});
        assert!(p.remove(1));
        // Idle for 1 s (nobody polls an empty pacer), then a session arrives at tick 1005.
        let slot = p.insert(2u32) as u64;
        let now = t0 + Duration::from_millis(1005);
        let mut first = None;
        let mut t = now;
        while first.is_none() {
            t = p.poll(t, |_, tick| first = Some(tick));
        }
        let first = first.unwrap();
        assert!(
            first >= 1005,
            "first packet due at tick {first}, before the session existed"
        );
        assert_eq!(first % 20, slot);
        assert!(first < 1005 + 20);
    }

    #[test]
    fn remove_stops_sending() {
        let t0 = Instant::now();
        let mut p = Pacer::new(t0);
        p.insert(1u32);
        p.insert(2u32);
        assert!(p.remove(1));
        assert!(!p.remove(1));
        assert_eq!(p.len(), 1);
        let mut seen = Vec::new();
        for ms in 0..40 {
            p.poll(t0 + Duration::from_millis(ms), |k, _| seen.push(k));
        }
        assert!(seen.iter().all(|&k| k == 2) && seen.len() == 2);
    }
}
