//! Where a new media session goes: the pure half of signaling's media pool. The shell resolves
//! `media.endpoint` (a list of URLs, any host a DNS name that may stand for several addresses)
//! into members, checks each one every interval (lease renewal, which answers with media's
//! instance id and load) and feeds the results here; this decides, per member, when it counts as
//! reachable, lost or restarted ([`MediaWatch`]), and which healthy member takes the next session.
//!
//! **Placement**: the least-loaded eligible member, where load is the session count media last
//! reported (all owners: other signaling instances' sessions count too) plus the sessions placed
//! here since that report, so that a burst between two checks spreads evenly instead of landing
//! on whichever member looked emptiest a second ago. Ties go round-robin. Eligible: not failed
//! its last check, not draining, not refused an allocation as unavailable since its last good
//! check, still in DNS, and with a free port left by its report. An allocation that fails for
//! want of a port or of the member is placed on the next member; only when none is left does the
//! caller get a 503.

use std::collections::BTreeMap;

use crate::media_watch::{Check, MediaWatch, Verdict};

/// What a member's check reported besides its instance id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Load {
    /// Sessions on that media instance, all owners.
    pub sessions: u32,
    /// RTP ports (pairs) still free there.
    pub free_ports: u32,
    /// The instance is shutting down: it takes no new session.
    pub draining: bool,
}

/// Why no member can take a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoMember {
    /// None is reachable (or none is known yet).
    Down,
    /// Some are reachable, but none has a free port.
    Full,
}

#[derive(Debug, Default)]
struct Member {
    watch: MediaWatch,
    load: Option<Load>,
    /// Sessions placed here since the last report.
    placed_since: u32,
    /// Sessions of ours there now (placed and not yet released).
    held: u32,
    /// An allocation found it unavailable; cleared by its next good check.
    suspect: bool,
    /// Known to have no free port; cleared by its next report.
    full: bool,
    /// No longer among the resolved addresses: kept (not placed on) while it holds sessions.
    gone: bool,
}

impl Member {
    fn reachable(&self) -> bool {
        !self.watch.is_down() && !self.suspect && !self.gone
    }

    fn eligible(&self) -> bool {
        self.reachable() && !self.full && !self.load.is_some_and(|l| l.draining)
    }

    fn score(&self) -> u64 {
        u64::from(self.load.map_or(0, |l| l.sessions)) + u64::from(self.placed_since)
    }
}

/// One member as the statistics line, `/readyz` and `/metrics` show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberView<K> {
    pub key: K,
    /// Answered its last check and takes sessions (not draining, not gone).
    pub healthy: bool,
    pub draining: bool,
    /// Sessions media reported there (all owners) at the last check.
    pub sessions: u32,
    /// Sessions of ours there now.
    pub held: u32,
}

/// The members, keyed by whatever names an address to the shell (`K`).
#[derive(Debug)]
pub struct Pool<K> {
    members: BTreeMap<K, Member>,
    /// Where the round-robin among equally loaded members goes on.
    cursor: usize,
}

impl<K> Default for Pool<K> {
    fn default() -> Self {
        Pool {
            members: BTreeMap::new(),
            cursor: 0,
        }
    }
}

impl<K: Ord + Clone> Pool<K> {
    /// The resolved addresses now: new ones join (tried before their first check, as a single
    /// media service always was); missing ones are gone (no new sessions) and returned when
    /// they hold none, to be dropped. A gone member that comes back is simply in again.
    pub fn sync(&mut self, resolved: &[K]) -> Resync<K> {
        let mut joined = Vec::new();
        for k in resolved {
            match self.members.get_mut(k) {
                Some(m) => m.gone = false,
                None => {
                    self.members.insert(k.clone(), Member::default());
                    joined.push(k.clone());
                }
            }
        }
        for (k, m) in self.members.iter_mut() {
            if !resolved.contains(k) {
                m.gone = true;
            }
        }
        Resync {
            joined,
            dropped: self.drop_gone(),
        }
    }

    fn drop_gone(&mut self) -> Vec<K> {
        let dropped: Vec<K> = self
            .members
            .iter()
            .filter(|(_, m)| m.gone && m.held == 0)
            .map(|(k, _)| k.clone())
            .collect();
        for k in &dropped {
            self.members.remove(k);
        }
        dropped
    }

    /// A check's result for `key` (ignored for a member already dropped).
    pub fn check(&mut self, key: &K, check: Check, load: Option<Load>) -> Verdict {
        let Some(m) = self.members.get_mut(key) else {
            return Verdict::Same;
        };
        let answered = matches!(check, Check::Answered { .. });
        let verdict = m.watch.check(check);
        if answered {
            m.load = load;
            m.placed_since = 0;
            m.suspect = false;
            m.full = load.is_some_and(|l| l.free_ports == 0);
        }
        verdict
    }

    /// The member for the next session, not one of `tried`; counted as placed there.
    pub fn pick(&mut self, tried: &[K]) -> Result<K, NoMember> {
        let candidates: Vec<(usize, &K, u64)> = self
            .members
            .iter()
            .enumerate()
            .filter(|(_, (k, m))| m.eligible() && !tried.contains(k))
            .map(|(i, (k, m))| (i, k, m.score()))
            .collect();
        let Some(least) = candidates.iter().map(|c| c.2).min() else {
            let reachable = self.members.values().any(Member::reachable);
            return Err(if reachable {
                NoMember::Full
            } else {
                NoMember::Down
            });
        };
        let mut least: Vec<&(usize, &K, u64)> =
            candidates.iter().filter(|c| c.2 == least).collect();
        least.sort_by_key(|c| (c.0 < self.cursor, c.0));
        let (index, key, _) = least[0];
        let key = (*key).clone();
        self.cursor = index + 1;
        let m = self.members.get_mut(&key).expect("a candidate");
        m.placed_since += 1;
        Ok(key)
    }

    /// The session placed on `key` by [`Pool::pick`] is there: held until [`Pool::released`].
    pub fn allocated(&mut self, key: &K) {
        if let Some(m) = self.members.get_mut(key) {
            m.held += 1;
        }
    }

    /// The allocation placed on `key` failed: `unavailable` (the member did not answer, or
    /// answered that it takes no session) or for want of a port. Either way it takes no more
    /// sessions until its next good check.
    pub fn allocation_failed(&mut self, key: &K, unavailable: bool) {
        if let Some(m) = self.members.get_mut(key) {
            m.placed_since = m.placed_since.saturating_sub(1);
            if unavailable {
                m.suspect = true;
            } else {
                m.full = true;
            }
        }
    }

    /// A session of ours on `key` ended; returns the members now droppable.
    pub fn released(&mut self, key: &K) -> Vec<K> {
        if let Some(m) = self.members.get_mut(key) {
            m.held = m.held.saturating_sub(1);
        }
        self.drop_gone()
    }

    /// No member can take a session: new calls get 503 (before any check, members are tried).
    pub fn is_down(&self) -> bool {
        !self.members.values().any(Member::eligible)
    }

    /// Some member answered its last check (readiness).
    pub fn any_up(&self) -> bool {
        self.members.values().any(|m| m.watch.is_up() && !m.gone)
    }

    pub fn view(&self) -> Vec<MemberView<K>> {
        self.members
            .iter()
            .map(|(k, m)| MemberView {
                key: k.clone(),
                healthy: m.watch.is_up() && !m.gone && !m.load.is_some_and(|l| l.draining),
                draining: m.load.is_some_and(|l| l.draining),
                sessions: m.load.map_or(0, |l| l.sessions),
                held: m.held,
            })
            .collect()
    }
}

/// What [`Pool::sync`] changed.
#[derive(Debug, PartialEq, Eq)]
pub struct Resync<K> {
    /// New members: start checking them.
    pub joined: Vec<K>,
    /// Members gone from DNS and holding no session: stop checking them.
    pub dropped: Vec<K>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answered(i: &str) -> Check {
        Check::Answered { instance: i.into() }
    }

    fn load(sessions: u32) -> Option<Load> {
        Some(Load {
            sessions,
            free_ports: 100,
            draining: false,
        })
    }

    fn pool(keys: &[&'static str]) -> Pool<&'static str> {
        let mut p = Pool::default();
        let s = p.sync(keys);
        assert_eq!(s.joined, keys.to_vec());
        p
    }

    /// Places `n` sessions; how many each member got.
    fn place(p: &mut Pool<&'static str>, n: usize) -> BTreeMap<&'static str, usize> {
        let mut got = BTreeMap::new();
        for _ in 0..n {
            let k = p.pick(&[]).expect("a member");
            p.allocated(&k);
            *got.entry(k).or_default() += 1;
        }
        got
    }

    #[test]
    fn a_burst_between_two_reports_spreads_evenly() {
        let mut p = pool(&["a", "b", "c"]);
        for k in ["a", "b", "c"] {
            assert_eq!(p.check(&k, answered(k), load(0)), Verdict::Reachable);
        }
        let got = place(&mut p, 300);
        assert_eq!(got.values().copied().collect::<Vec<_>>(), [100, 100, 100]);
    }

    #[test]
    fn the_least_loaded_member_catches_up_first() {
        let mut p = pool(&["a", "b", "c"]);
        p.check(&"a", answered("a"), load(50));
        p.check(&"b", answered("b"), load(10));
        p.check(&"c", answered("c"), load(0));
        // c takes 10 to reach b, then b and c take 40 each to reach a; then all three alike.
        let got = place(&mut p, 10 + 80 + 30);
        assert_eq!(got[&"a"], 10);
        assert_eq!(got[&"b"], 50);
        assert_eq!(got[&"c"], 60);
    }

    #[test]
    fn a_report_replaces_the_sessions_placed_since_the_last_one() {
        let mut p = pool(&["a", "b"]);
        p.check(&"a", answered("a"), load(0));
        p.check(&"b", answered("b"), load(0));
        place(&mut p, 4);
        // Media now says what it holds: a's two ended, b's two are there.
        p.check(&"a", answered("a"), load(0));
        p.check(&"b", answered("b"), load(2));
        let got = place(&mut p, 2);
        assert_eq!(got.get(&"a"), Some(&2));
    }

    #[test]
    fn failed_draining_and_full_members_are_skipped_and_rejoin_on_a_good_check() {
        let mut p = pool(&["a", "b"]);
        p.check(&"a", answered("a"), load(0));
        p.check(&"b", answered("b"), load(5));
        assert_eq!(p.check(&"a", Check::Failed, None), Verdict::Lost);
        assert_eq!(place(&mut p, 3)[&"b"], 3, "a failed its check");
        assert_eq!(p.check(&"a", answered("a"), load(0)), Verdict::Reachable);
        assert_eq!(place(&mut p, 1)[&"a"], 1, "a is back");
        p.check(
            &"a",
            answered("a"),
            Some(Load {
                sessions: 0,
                free_ports: 100,
                draining: true,
            }),
        );
        assert_eq!(place(&mut p, 2)[&"b"], 2, "a is draining");
        p.check(
            &"a",
            answered("a"),
            Some(Load {
                sessions: 0,
                free_ports: 0,
                draining: false,
            }),
        );
        assert_eq!(place(&mut p, 2)[&"b"], 2, "a has no free port");
        assert!(!p.is_down());
    }

    #[test]
    fn a_failed_allocation_moves_the_session_on_and_the_last_failure_says_why() {
        let mut p = pool(&["a", "b"]);
        p.check(&"a", answered("a"), load(0));
        p.check(&"b", answered("b"), load(1));
        let first = p.pick(&[]).unwrap();
        assert_eq!(first, "a");
        p.allocation_failed(&first, true);
        let second = p.pick(&[first]).unwrap();
        assert_eq!(second, "b");
        p.allocation_failed(&second, false);
        assert_eq!(p.pick(&[first, second]), Err(NoMember::Full));
        assert!(p.is_down(), "a unavailable, b full: new calls get 503");
        // a's next good check brings it back.
        p.check(&"a", answered("a"), load(0));
        assert_eq!(p.pick(&[]), Ok("a"));
        // Nobody reachable at all.
        p.check(&"a", Check::Failed, None);
        p.check(&"b", Check::Failed, None);
        assert_eq!(p.pick(&[]), Err(NoMember::Down));
    }

    #[test]
    fn members_are_tried_before_their_first_check_and_none_is_down() {
        let mut p: Pool<&str> = Pool::default();
        assert!(p.is_down(), "nothing resolved yet");
        assert_eq!(p.pick(&[]), Err(NoMember::Down));
        p.sync(&["a"]);
        assert!(!p.is_down() && !p.any_up());
        assert_eq!(p.pick(&[]), Ok("a"));
        assert_eq!(p.check(&"a", Check::Failed, None), Verdict::NotYet);
        assert!(p.is_down());
    }

    #[test]
    fn a_member_gone_from_dns_is_dropped_when_its_last_session_ends() {
        let mut p = pool(&["a", "b"]);
        p.check(&"a", answered("a"), load(0));
        p.check(&"b", answered("b"), load(0));
        let got = place(&mut p, 2);
        assert_eq!(got.len(), 2);
        let s = p.sync(&["b", "c"]);
        assert_eq!(s.joined, ["c"]);
        assert!(s.dropped.is_empty(), "a still holds a session");
        assert!(
            p.view()
                .iter()
                .any(|v| v.key == "a" && !v.healthy && v.held == 1),
            "{:?}",
            p.view()
        );
        assert!(!place(&mut p, 4).contains_key(&"a"), "no new session on a");
        assert_eq!(p.released(&"a"), ["a"]);
        assert!(p.view().iter().all(|v| v.key != "a"));
        // A member holding nothing goes at once; one that comes back is in again.
        p.sync(&["a", "b", "c"]);
        let s = p.sync(&["b"]);
        assert_eq!(s.dropped, ["a"]);
    }

    #[test]
    fn restart_and_loss_are_per_member() {
        let mut p = pool(&["a", "b"]);
        p.check(&"a", answered("a1"), load(0));
        p.check(&"b", answered("b1"), load(0));
        assert_eq!(p.check(&"a", answered("a2"), load(0)), Verdict::Restarted);
        assert_eq!(p.check(&"b", answered("b1"), load(0)), Verdict::Same);
        assert_eq!(p.check(&"b", Check::Failed, None), Verdict::Lost);
        assert!(p.any_up() && !p.is_down());
        let v = p.view();
        assert!(v[0].healthy && !v[1].healthy, "{v:?}");
    }
}
