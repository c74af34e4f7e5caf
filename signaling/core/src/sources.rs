//! Limits by the source address of SIP requests (`[sources]`): which networks may send at all,
//! how many new calls a second and how many calls at once one address may have. Pure: the
//! shell passes the address and the time, and tells when a call it admitted has ended.
//!
//! Memory stays bounded under a flood from many addresses: an address has an entry only while
//! it has calls in progress or its bucket is refilling (at most one second after its last
//! INVITE), and idle entries are dropped whenever the table has doubled since the last sweep.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use ipnet::IpNet;

/// The policy (`[sources]`); 0 turns a limit off.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    /// Empty: every source may send.
    pub allowed: Vec<IpNet>,
    pub max_new_calls_per_second: u32,
    pub max_concurrent_calls: u32,
}

impl Policy {
    /// Whether `ip` may send SIP requests at all. An IPv4-mapped IPv6 address counts as its
    /// IPv4 address.
    pub fn allows(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.allowed.is_empty() || self.allowed.iter().any(|n| n.contains(&ip))
    }

    fn limits_calls(&self) -> bool {
        self.max_new_calls_per_second > 0 || self.max_concurrent_calls > 0
    }
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    /// Token bucket of new calls: refills at `max_new_calls_per_second`, holds as many.
    tokens: f64,
    refilled: Instant,
    active: u32,
}

/// The per-address state.
#[derive(Debug, Default)]
pub struct Sources {
    policy: Policy,
    entries: HashMap<IpAddr, Entry>,
    /// Table size after the last sweep of idle entries.
    swept_at_len: usize,
}

impl Sources {
    pub fn new(policy: Policy) -> Sources {
        Sources {
            policy,
            entries: HashMap::new(),
            swept_at_len: 0,
        }
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Addresses with state (calls in progress or a bucket refilling).
    pub fn tracked(&self) -> usize {
        self.entries.len()
    }

    /// Admits a new call from `ip` at `now`, or says which limit it would pass (the caller
    /// answers 503 with Retry-After). An admitted call must be ended with [`Sources::ended`].
    pub fn admit(&mut self, ip: IpAddr, now: Instant) -> Result<(), String> {
        if !self.policy.limits_calls() {
            return Ok(());
        }
        let ip = ip.to_canonical();
        self.sweep(now);
        let rate = self.policy.max_new_calls_per_second;
        let e = self.entries.entry(ip).or_insert(Entry {
            tokens: f64::from(rate),
            refilled: now,
            active: 0,
        });
        if rate > 0 {
            let elapsed = now.saturating_duration_since(e.refilled).as_secs_f64();
            e.tokens = (e.tokens + elapsed * f64::from(rate)).min(f64::from(rate));
            e.refilled = now;
        }
        let max = self.policy.max_concurrent_calls;
        if max > 0 && e.active >= max {
            return Err(format!(
                "{ip} has {} calls in progress (sources.max_concurrent_calls {max})",
                e.active
            ));
        }
        if rate > 0 {
            if e.tokens < 1.0 {
                return Err(format!(
                    "{ip} sends more than {rate} new calls a second \
                     (sources.max_new_calls_per_second)"
                ));
            }
            e.tokens -= 1.0;
        }
        e.active += 1;
        Ok(())
    }

    /// A call [`Sources::admit`] admitted from `ip` has ended.
    pub fn ended(&mut self, ip: IpAddr) {
        if let Some(e) = self.entries.get_mut(&ip.to_canonical()) {
            e.active = e.active.saturating_sub(1);
        }
    }

    /// Drops idle entries (no call in progress, bucket full again) once the table has doubled.
    fn sweep(&mut self, now: Instant) {
        if self.entries.len() < 1024.max(2 * self.swept_at_len) {
            return;
        }
        let rate = f64::from(self.policy.max_new_calls_per_second);
        let full_after = |e: &Entry| {
            if rate == 0.0 {
                Duration::ZERO
            } else {
                Duration::from_secs_f64(((rate - e.tokens) / rate).max(0.0))
            }
        };
        self.entries.retain(|_, e| {
            e.active > 0 || now.saturating_duration_since(e.refilled) < full_after(e)
        });
        self.swept_at_len = self.entries.len();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn policy(rate: u32, concurrent: u32) -> Policy {
        Policy {
            allowed: vec![],
            max_new_calls_per_second: rate,
            max_concurrent_calls: concurrent,
        }
    }

    #[test]
    fn the_allow_list_admits_its_networks_only() {
        assert!(
            Policy::default().allows(ip("198.51.100.1")),
            "empty: everyone"
        );
        let p = Policy {
            allowed: vec![
                "10.0.0.0/8".parse().unwrap(),
                "2001:db8::/32".parse().unwrap(),
            ],
            ..Policy::default()
        };
        assert!(p.allows(ip("10.200.1.1")));
        assert!(p.allows(ip("::ffff:10.0.0.1")), "IPv4-mapped");
        assert!(p.allows(ip("2001:db8::5")));
        assert!(!p.allows(ip("11.0.0.1")));
        assert!(!p.allows(ip("127.0.0.1")), "loopback is not special");
    }

    #[test]
    fn no_limits_keep_no_state() {
        let mut s = Sources::new(policy(0, 0));
        let t0 = Instant::now();
        for i in 0..10_000u32 {
            assert!(s.admit(IpAddr::from(i.to_be_bytes()), t0).is_ok());
        }
        assert_eq!(s.tracked(), 0);
    }

    #[test]
    fn concurrent_calls_are_limited_per_address() {
        let mut s = Sources::new(policy(0, 2));
        let t0 = Instant::now();
        let (a, b) = (ip("192.0.2.1"), ip("192.0.2.2"));
        assert!(s.admit(a, t0).is_ok());
        assert!(s.admit(a, t0).is_ok());
        let why = s.admit(a, t0).unwrap_err();
        assert!(
            why.contains("2 calls in progress") && why.contains("max_concurrent_calls"),
            "{why}"
        );
        assert!(s.admit(b, t0).is_ok(), "another address is not affected");
        s.ended(a);
        assert!(s.admit(a, t0).is_ok(), "a slot freed by a call's end");
        s.ended(ip("203.0.113.9")); // never admitted: ignored
    }

    #[test]
    fn new_calls_a_second_are_a_token_bucket() {
        let mut s = Sources::new(policy(3, 0));
        let t0 = Instant::now();
        let a = ip("192.0.2.1");
        let admitted = |s: &mut Sources, at: Instant, n: usize| {
            (0..n).filter(|_| s.admit(a, at).is_ok()).count()
        };
        assert_eq!(
            admitted(&mut s, t0, 10),
            3,
            "a burst gets one second's worth"
        );
        let why = s.admit(a, t0).unwrap_err();
        assert!(why.contains("3 new calls a second"), "{why}");
        assert_eq!(admitted(&mut s, t0 + MS(340), 5), 1, "one token per 1/3 s");
        assert_eq!(
            admitted(&mut s, t0 + MS(5000), 10),
            3,
            "never more than one second's worth"
        );
        assert!(
            s.admit(ip("192.0.2.2"), t0 + MS(5000)).is_ok(),
            "per address"
        );
    }

    #[test]
    fn idle_addresses_are_forgotten() {
        let mut s = Sources::new(policy(10, 0));
        let t0 = Instant::now();
        for i in 0..5000u32 {
            assert!(s
                .admit(IpAddr::from((0x0a00_0000 + i).to_be_bytes()), t0)
                .is_ok());
        }
        // Each admitted call ends; their buckets are full again a second later.
        for i in 0..5000u32 {
            s.ended(IpAddr::from((0x0a00_0000 + i).to_be_bytes()));
        }
        let later = t0 + Duration::from_secs(2);
        for i in 0..5000u32 {
            assert!(s
                .admit(IpAddr::from((0x0b00_0000 + i).to_be_bytes()), later)
                .is_ok());
        }
        assert!(
            s.tracked() <= 5000 + 1024,
            "{} addresses tracked",
            s.tracked()
        );
        // An address with a call in progress is kept through sweeps.
        let busy = ip("192.0.2.1");
        let mut s = Sources::new(policy(0, 1));
        assert!(s.admit(busy, t0).is_ok());
        for i in 0..10_000u32 {
            let a = IpAddr::from((0x0c00_0000 + i).to_be_bytes());
            assert!(s.admit(a, later).is_ok());
            s.ended(a);
        }
        assert!(s.admit(busy, later).is_err(), "its call is still counted");
    }
}
