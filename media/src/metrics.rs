//! Media metrics for `/metrics`, read from the registry and engine counters at scrape time.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use milliwatt_common::admin::metric::{counter, gauge};
use milliwatt_common::prometheus_client::collector::Collector;
use milliwatt_common::prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use milliwatt_common::prometheus_client::metrics::MetricType;

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
            "Packet times skipped because a pacing thread woke later than its catch-up window (media.pacing_catch_up_ms)",
            c.packets_skipped.load(Relaxed),
        )?;
        counter(
            &mut enc,
            "milliwatt_media_rtp_packets_received",
            "RTP packets received from callers",
            c.packets_received.load(Relaxed),
        )?;
        counter(
            &mut enc,
            "milliwatt_media_rtp_bytes_received",
            "RTP bytes received from callers",
            c.bytes_received.load(Relaxed),
        )?;
        counter(
            &mut enc,
            "milliwatt_media_rtp_packets_invalid",
            "Received RTP/RTCP packets ignored (malformed, wrong payload type)",
            c.packets_invalid.load(Relaxed),
        )?;
        let (sum, count, buckets) =
            c.lateness_histogram(&[100, 200, 500, 1_000, 2_000, 5_000, 10_000, 20_000]);
        enc.encode_descriptor(
            "milliwatt_media_pacing_lateness_seconds",
            "How late RTP packets left relative to their due time",
            None,
            MetricType::Histogram,
        )?
        .encode_histogram::<NoLabelSet>(sum, count, &buckets, None)?;
        Ok(())
    }
}
