//! The call policy of one incoming call: when to answer, when to hang up, and why the call
//! ended. Pure: it takes `now` and events, and returns what to do; the SIP shell (ezk) carries
//! the messages and runs a timer until [`CallPolicy::deadline`].

use std::fmt;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// Time between 180 Ringing and 200 OK; `None` rings until the caller cancels.
    pub answer_after: Option<Duration>,
    /// Tone time between the ACK and our BYE.
    pub tone: Duration,
}

/// Why a call ended (logged, and given to media as the release reason).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// We played the tone for its whole duration and sent BYE.
    ToneFinished,
    /// The caller sent BYE.
    CallerHungUp,
    /// The caller sent CANCEL before the answer (487).
    CallerCancelled,
    /// No ACK for our 200 OK within 64*T1 (we send BYE).
    NoAck,
    /// The media service lost the session or became unreachable (we send BYE).
    MediaLost,
    /// Shutdown.
    Shutdown,
}

impl EndReason {
    /// Whether ending this way means we send a BYE.
    pub fn we_send_bye(self) -> bool {
        matches!(
            self,
            EndReason::ToneFinished | EndReason::NoAck | EndReason::MediaLost | EndReason::Shutdown
        )
    }

    pub fn who_hung_up(self) -> &'static str {
        match self {
            EndReason::CallerHungUp | EndReason::CallerCancelled => "caller",
            _ => "milliwatt",
        }
    }
}

impl fmt::Display for EndReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EndReason::ToneFinished => "tone finished",
            EndReason::CallerHungUp => "caller hung up",
            EndReason::CallerCancelled => "caller cancelled",
            EndReason::NoAck => "no ACK for 200 OK",
            EndReason::MediaLost => "media session lost",
            EndReason::Shutdown => "shutdown",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// 180 sent; answering at the deadline (or never, without auto answer).
    Ringing {
        answer_at: Option<Instant>,
    },
    /// 200 OK sent, waiting for the ACK (the SIP stack retransmits the 200).
    Answering,
    /// ACK received, tone playing until `hangup_at`.
    Confirmed {
        hangup_at: Instant,
    },
    Ended(EndReason),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    Cancel,
    Ack,
    AckTimeout,
    Bye,
    MediaLost,
    Shutdown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Send 200 OK with the SDP answer.
    Answer,
    /// Tell media to start the tone.
    StartTone,
    /// The call is over: send BYE if the reason says so, release the media session.
    End(EndReason),
}

#[derive(Debug, Clone)]
pub struct CallPolicy {
    timing: Timing,
    phase: Phase,
    started: Instant,
    answered_at: Option<Instant>,
}

impl CallPolicy {
    /// A call whose 180 Ringing went out at `now`.
    pub fn ringing(timing: Timing, now: Instant) -> Self {
        CallPolicy {
            timing,
            phase: Phase::Ringing {
                answer_at: timing.answer_after.map(|d| now + d),
            },
            started: now,
            answered_at: None,
        }
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// When [`CallPolicy::on_timeout`] must be called next.
    pub fn deadline(&self) -> Option<Instant> {
        match self.phase {
            Phase::Ringing { answer_at } => answer_at,
            Phase::Confirmed { hangup_at, .. } => Some(hangup_at),
            Phase::Answering | Phase::Ended(_) => None,
        }
    }

    /// Time from the ACK to `now`, or to the end of the call (the talk time), if answered.
    pub fn talk_time(&self, now: Instant) -> Option<Duration> {
        self.answered_at.map(|t| now.saturating_duration_since(t))
    }

    pub fn age(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.started)
    }

    pub fn on_timeout(&mut self, now: Instant) -> Option<Action> {
        match self.phase {
            Phase::Ringing { answer_at: Some(t) } if now >= t => {
                self.phase = Phase::Answering;
                Some(Action::Answer)
            }
            Phase::Confirmed { hangup_at, .. } if now >= hangup_at => {
                self.end(EndReason::ToneFinished)
            }
            _ => None,
        }
    }

    fn end(&mut self, reason: EndReason) -> Option<Action> {
        self.phase = Phase::Ended(reason);
        Some(Action::End(reason))
    }

    pub fn on_event(&mut self, event: Event, now: Instant) -> Option<Action> {
        match (self.phase, event) {
            (Phase::Ended(_), _) => None,
            (Phase::Ringing { .. }, Event::Cancel) => self.end(EndReason::CallerCancelled),
            // A CANCEL that crosses our 200 OK has no effect (RFC 3261 9.2): the call goes on.
            (_, Event::Cancel) => None,
            (Phase::Answering, Event::Ack) => {
                self.answered_at = Some(now);
                self.phase = Phase::Confirmed {
                    hangup_at: now + self.timing.tone,
                };
                Some(Action::StartTone)
            }
            (_, Event::Ack) => None,
            (Phase::Answering, Event::AckTimeout) => self.end(EndReason::NoAck),
            (_, Event::AckTimeout) => None,
            (_, Event::Bye) => self.end(EndReason::CallerHungUp),
            (_, Event::MediaLost) => self.end(EndReason::MediaLost),
            (_, Event::Shutdown) => self.end(EndReason::Shutdown),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    fn timing() -> Timing {
        Timing {
            answer_after: Some(MS(1000)),
            tone: Duration::from_secs(10),
        }
    }

    /// Runs the policy's timers in simulated time until `until`, returning the actions with
    /// their times.
    fn run(p: &mut CallPolicy, until: Instant) -> Vec<(Instant, Action)> {
        let mut out = Vec::new();
        while let Some(t) = p.deadline().filter(|t| *t <= until) {
            if let Some(a) = p.on_timeout(t) {
                out.push((t, a));
            }
        }
        out
    }

    #[test]
    fn answers_after_the_delay_and_hangs_up_after_the_tone() {
        let t0 = Instant::now();
        let mut p = CallPolicy::ringing(timing(), t0);
        assert_eq!(p.on_timeout(t0 + MS(999)), None);
        assert_eq!(
            run(&mut p, t0 + MS(5000)),
            vec![(t0 + MS(1000), Action::Answer)]
        );
        assert_eq!(
            p.deadline(),
            None,
            "no timer while the stack waits for the ACK"
        );
        assert_eq!(
            p.on_event(Event::Ack, t0 + MS(1050)),
            Some(Action::StartTone)
        );
        assert_eq!(
            run(&mut p, t0 + MS(60_000)),
            vec![(t0 + MS(11_050), Action::End(EndReason::ToneFinished))]
        );
        assert_eq!(p.phase(), Phase::Ended(EndReason::ToneFinished));
        assert!(EndReason::ToneFinished.we_send_bye());
    }

    #[test]
    fn cancel_during_the_delay_ends_without_answer() {
        let t0 = Instant::now();
        let mut p = CallPolicy::ringing(timing(), t0);
        assert_eq!(
            p.on_event(Event::Cancel, t0 + MS(500)),
            Some(Action::End(EndReason::CallerCancelled))
        );
        assert_eq!(run(&mut p, t0 + MS(5000)), vec![]);
        assert!(!EndReason::CallerCancelled.we_send_bye());
    }

    #[test]
    fn cancel_after_the_answer_is_ignored() {
        let t0 = Instant::now();
        let mut p = CallPolicy::ringing(timing(), t0);
        run(&mut p, t0 + MS(1000));
        assert_eq!(p.on_event(Event::Cancel, t0 + MS(1001)), None);
        assert_eq!(
            p.on_event(Event::Ack, t0 + MS(1002)),
            Some(Action::StartTone)
        );
    }

    #[test]
    fn caller_bye_during_the_tone() {
        let t0 = Instant::now();
        let mut p = CallPolicy::ringing(timing(), t0);
        run(&mut p, t0 + MS(1000));
        p.on_event(Event::Ack, t0 + MS(1000));
        assert_eq!(p.talk_time(t0 + MS(4000)), Some(MS(3000)));
        assert_eq!(
            p.on_event(Event::Bye, t0 + MS(4000)),
            Some(Action::End(EndReason::CallerHungUp))
        );
        assert_eq!(
            run(&mut p, t0 + MS(60_000)),
            vec![],
            "no BYE of ours after the caller's"
        );
        assert_eq!(p.on_event(Event::Bye, t0 + MS(4001)), None);
    }

    #[test]
    fn lost_ack_ends_the_call_with_bye() {
        let t0 = Instant::now();
        let mut p = CallPolicy::ringing(timing(), t0);
        run(&mut p, t0 + MS(1000));
        assert_eq!(
            p.on_event(Event::AckTimeout, t0 + MS(33_000)),
            Some(Action::End(EndReason::NoAck))
        );
        assert!(EndReason::NoAck.we_send_bye());
    }

    #[test]
    fn without_auto_answer_it_rings_until_cancelled() {
        let t0 = Instant::now();
        let mut p = CallPolicy::ringing(
            Timing {
                answer_after: None,
                ..timing()
            },
            t0,
        );
        assert_eq!(p.deadline(), None);
        assert_eq!(run(&mut p, t0 + Duration::from_secs(3600)), vec![]);
        assert_eq!(
            p.on_event(Event::Cancel, t0 + Duration::from_secs(3600)),
            Some(Action::End(EndReason::CallerCancelled))
        );
    }

    #[test]
    fn media_loss_ends_a_confirmed_call_with_bye() {
        let t0 = Instant::now();
        let mut p = CallPolicy::ringing(timing(), t0);
        run(&mut p, t0 + MS(1000));
        p.on_event(Event::Ack, t0 + MS(1000));
        assert_eq!(
            p.on_event(Event::MediaLost, t0 + MS(2000)),
            Some(Action::End(EndReason::MediaLost))
        );
    }
}
