//! Admission by measured load. The shell measures; this decides. A call refused here gets
//! 503 with Retry-After at once and is counted as shed; nothing established is touched.

use std::time::Duration;

/// The thresholds (`[overload]`); 0 (or zero duration) turns a check off.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Thresholds {
    pub max_calls_in_setup: u64,
    pub max_pending_allocations: u64,
    pub max_event_loop_lag: Duration,
    pub max_answer_lateness: Duration,
    pub max_invite_wait: Duration,
}

/// How many admitted calls must be late for `answer_lateness` to count: shedding helps against
/// a queue of late answers (a burst: at 3,000 calls/s, 30 ms of queue is 90 calls), not against
/// one slow answer (a slow first media allocation, a host short of CPU for a moment at a few
/// calls/s), which turning new callers away cannot speed up.
pub const LATE_ANSWERS: usize = 4;

/// What the shell measured when the INVITE arrived.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Signals {
    /// Calls admitted and not yet answered (ACK not received), this one not counted.
    pub calls_in_setup: u64,
    /// AllocateSession requests in flight.
    pub pending_allocations: u64,
    /// The event loop's latest lateness.
    pub event_loop_lag: Duration,
    /// How far past its answer time the [`LATE_ANSWERS`]-th oldest admitted, unanswered call is
    /// (0 with fewer such calls or none late): a queue of late answers, the answer path's own
    /// queueing whatever its cause (media slow to allocate, the process short of CPU).
    pub answer_lateness: Duration,
    /// How long this INVITE waited between reaching the host (the kernel's receive time of its
    /// datagram; over TCP, when it was read) and this decision: the socket's receive queue and
    /// the messages ahead of it. A backlog shows here before any admitted call is late.
    pub invite_wait: Duration,
}

/// `Err(why)` when a new call must be shed.
pub fn admit(t: &Thresholds, s: &Signals) -> Result<(), String> {
    if t.max_calls_in_setup > 0 && s.calls_in_setup >= t.max_calls_in_setup {
        return Err(format!(
            "overload: {} calls in setup (overload.max_calls_in_setup {})",
            s.calls_in_setup, t.max_calls_in_setup
        ));
    }
    if t.max_pending_allocations > 0 && s.pending_allocations >= t.max_pending_allocations {
        return Err(format!(
            "overload: {} media allocations pending (overload.max_pending_allocations {})",
            s.pending_allocations, t.max_pending_allocations
        ));
    }
    if !t.max_event_loop_lag.is_zero() && s.event_loop_lag >= t.max_event_loop_lag {
        return Err(format!(
            "overload: event loop {} ms late (overload.max_event_loop_lag_ms {})",
            s.event_loop_lag.as_millis(),
            t.max_event_loop_lag.as_millis()
        ));
    }
    if !t.max_answer_lateness.is_zero() && s.answer_lateness >= t.max_answer_lateness {
        return Err(format!(
            "overload: {LATE_ANSWERS} calls' answers are {} ms late or more (overload.max_answer_lateness_ms {})",
            s.answer_lateness.as_millis(),
            t.max_answer_lateness.as_millis()
        ));
    }
    if !t.max_invite_wait.is_zero() && s.invite_wait >= t.max_invite_wait {
        return Err(format!(
            "overload: the INVITE waited {} ms to be read (overload.max_invite_wait_ms {})",
            s.invite_wait.as_millis(),
            t.max_invite_wait.as_millis()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Thresholds = Thresholds {
        max_calls_in_setup: 10,
        max_pending_allocations: 5,
        max_event_loop_lag: Duration::from_millis(100),
        max_answer_lateness: Duration::from_millis(50),
        max_invite_wait: Duration::from_millis(20),
    };

    #[test]
    fn each_signal_sheds_at_its_threshold_and_zero_turns_it_off() {
        assert_eq!(admit(&T, &Signals::default()), Ok(()));
        let busy = Signals {
            calls_in_setup: 9,
            pending_allocations: 4,
            event_loop_lag: Duration::from_millis(99),
            answer_lateness: Duration::from_millis(49),
            invite_wait: Duration::from_millis(19),
        };
        assert_eq!(admit(&T, &busy), Ok(()), "just below every threshold");
        for (s, key) in [
            (
                Signals {
                    calls_in_setup: 10,
                    ..busy
                },
                "max_calls_in_setup",
            ),
            (
                Signals {
                    pending_allocations: 5,
                    ..busy
                },
                "max_pending_allocations",
            ),
            (
                Signals {
                    event_loop_lag: Duration::from_millis(100),
                    ..busy
                },
                "max_event_loop_lag_ms",
            ),
            (
                Signals {
                    answer_lateness: Duration::from_millis(50),
                    ..busy
                },
                "max_answer_lateness_ms",
            ),
            (
                Signals {
                    invite_wait: Duration::from_millis(20),
                    ..busy
                },
                "max_invite_wait_ms",
            ),
        ] {
            let why = admit(&T, &s).expect_err(key);
            assert!(why.contains(key), "{why}");
        }
        let off = Thresholds::default();
        let extreme = Signals {
            calls_in_setup: u64::MAX,
            pending_allocations: u64::MAX,
            event_loop_lag: Duration::from_secs(3600),
            answer_lateness: Duration::from_secs(3600),
            invite_wait: Duration::from_secs(3600),
        };
        assert_eq!(admit(&off, &extreme), Ok(()));
    }
}
