//! Call counters for the statistics line.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

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
