//! Call counters for the statistics line.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use milliwatt_common::admin::metric::{counter, gauge};
use milliwatt_common::prometheus_client::collector::Collector;
use milliwatt_common::prometheus_client::encoding::DescriptorEncoder;

#[derive(Debug, Default)]
pub struct Stats {
    pub total: AtomicU64,
    pub active: AtomicU64,
    pub answered: AtomicU64,
    pub failed: AtomicU64,
    pub cancelled: AtomicU64,
    pub rejected_malformed: AtomicU64,
}

impl Stats {
    pub fn line(&self) -> String {
        format!(
            "total={} active={} answered={} failed={} cancelled={} malformed_400={} malformed_dropped={}",
            self.total.load(Relaxed),
            self.active.load(Relaxed),
            self.answered.load(Relaxed),
            self.failed.load(Relaxed),
            self.cancelled.load(Relaxed),
            self.rejected_malformed.load(Relaxed),
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
            "milliwatt_calls_cancelled",
            "Calls cancelled while ringing",
            s.cancelled.load(Relaxed),
        )?;
        counter(
            &mut enc,
            "milliwatt_sip_malformed_rejected",
            "Malformed requests answered 400",
            s.rejected_malformed.load(Relaxed),
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
        Ok(())
    }
}
