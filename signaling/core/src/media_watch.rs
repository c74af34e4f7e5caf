//! Whether the media service is there: the pure half of signaling's media watchdog. The shell
//! renews its lease every check interval (bounded by a timeout) and feeds each result here;
//! this decides when media counts as reachable, lost (its calls end with BYE, new calls get
//! 503) or restarted (its instance id changed: its sessions are gone, so are our calls).

/// What one check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// Media answered; its instance id (random per process start).
    Answered { instance: String },
    /// No answer within the timeout, or an error.
    Failed,
}

/// What the shell must do after a check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing changed.
    Same,
    /// Media answers (again, or for the first time): ready, calls accepted.
    Reachable,
    /// Media stopped answering: end its calls with BYE, refuse new ones (503), not ready.
    Lost,
    /// Media answers, but it is another process: its sessions are gone, end the calls.
    Restarted,
    /// Not reached yet since startup (calls are tried; allocation tells).
    NotYet,
}

#[derive(Debug, Default)]
pub struct MediaWatch {
    instance: Option<String>,
    up: bool,
    down: bool,
}

impl MediaWatch {
    /// Whether new calls must be refused now (the last check failed after media was seen, or
    /// any check failed): false before the first check, so the first calls are tried.
    pub fn is_down(&self) -> bool {
        self.down
    }

    pub fn is_up(&self) -> bool {
        self.up
    }

    pub fn check(&mut self, check: Check) -> Verdict {
        match check {
            Check::Answered { instance } => {
                let restarted = self.instance.as_ref().is_some_and(|old| *old != instance);
                self.instance = Some(instance);
                self.down = false;
                let was_up = std::mem::replace(&mut self.up, true);
                match (restarted, was_up) {
                    (true, _) => Verdict::Restarted,
                    (false, false) => Verdict::Reachable,
                    (false, true) => Verdict::Same,
                }
            }
            Check::Failed => {
                self.down = true;
                if std::mem::replace(&mut self.up, false) {
                    Verdict::Lost
                } else if self.instance.is_none() {
                    Verdict::NotYet
                } else {
                    Verdict::Same
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answered(i: &str) -> Check {
        Check::Answered { instance: i.into() }
    }

    #[test]
    fn startup_loss_return_and_restart() {
        let mut w = MediaWatch::default();
        assert!(
            !w.is_down() && !w.is_up(),
            "calls are tried before the first check"
        );
        assert_eq!(w.check(Check::Failed), Verdict::NotYet);
        assert!(w.is_down());
        assert_eq!(w.check(answered("a")), Verdict::Reachable);
        assert!(w.is_up() && !w.is_down());
        assert_eq!(w.check(answered("a")), Verdict::Same);
        assert_eq!(w.check(Check::Failed), Verdict::Lost);
        assert!(w.is_down());
        assert_eq!(w.check(Check::Failed), Verdict::Same, "lost once");
        // Back, but a new process: its sessions are gone with the old one.
        assert_eq!(w.check(answered("b")), Verdict::Restarted);
        assert!(w.is_up());
        assert_eq!(w.check(answered("b")), Verdict::Same);
        // Restarted between two checks, never seen down.
        assert_eq!(w.check(answered("c")), Verdict::Restarted);
    }
}
