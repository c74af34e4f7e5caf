//! The media pool's shell: resolves `media.endpoint` (one URL or several; a host may be a DNS
//! name standing for several addresses) into members, one gRPC client each, checks every member
//! on its own (lease renewal: instance id and load), and places each new session on the member
//! the pure [`Pool`] picks, moving on to the next when an allocation fails. A session's later
//! calls go to its member ([`Placed`]); when a member is lost or restarts, only its calls are
//! told (its `lost` channel) and end with BYE.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use milliwatt_common::admin::metric::gauge;
use milliwatt_common::admin::Health;
use milliwatt_common::grpc_auth::Secret;
use milliwatt_common::grpc_tls::{ClientTls, TlsError};
use milliwatt_common::prometheus_client::collector::Collector;
use milliwatt_common::prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use milliwatt_common::prometheus_client::metrics::gauge::ConstGauge;
use milliwatt_common::prometheus_client::metrics::MetricType;
use milliwatt_signaling_core::media_pool::{MemberView, NoMember, Pool};
use milliwatt_signaling_core::media_watch::{Check, Verdict};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::media_client::{self, Allocation as Reserved, Latency, MediaClient, MediaError};

/// How often each member is checked (its lease renewed): a lost member is noticed, and its calls
/// hung up, within CHECK_EVERY + CHECK_TIMEOUT.
const CHECK_EVERY: Duration = Duration::from_millis(500);
const CHECK_TIMEOUT: Duration = Duration::from_millis(1000);
/// How often DNS names in `media.endpoint` are resolved again (every second while none has an
/// address yet).
const RESOLVE_EVERY: Duration = Duration::from_secs(5);
const RESOLVE_EVERY_WHILE_EMPTY: Duration = Duration::from_secs(1);

/// One media instance: an address one of the URLs stands for.
pub struct Member {
    /// Its address (the pool's key): two URLs naming one address are one member.
    pub addr: SocketAddr,
    /// The URL it was found by.
    pub url: String,
    pub client: MediaClient,
    /// Bumped when it is lost or restarts: its calls end.
    lost: watch::Sender<u64>,
    checker: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Member {
    /// Changes when this member is lost or restarts.
    pub fn lost(&self) -> watch::Receiver<u64> {
        self.lost.subscribe()
    }
}

struct State {
    core: Pool<SocketAddr>,
    members: HashMap<SocketAddr, Arc<Member>>,
}

struct Inner {
    urls: Vec<String>,
    owner: String,
    token: Secret,
    tls: ClientTls,
    latency: Latency,
    health: Health,
    /// No member can take a session: new calls get 503.
    down: AtomicBool,
    state: Mutex<State>,
}

#[derive(Clone)]
pub struct MediaPool {
    inner: Arc<Inner>,
}

/// A session placed on a member: its later calls go there; dropping it (the call ended) tells
/// the pool.
pub struct Placed {
    pub member: Arc<Member>,
    pool: Weak<Inner>,
}

impl Drop for Placed {
    fn drop(&mut self) {
        if let Some(inner) = self.pool.upgrade() {
            let dropped = inner.lock().core.released(&self.member.addr);
            inner.drop_members(&dropped);
        }
    }
}

impl std::fmt::Debug for Placed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Placed({})", self.member.addr)
    }
}

/// A session allocated on one member.
#[derive(Debug)]
pub struct Allocation {
    pub reserved: Reserved,
    pub placed: Placed,
}

impl MediaPool {
    /// Checks every URL against the TLS settings now (a mistake is named at startup); nothing
    /// is resolved or connected until [`MediaPool::start`].
    pub fn new(
        urls: Vec<String>,
        owner: String,
        token: Secret,
        tls: ClientTls,
        health: Health,
    ) -> Result<MediaPool, TlsError> {
        for url in &urls {
            tls.endpoint(url)?;
        }
        health.set("media_reachable", false);
        Ok(MediaPool {
            inner: Arc::new(Inner {
                urls,
                owner,
                token,
                tls,
                latency: media_client::latency(),
                health,
                down: AtomicBool::new(true),
                state: Mutex::new(State {
                    core: Pool::default(),
                    members: HashMap::new(),
                }),
            }),
        })
    }

    /// Resolves the URLs now, then keeps resolving them and checking each member until the
    /// returned task is aborted.
    pub async fn start(&self) -> tokio::task::JoinHandle<()> {
        self.inner.resolve().await;
        let inner = self.inner.clone();
        tokio::spawn(async move {
            loop {
                let empty = inner.lock().members.is_empty();
                tokio::time::sleep(if empty {
                    RESOLVE_EVERY_WHILE_EMPTY
                } else {
                    RESOLVE_EVERY
                })
                .await;
                inner.resolve().await;
            }
        })
    }

    /// Stops every member's checks (shutdown).
    pub fn stop(&self) {
        for m in self.inner.lock().members.values() {
            m.stop();
        }
    }

    pub fn urls(&self) -> &[String] {
        &self.inner.urls
    }

    pub fn owner(&self) -> &str {
        &self.inner.owner
    }

    /// No member can take a session now (all failed their checks, drain, are full, or none
    /// is known): new calls get 503.
    pub fn is_down(&self) -> bool {
        self.inner.down.load(Relaxed)
    }

    /// The gRPC latency histograms of all members, for `/metrics`.
    pub fn latency(&self) -> Latency {
        self.inner.latency.clone()
    }

    pub fn view(&self) -> Vec<MemberView<SocketAddr>> {
        self.inner.lock().core.view()
    }

    /// Allocates a session on the least-loaded member; on a member that does not answer, takes
    /// no session or has no port, on the next one. Fails only when every member was tried (or
    /// none can take it), with the last member's answer, or at once on a refusal that another
    /// member would answer alike (a bad request).
    pub async fn allocate(&self, call_id: &str, rtcp_mux: bool) -> Result<Allocation, MediaError> {
        let inner = &self.inner;
        let mut tried = Vec::new();
        let mut last = None;
        loop {
            let picked = {
                let mut state = inner.lock();
                match state.core.pick(&tried) {
                    Ok(addr) => match state.members.get(&addr) {
                        Some(m) => Ok(m.clone()),
                        // In the pool without a client (its endpoint could not be built, logged
                        // when it joined): never placed on.
                        None => {
                            state.core.allocation_failed(&addr, true);
                            tried.push(addr);
                            continue;
                        }
                    },
                    Err(e) => Err(e),
                }
            };
            let member = match picked {
                Ok(m) => m,
                Err(none) => {
                    inner.update_down();
                    return Err(last.unwrap_or(match none {
                        NoMember::Down => MediaError::Unavailable(format!(
                            "no media instance reachable ({})",
                            inner.urls.join(", ")
                        )),
                        NoMember::Full => MediaError::PortsExhausted,
                    }));
                }
            };
            match member.client.allocate(call_id, rtcp_mux).await {
                Ok(reserved) => {
                    inner.lock().core.allocated(&member.addr);
                    return Ok(Allocation {
                        reserved,
                        placed: Placed {
                            member,
                            pool: Arc::downgrade(inner),
                        },
                    });
                }
                Err(e) => {
                    let unavailable = match &e {
                        MediaError::Unavailable(_) => true,
                        MediaError::PortsExhausted => false,
                        MediaError::NotFound | MediaError::Refused(_) => return Err(e),
                    };
                    warn!(
                        media = %member.addr,
                        error = %e,
                        "allocation failed on this media instance; trying the next"
                    );
                    inner
                        .lock()
                        .core
                        .allocation_failed(&member.addr, unavailable);
                    inner.update_down();
                    tried.push(member.addr);
                    last = Some(e);
                }
            }
        }
    }

    /// `instances=3 healthy=2 sessions=[10.0.0.1:50051 12, ...]`, for the statistics line.
    pub fn line(&self) -> String {
        let view = self.view();
        let healthy = view.iter().filter(|v| v.healthy).count();
        let each: Vec<String> = view
            .iter()
            .map(|v| {
                format!(
                    "{} {}{}",
                    v.key,
                    v.sessions,
                    if v.healthy {
                        ""
                    } else if v.draining {
                        " draining"
                    } else {
                        " down"
                    }
                )
            })
            .collect();
        format!(
            "instances={} healthy={healthy} sessions=[{}]",
            view.len(),
            each.join(", ")
        )
    }
}

impl Member {
    fn stop(&self) {
        if let Some(h) = self
            .checker
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            h.abort();
        }
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn update_down(&self) {
        let state = self.lock();
        self.down.store(state.core.is_down(), Relaxed);
        self.health.set("media_reachable", state.core.any_up());
        let view = state.core.view();
        drop(state);
        let healthy = view.iter().filter(|v| v.healthy).count();
        self.health.note(
            "media",
            format!(
                "{} instance(s), {healthy} healthy{}",
                view.len(),
                view.iter()
                    .map(|v| format!(
                        "; {} {} sessions{}",
                        v.key,
                        v.sessions,
                        if v.healthy { "" } else { " (not healthy)" }
                    ))
                    .collect::<String>()
            ),
        );
    }

    /// Resolves every URL; members join and leave the pool by what the names stand for now. A
    /// name that does not resolve keeps its members (a DNS hiccup is not a lost instance: their
    /// checks tell).
    async fn resolve(self: &Arc<Self>) {
        let mut resolved: Vec<(SocketAddr, &String)> = Vec::new();
        for url in &self.urls {
            match addresses(url).await {
                Ok(addrs) => {
                    for a in addrs {
                        if !resolved.iter().any(|(r, _)| *r == a) {
                            resolved.push((a, url));
                        }
                    }
                }
                Err(e) => {
                    let kept: Vec<SocketAddr> = self
                        .lock()
                        .members
                        .values()
                        .filter(|m| m.url == *url)
                        .map(|m| m.addr)
                        .collect();
                    warn!(media = %url, error = %e, kept = ?kept, "media.endpoint does not resolve");
                    for a in kept {
                        resolved.push((a, url));
                    }
                }
            }
        }
        let keys: Vec<SocketAddr> = resolved.iter().map(|(a, _)| *a).collect();
        let mut joined = Vec::new();
        let dropped = {
            let mut state = self.lock();
            let sync = state.core.sync(&keys);
            for addr in sync.joined {
                let url = resolved
                    .iter()
                    .find(|(a, _)| *a == addr)
                    .map(|(_, u)| (*u).clone())
                    .expect("joined from resolved");
                match self.tls.endpoint_at(&url, addr) {
                    Ok(endpoint) => {
                        let member = Arc::new(Member {
                            addr,
                            url,
                            client: MediaClient::new(
                                endpoint,
                                self.owner.clone(),
                                &self.token,
                                self.latency.clone(),
                            ),
                            lost: watch::channel(0).0,
                            checker: Mutex::new(None),
                        });
                        state.members.insert(addr, member.clone());
                        joined.push(member);
                    }
                    Err(e) => {
                        // Checked at startup for the URL itself; an address cannot make it fail.
                        warn!(media = %url, %addr, error = %e, "media instance not usable");
                    }
                }
            }
            sync.dropped
        };
        for member in joined {
            info!(media = %member.addr, url = %member.url, "media instance joined the pool");
            let handle = tokio::spawn(check_member(self.clone(), member.clone()));
            *member.checker.lock().unwrap_or_else(|e| e.into_inner()) = Some(handle);
        }
        self.drop_members(&dropped);
        self.update_down();
    }

    fn drop_members(&self, dropped: &[SocketAddr]) {
        if dropped.is_empty() {
            return;
        }
        let mut state = self.lock();
        for addr in dropped {
            if let Some(m) = state.members.remove(addr) {
                info!(media = %addr, url = %m.url, "media instance left the pool (no longer resolved, no session left)");
                m.stop();
            }
        }
    }

    /// One check's result for `member`.
    fn report(
        &self,
        member: &Member,
        result: Result<(String, milliwatt_signaling_core::media_pool::Load), MediaError>,
    ) {
        let (check, load, error) = match result {
            Ok((instance, load)) => (Check::Answered { instance }, Some(load), None),
            Err(e) => (Check::Failed, None, Some(e)),
        };
        let verdict = self.lock().core.check(&member.addr, check, load);
        match verdict {
            Verdict::Same => {}
            Verdict::NotYet => {
                tracing::debug!(media = %member.addr, error = ?error, "media instance not reachable yet")
            }
            Verdict::Reachable => {
                info!(media = %member.addr, url = %member.url, "media instance reachable")
            }
            Verdict::Restarted => {
                warn!(media = %member.addr, "media instance restarted: its sessions are gone, its calls end");
                member.lost.send_modify(|n| *n += 1);
            }
            Verdict::Lost => {
                warn!(
                    media = %member.addr,
                    error = ?error,
                    "media instance lost: its calls end with BYE; new calls go to the others (503 when none is left)"
                );
                member.lost.send_modify(|n| *n += 1);
            }
        }
        self.update_down();
    }
}

/// Checks `member` every CHECK_EVERY (renewing this instance's lease there).
async fn check_member(inner: Arc<Inner>, member: Arc<Member>) {
    let mut tick = tokio::time::interval(CHECK_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        // Bounded here too: the channel's own timeouts (2 s to connect) are for calls, and a
        // dead instance whose address no longer answers ARP would take that long to fail.
        let result = tokio::time::timeout(CHECK_TIMEOUT, member.client.renew(CHECK_TIMEOUT))
            .await
            .unwrap_or_else(|_| {
                Err(MediaError::Unavailable(format!(
                    "no answer within {} ms",
                    CHECK_TIMEOUT.as_millis()
                )))
            });
        inner.report(&member, result);
    }
}

/// The addresses `url`'s host stands for: itself when it is an address, else what DNS says.
async fn addresses(url: &str) -> Result<Vec<SocketAddr>, String> {
    let uri: tonic::codegen::http::Uri = url.parse().map_err(|e| format!("{e}"))?;
    let host = uri.host().ok_or("no host")?.trim_matches(['[', ']']);
    let port = uri.port_u16().unwrap_or(match uri.scheme_str() {
        Some("https") => 443,
        _ => 80,
    });
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| e.to_string())?
        .collect();
    if addrs.is_empty() {
        return Err("no address".into());
    }
    Ok(addrs)
}

/// The pool for `/metrics`: how many instances, how many healthy, and per instance (label
/// `media`, its address: `instance` is Prometheus's own target label) whether it is healthy and
/// the sessions media reported there (all owners) and ours.
#[derive(Debug)]
pub struct PoolCollector(pub MediaPool);

impl std::fmt::Debug for MediaPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MediaPool({:?})", self.inner.urls)
    }
}

impl Collector for PoolCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> std::fmt::Result {
        let view = self.0.view();
        gauge(
            &mut enc,
            "milliwatt_media_instances",
            "Media instances in signaling's pool (media.endpoint, resolved)",
            view.len() as i64,
        )?;
        gauge(
            &mut enc,
            "milliwatt_media_instances_healthy",
            "Media instances that answered their last check and take sessions",
            view.iter().filter(|v| v.healthy).count() as i64,
        )?;
        for (name, help, value) in [
            (
                "milliwatt_media_instance_healthy",
                "1 when the media instance answered its last check and takes sessions",
                (|v: &MemberView<SocketAddr>| i64::from(v.healthy)) as fn(&_) -> i64,
            ),
            (
                "milliwatt_media_instance_sessions",
                "Sessions on the media instance at its last check, all signaling instances'",
                |v| i64::from(v.sessions),
            ),
            (
                "milliwatt_media_instance_calls",
                "This signaling instance's sessions on the media instance now",
                |v| i64::from(v.held),
            ),
        ] {
            let mut family = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for v in &view {
                let labels = [("media", v.key.to_string())];
                ConstGauge::new(value(v)).encode(family.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn addresses_of_literal_urls_and_of_names() {
        assert_eq!(
            addresses("http://127.0.0.1:50051").await.unwrap(),
            ["127.0.0.1:50051".parse::<SocketAddr>().unwrap()]
        );
        assert_eq!(
            addresses("https://[::1]:7000").await.unwrap(),
            ["[::1]:7000".parse::<SocketAddr>().unwrap()]
        );
        assert_eq!(
            addresses("http://10.1.2.3").await.unwrap(),
            ["10.1.2.3:80".parse::<SocketAddr>().unwrap()]
        );
        let local = addresses("http://localhost:50051").await.unwrap();
        assert!(
            local
                .iter()
                .all(|a| a.ip().is_loopback() && a.port() == 50051)
                && !local.is_empty(),
            "{local:?}"
        );
    }
}
