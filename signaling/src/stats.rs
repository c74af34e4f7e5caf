//! Call counters for the statistics line.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use milliwatt_common::prometheus_client::encoding::{EncodeMetric, MetricEncoder};
use milliwatt_common::prometheus_client::metrics::counter::ConstCounter;
use milliwatt_common::prometheus_client::metrics::histogram::Histogram;
use milliwatt_common::prometheus_client::metrics::MetricType;

use milliwatt_common::admin::metric::{counter, gauge};
use milliwatt_common::prometheus_client::collector::Collector;
use milliwatt_common::prometheus_client::encoding::DescriptorEncoder;

/// Buckets (seconds) of the answer latency: INVITE received to 200 OK sent (includes the
/// configured answer delay).
const ANSWER_BUCKETS: [f64; 12] = [
    0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0,
];

#[derive(Debug)]
pub struct Stats {
    pub total: AtomicU64,
    pub active: AtomicU64,
    pub answered: AtomicU64,
    pub failed: AtomicU64,
    pub cancelled: AtomicU64,
    pub rejected_malformed: AtomicU64,
    /// Calls refused by measured load (`[overload]`).
    pub shed: AtomicU64,
    /// INVITEs refused 503 by a per-source limit (`[sources]`).
    pub source_limited: AtomicU64,
    /// Requests from outside `sources.allowed_networks` (answered 403 or not at all).
    pub source_refused: AtomicU64,
    /// Calls admitted and not yet answered (no ACK yet).
    pub in_setup: AtomicU64,
    /// AllocateSession requests in flight.
    pub pending_allocations: AtomicU64,
    /// The event loop's latest lateness, in µs.
    pub event_loop_lag_us: AtomicU64,
    /// How long the latest new INVITE waited to be read (`overload.max_invite_wait_ms`), in µs.
    pub invite_wait_us: AtomicU64,
    /// When each admitted, unanswered call is due to be answered (its 200 OK not sent yet).
    answers_due: Mutex<BTreeSet<(Instant, u64)>>,
    answers_seq: AtomicU64,
    /// SIP responses we sent, by status code.
    responses: Mutex<BTreeMap<u16, u64>>,
    /// Failed calls by reason.
    failures: Mutex<BTreeMap<&'static str, u64>>,
    pub answer_latency: Histogram,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            total: AtomicU64::new(0),
            active: AtomicU64::new(0),
            answered: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            cancelled: AtomicU64::new(0),
            rejected_malformed: AtomicU64::new(0),
            shed: AtomicU64::new(0),
            source_limited: AtomicU64::new(0),
            source_refused: AtomicU64::new(0),
            in_setup: AtomicU64::new(0),
            pending_allocations: AtomicU64::new(0),
            event_loop_lag_us: AtomicU64::new(0),
            invite_wait_us: AtomicU64::new(0),
            answers_due: Mutex::default(),
            answers_seq: AtomicU64::new(0),
            responses: Mutex::default(),
            failures: Mutex::default(),
            answer_latency: Histogram::new(ANSWER_BUCKETS),
        }
    }
}

/// Holds one unit of a gauge of [`Stats`] (calls in setup, pending allocations) until dropped,
/// whatever path the call takes.
pub struct Held {
    stats: Arc<Stats>,
    gauge: fn(&Stats) -> &AtomicU64,
}

impl Held {
    pub fn new(stats: Arc<Stats>, gauge: fn(&Stats) -> &AtomicU64) -> Held {
        gauge(&stats).fetch_add(1, Relaxed);
        Held { stats, gauge }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        (self.gauge)(&self.stats).fetch_sub(1, Relaxed);
    }
}

/// One call in the answer queue ([`Stats::answer_lateness`]) until dropped: when its 200 OK
/// goes out, or the call ends first.
pub struct AnswerDue {
    stats: Arc<Stats>,
    key: (Instant, u64),
}

impl AnswerDue {
    pub fn new(stats: Arc<Stats>, due: Instant) -> AnswerDue {
        let key = (due, stats.answers_seq.fetch_add(1, Relaxed));
        stats.answers_due.lock().expect("not poisoned").insert(key);
        AnswerDue { stats, key }
    }

    /// When the answer is due.
    pub fn due(&self) -> Instant {
        self.key.0
    }
}

impl Drop for AnswerDue {
    fn drop(&mut self) {
        self.stats
            .answers_due
            .lock()
            .expect("not poisoned")
            .remove(&self.key);
    }
}

impl Stats {
    /// How far past its answer time the oldest unanswered call is at `now` (zero when none is).
    pub fn answer_lateness(&self, now: Instant) -> Duration {
        self.answer_queue_lateness(now, 1)
    }

    /// How far past its answer time the `k`-th oldest unanswered call is at `now` (zero when
    /// fewer than `k` calls are unanswered or it is not due yet): what admission judges, a queue
    /// of late answers rather than one slow call.
    pub fn answer_queue_lateness(&self, now: Instant, k: usize) -> Duration {
        self.answers_due
            .lock()
            .expect("not poisoned")
            .iter()
            .nth(k.saturating_sub(1))
            .map_or(Duration::ZERO, |(due, _)| {
                now.saturating_duration_since(*due)
            })
    }

    /// A SIP response we sent.
    pub fn response(&self, code: u16) {
        *self
            .responses
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(code)
            .or_default() += 1;
    }

    /// Malformed requests answered 400: by our layer, and by the SIP stack itself when a
    /// request lacks a usable From, To, Call-ID or CSeq (vendor patch 0012).
    pub fn malformed_rejected(&self) -> u64 {
        self.rejected_malformed.load(Relaxed)
            + ezk_sip_core::REJECTED_BAD_BASE_HEADERS.load(Relaxed)
    }

    /// The SIP responses sent, by status code, with those the SIP stack sends itself (vendor
    /// patches 0012, 0014: 400 for a bad From/To/Call-ID/CSeq, 416, 505).
    fn responses(&self) -> BTreeMap<u16, u64> {
        let mut responses = self
            .responses
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        for (code, counter) in [
            (400, &ezk_sip_core::REJECTED_BAD_BASE_HEADERS),
            (416, &ezk_sip_core::REFUSED_URI_SCHEME),
            (505, &ezk_sip_core::REFUSED_SIP_VERSION),
            (513, &ezk_sip_core::REFUSED_TOO_LARGE),
        ] {
            let n = counter.load(Relaxed);
            if n > 0 {
                *responses.entry(code).or_default() += n;
            }
        }
        responses
    }

    /// A call that failed, and why.
    pub fn fail(&self, reason: &'static str) {
        self.failed.fetch_add(1, Relaxed);
        *self
            .failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(reason)
            .or_default() += 1;
    }

    pub fn line(&self) -> String {
        format!(
            "total={} active={} answered={} failed={} shed={} source_limited={} source_refused={} cancelled={} malformed_400={} malformed_dropped={}",
            self.total.load(Relaxed),
            self.active.load(Relaxed),
            self.answered.load(Relaxed),
            self.failed.load(Relaxed),
            self.shed.load(Relaxed),
            self.source_limited.load(Relaxed),
            self.source_refused.load(Relaxed),
            self.cancelled.load(Relaxed),
            self.malformed_rejected(),
            // Messages the SIP stack could not parse at all (vendored ezk-sip-core counter).
            ezk_sip_core::DROPPED_MALFORMED.load(Relaxed),
        )
    }
}

/// Signaling metrics for `/metrics`, read from [`Stats`] at scrape time.
#[derive(Debug)]
pub struct StatsCollector(pub Arc<Stats>);

impl Collector for StatsCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> std::fmt::Result {
        let s = &self.0;
        counter(
            &mut enc,
            "milliwatt_calls_received",
            "INVITEs that started a call",
            s.total.load(Relaxed),
        )?;
        counter(
            &mut enc,
            "milliwatt_calls_answered",
            "Calls answered and ACKed",
            s.answered.load(Relaxed),
        )?;
        counter(
            &mut enc,
            "milliwatt_calls_failed",
            "Calls refused or failed",
            s.failed.load(Relaxed),
        )?;
        counter(
            &mut enc,
            "milliwatt_calls_shed",
            "Calls refused 503 by measured load ([overload]); also in failed, reason overload",
            s.shed.load(Relaxed),
        )?;
        counter(
            &mut enc,
            "milliwatt_calls_source_limited",
            "INVITEs refused 503 by a per-source limit ([sources]); also in failed, reason source_limit",
            s.source_limited.load(Relaxed),
        )?;
        counter(
            &mut enc,
            "milliwatt_sip_source_refused",
            "Requests from outside sources.allowed_networks (403 or no answer)",
            s.source_refused.load(Relaxed),
        )?;
        gauge(
            &mut enc,
            "milliwatt_calls_in_setup",
            "Calls admitted and not yet answered (no ACK yet)",
            s.in_setup.load(Relaxed) as i64,
        )?;
        gauge(
            &mut enc,
            "milliwatt_media_allocations_pending",
            "AllocateSession requests to media in flight",
            s.pending_allocations.load(Relaxed) as i64,
        )?;
        gauge(
            &mut enc,
            "milliwatt_event_loop_lag_microseconds",
            "How late signaling's event loop ran, latest 10 ms timer",
            s.event_loop_lag_us.load(Relaxed) as i64,
        )?;
        gauge(
            &mut enc,
            "milliwatt_answer_lateness_microseconds",
            "How far past its answer time the oldest admitted, unanswered call is",
            s.answer_lateness(Instant::now()).as_micros() as i64,
        )?;
        gauge(
            &mut enc,
            "milliwatt_invite_wait_microseconds",
            "How long the latest new INVITE waited between reaching the host and its admission",
            s.invite_wait_us.load(Relaxed) as i64,
        )?;
        counter(
            &mut enc,
            "milliwatt_calls_cancelled",
            "Calls cancelled while ringing",
            s.cancelled.load(Relaxed),
        )?;
        counter(
            &mut enc,
            "milliwatt_sip_malformed_rejected",
            "Malformed requests answered 400",
            s.malformed_rejected(),
        )?;
        counter(
            &mut enc,
            "milliwatt_sip_malformed_dropped",
            "Messages dropped as unparseable",
            ezk_sip_core::DROPPED_MALFORMED.load(Relaxed),
        )?;
        gauge(
            &mut enc,
            "milliwatt_calls_active",
            "Calls in progress",
            s.active.load(Relaxed) as i64,
        )?;
        let responses = s.responses();
        let mut family = enc.encode_descriptor(
            "milliwatt_sip_responses",
            "SIP responses sent, by status code",
            None,
            MetricType::Counter,
        )?;
        for (code, n) in responses {
            let labels = [("code", code.to_string())];
            encode_counter(family.encode_family(&labels)?, n)?;
        }
        let failures = s.failures.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let mut family = enc.encode_descriptor(
            "milliwatt_calls_failed_by_reason",
            "Failed calls by reason",
            None,
            MetricType::Counter,
        )?;
        for (reason, n) in failures {
            let labels = [("reason", reason.to_string())];
            encode_counter(family.encode_family(&labels)?, n)?;
        }
        // The SIP stack's TCP limits (vendor patch 0017, `sip.tcp_*`).
        let mut family = enc.encode_descriptor(
            "milliwatt_sip_tcp_connections_closed",
            "TCP connections closed by a limit: at accept beyond sip.tcp_max_connections \
             (limit), a message not complete within sip.tcp_message_timeout_seconds (slow)",
            None,
            MetricType::Counter,
        )?;
        for (reason, counter) in [
            ("limit", &ezk_sip_core::CLOSED_CONNECTIONS_LIMIT),
            ("slow", &ezk_sip_core::CLOSED_CONNECTIONS_SLOW),
        ] {
            let labels = [("reason", reason.to_string())];
            encode_counter(family.encode_family(&labels)?, counter.load(Relaxed))?;
        }
        Ok(())
    }
}

fn encode_counter(enc: MetricEncoder<'_>, n: u64) -> std::fmt::Result {
    ConstCounter::new(n).encode(enc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answer_lateness_is_the_oldest_unanswered_calls_and_ends_with_it() {
        let stats = Arc::new(Stats::default());
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        assert_eq!(stats.answer_lateness(t0), Duration::ZERO, "no call");
        let later = AnswerDue::new(stats.clone(), t0 + ms(500));
        let first = AnswerDue::new(stats.clone(), t0 + ms(100));
        let twin = AnswerDue::new(stats.clone(), t0 + ms(100));
        assert_eq!(stats.answer_lateness(t0), Duration::ZERO, "none due yet");
        assert_eq!(stats.answer_lateness(t0 + ms(130)), ms(30));
        drop(first);
        assert_eq!(
            stats.answer_lateness(t0 + ms(130)),
            ms(30),
            "its twin is as late"
        );
        drop(twin);
        assert_eq!(stats.answer_lateness(t0 + ms(600)), ms(100));
        drop(later);
        assert_eq!(stats.answer_lateness(t0 + ms(600)), Duration::ZERO);
    }

    #[test]
    fn the_answer_queues_lateness_is_its_kth_oldest_calls() {
        let stats = Arc::new(Stats::default());
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let one_slow = AnswerDue::new(stats.clone(), t0);
        assert_eq!(stats.answer_lateness(t0 + ms(100)), ms(100));
        assert_eq!(
            stats.answer_queue_lateness(t0 + ms(100), 3),
            Duration::ZERO,
            "one late call is not a queue"
        );
        let queue: Vec<AnswerDue> = (1..=3)
            .map(|i| AnswerDue::new(stats.clone(), t0 + ms(10 * i)))
            .collect();
        // Due at 0, 10, 20, 30 ms: the third oldest is due at 20.
        assert_eq!(stats.answer_queue_lateness(t0 + ms(100), 3), ms(80));
        assert_eq!(stats.answer_queue_lateness(t0 + ms(100), 1), ms(100));
        assert_eq!(stats.answer_queue_lateness(t0 + ms(15), 3), Duration::ZERO);
        drop(one_slow);
        assert_eq!(stats.answer_queue_lateness(t0 + ms(100), 3), ms(70));
        drop(queue);
        assert_eq!(stats.answer_queue_lateness(t0 + ms(100), 1), Duration::ZERO);
    }
}
