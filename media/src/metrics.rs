//! Media metrics for `/metrics`, read from the registry and engine counters at scrape time.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use milliwatt_common::admin::metric::{counter, gauge};
use milliwatt_common::prometheus_client::collector::Collector;
use milliwatt_common::prometheus_client::encoding::DescriptorEncoder;

use crate::sessions::Registry;

#[derive(Debug)]
pub struct MediaCollector(pub Arc<Registry>);

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Registry")
    }
}

impl Collector for MediaCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> std::fmt::Result {
        let (active, sending, free, total, expired) = self.0.counts();
        let c = &self.0.engine().counters;
        gauge(
            &mut enc,
            "milliwatt_media_sessions",
            "Media sessions held",
            i64::from(active),
        )?;
        gauge(
            &mut enc,
            "milliwatt_media_sessions_sending",
            "Media sessions sending a tone",
            i64::from(sending),
        )?;
        gauge(
            &mut enc,
            "milliwatt_media_rtp_ports_free",
            "Free RTP port pairs",
            i64::from(free),
        )?;
        counter(
            &mut enc,
            "milliwatt_media_sessions_allocated",
            "Media sessions allocated",
            total,
        )?;
        counter(
            &mut enc,
            "milliwatt_media_sessions_expired",
            "Media sessions released by lease or grace expiry",
            expired,
        )?;
        counter(
            &mut enc,
            "milliwatt_media_rtp_packets_sent",
            "RTP packets sent",
            c.packets_sent.load(Relaxed),
        )?;
        counter(
            &mut enc,
            "milliwatt_media_rtp_bytes_sent",
            "RTP bytes sent",
            c.bytes_sent.load(Relaxed),
        )?;
        counter(
            &mut enc,
            "milliwatt_media_rtp_send_errors",
            "RTP sends the kernel refused",
            c.send_errors.load(Relaxed),
        )?;
        counter(
            &mut enc,
            "milliwatt_media_rtp_packets_skipped",
            "Packet times skipped because a pacing thread was late by a whole packet time",
            c.packets_skipped.load(Relaxed),
        )?;
        Ok(())
    }
}
