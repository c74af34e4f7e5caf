//! The admin listener every service serves: `/livez` (the process answers), `/readyz` (explicit
//! readiness conditions, false while draining; also at `/health` and `/healthz`, the paths the
//! server this product replaces documented) and `/metrics` (Prometheus text).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use prometheus_client::registry::Registry;

/// Readiness as explicit named conditions: ready when all hold and the service is not draining.
#[derive(Clone, Default)]
pub struct Health {
    inner: Arc<HealthInner>,
}

#[derive(Default)]
struct HealthInner {
    conditions: Mutex<BTreeMap<&'static str, bool>>,
    /// Lines `/readyz` adds under its verdict (e.g. signaling's media pool).
    notes: Mutex<BTreeMap<&'static str, String>>,
    draining: AtomicBool,
}

impl Health {
    /// Declares or updates a condition (e.g. "sip_bound", "media_reachable").
    pub fn set(&self, condition: &'static str, ok: bool) {
        self.inner
            .conditions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(condition, ok);
    }

    /// A line `/readyz` shows under its verdict, as `name: text` (replaced on each call).
    pub fn note(&self, name: &'static str, text: String) {
        self.inner
            .notes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name, text);
    }

    fn notes(&self) -> String {
        let notes = self.inner.notes.lock().unwrap_or_else(|e| e.into_inner());
        notes.iter().map(|(k, v)| format!("{k}: {v}\n")).collect()
    }

    pub fn start_draining(&self) {
        self.inner.draining.store(true, Ordering::SeqCst);
    }

    pub fn is_draining(&self) -> bool {
        self.inner.draining.load(Ordering::SeqCst)
    }

    /// Ready, and the conditions that fail.
    pub fn readiness(&self) -> (bool, Vec<&'static str>) {
        let mut failing: Vec<&'static str> = self
            .inner
            .conditions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|(_, ok)| !**ok)
            .map(|(name, _)| *name)
            .collect();
        if self.is_draining() {
            failing.push("draining");
        }
        (failing.is_empty(), failing)
    }
}

#[derive(Clone)]
struct AdminState {
    health: Health,
    registry: Arc<Registry>,
}

async fn livez() -> &'static str {
    "ok\n"
}

async fn readyz(State(s): State<AdminState>) -> (StatusCode, String) {
    let notes = s.health.notes();
    match s.health.readiness() {
        (true, _) => (StatusCode::OK, format!("ready\n{notes}")),
        (false, failing) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {}\n{notes}", failing.join(", ")),
        ),
    }
}

async fn metrics(
    State(s): State<AdminState>,
) -> (StatusCode, [(&'static str, &'static str); 1], String) {
    let mut out = String::new();
    match prometheus_client::encoding::text::encode(&mut out, &s.registry) {
        Ok(()) => (
            StatusCode::OK,
            [(
                "content-type",
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            out,
        ),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [("content-type", "text/plain")],
            format!("encoding metrics: {e}\n"),
        ),
    }
}

/// A bound admin listener.
pub struct Admin {
    listener: tokio::net::TcpListener,
}

impl Admin {
    pub async fn bind(addr: SocketAddr) -> std::io::Result<Admin> {
        Ok(Admin {
            listener: tokio::net::TcpListener::bind(addr).await?,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("bound listener has an address")
    }

    /// Serves until the process ends (the admin port answers while draining, so that
    /// orchestrators see readiness go false).
    pub fn spawn(self, health: Health, registry: Arc<Registry>) -> tokio::task::JoinHandle<()> {
        let app = Router::new()
            .route("/livez", get(livez))
            .route("/readyz", get(readyz))
            // The server this product replaces documented `curl localhost:8080/health`.
            .route("/health", get(readyz))
            .route("/healthz", get(readyz))
            .route("/metrics", get(metrics))
            .with_state(AdminState { health, registry });
        tokio::spawn(async move {
            if let Err(e) = axum::serve(self.listener, app).await {
                tracing::error!(error = %e, "admin server failed");
            }
        })
    }
}

/// `<binary> healthcheck`: GET `/readyz` on the admin port over loopback; exit code 0 when
/// ready. For container HEALTHCHECKs: no curl needed in the image.
pub fn healthcheck(admin: SocketAddr, path: &str) -> i32 {
    use std::io::{Read, Write};
    let mut target = admin;
    if target.ip().is_unspecified() {
        target.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let timeout = std::time::Duration::from_secs(3);
    let result = (|| -> std::io::Result<String> {
        let mut s = std::net::TcpStream::connect_timeout(&target, timeout)?;
        s.set_read_timeout(Some(timeout))?;
        s.set_write_timeout(Some(timeout))?;
        write!(
            s,
            "GET {path} HTTP/1.0\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        )?;
        let mut response = String::new();
        s.read_to_string(&mut response)?;
        Ok(response)
    })();
    match result {
        Ok(r) if r.starts_with("HTTP/1.0 200") || r.starts_with("HTTP/1.1 200") => {
            println!("{}", r.split("\r\n\r\n").nth(1).unwrap_or("").trim());
            0
        }
        Ok(r) => {
            eprintln!(
                "{} {}",
                r.lines().next().unwrap_or(""),
                r.split("\r\n\r\n").nth(1).unwrap_or("").trim()
            );
            1
        }
        Err(e) => {
            eprintln!("healthcheck: {target}{path}: {e}");
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_is_all_conditions_and_not_draining() {
        let h = Health::default();
        assert_eq!(h.readiness(), (true, vec![]));
        h.set("sip_bound", true);
        h.set("media_reachable", false);
        assert_eq!(h.readiness(), (false, vec!["media_reachable"]));
        h.set("media_reachable", true);
        assert!(h.readiness().0);
        h.start_draining();
        assert_eq!(h.readiness(), (false, vec!["draining"]));
    }
}

/// Helpers for collectors that read the services' own counters at scrape time (nothing extra
/// on the packet path).
pub mod metric {
    use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
    use prometheus_client::metrics::counter::ConstCounter;
    use prometheus_client::metrics::gauge::ConstGauge;

    /// A counter; the text encoding appends `_total` to `name`.
    pub fn counter(
        enc: &mut DescriptorEncoder,
        name: &str,
        help: &str,
        value: u64,
    ) -> std::fmt::Result {
        let c = ConstCounter::new(value);
        c.encode(enc.encode_descriptor(name, help, None, c.metric_type())?)
    }

    pub fn gauge(
        enc: &mut DescriptorEncoder,
        name: &str,
        help: &str,
        value: i64,
    ) -> std::fmt::Result {
        let g = ConstGauge::new(value);
        g.encode(enc.encode_descriptor(name, help, None, g.metric_type())?)
    }
}

/// OTLP export counters for `/metrics`.
#[derive(Debug)]
pub struct TelemetryCollector;

impl prometheus_client::collector::Collector for TelemetryCollector {
    fn encode(&self, mut enc: prometheus_client::encoding::DescriptorEncoder) -> std::fmt::Result {
        metric::counter(
            &mut enc,
            "milliwatt_otlp_spans_exported",
            "Spans delivered to the OTLP collector",
            crate::telemetry::spans_exported(),
        )?;
        metric::counter(
            &mut enc,
            "milliwatt_otlp_spans_dropped",
            "Spans lost because the OTLP collector was unreachable, refused them or was too slow",
            crate::telemetry::spans_dropped(),
        )
    }
}
