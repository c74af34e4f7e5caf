//! Tracing across services: a real OTLP/gRPC collector (the OpenTelemetry proto's
//! TraceService, served here) receives the spans of one SIPp call from both processes; they share
//! one trace id with the expected parent/child structure. Also: log lines carry call-id and trace
//! id, JSON log format, and a collector that is down neither blocks calls nor goes uncounted.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::rtp::{judge, Expect, RtpSink};
use common::{http_get, sipp, temp_dir, tone_scenario, Mode, Server, TestConfig};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};

const SEC: Duration = Duration::from_secs(1);

#[derive(Clone, Default)]
struct Collector(Arc<Mutex<Vec<ExportTraceServiceRequest>>>);

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        req: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.0.lock().unwrap().push(req.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

/// Runs the collector on a loopback port in its own thread; returns its port.
fn start_collector(c: Collector) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            tonic::transport::Server::builder()
                .add_service(TraceServiceServer::new(c))
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
                .await
                .unwrap();
        });
    });
    port
}

#[derive(Debug, Clone)]
struct Span {
    service: String,
    name: String,
    trace_id: Vec<u8>,
    span_id: Vec<u8>,
    parent: Vec<u8>,
}

fn spans(c: &Collector) -> Vec<Span> {
    let mut out = Vec::new();
    for req in c.0.lock().unwrap().iter() {
        for rs in &req.resource_spans {
            let service = rs
                .resource
                .as_ref()
                .and_then(|r| r.attributes.iter().find(|a| a.key == "service.name"))
                .and_then(|a| a.value.as_ref())
                .map(|v| format!("{:?}", v.value))
                .unwrap_or_default();
            for ss in &rs.scope_spans {
                for s in &ss.spans {
                    out.push(Span {
                        service: service.clone(),
                        name: s.name.clone(),
                        trace_id: s.trace_id.clone(),
                        span_id: s.span_id.clone(),
                        parent: s.parent_span_id.clone(),
                    });
                }
            }
        }
    }
    out
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn one_call(server: &Server) {
    let sink = RtpSink::bind();
    let dir = temp_dir("trace");
    let sc = tone_scenario(&dir, sink.port(), "0", 5000);
    sipp(server, &sc, &[], 10 * SEC).assert_ok();
    server.wait_log("call ended", 2 * SEC);
    judge(&sink.finish(), &Expect::pcmu_440(SEC));
}

#[test]
fn one_trace_holds_the_sip_and_media_spans_of_a_call() {
    let collector = Collector::default();
    let port = start_collector(collector.clone());
    let mut cfg = TestConfig::new();
    cfg.tone_seconds = 1;
    cfg.extra = format!("[telemetry]\notlp_endpoint = \"http://127.0.0.1:{port}\"\n");
    let mut server = Server::start(cfg, Mode::Split);
    one_call(&server);
    // Shutdown flushes the batches.
    assert!(server.terminate().iter().all(|s| s.success()));
    let all = spans(&collector);
    let by_name = |service: &str, name: &str| -> Span {
        all.iter()
            .find(|s| s.service.contains(service) && s.name == name)
            .cloned()
            .unwrap_or_else(|| panic!("no span {name} from {service}: {all:#?}"))
    };
    let call = by_name("milliwatt-signaling", "call");
    assert!(call.parent.is_empty(), "the call span is a root");
    let trace = call.trace_id.clone();
    let invite = by_name("milliwatt-signaling", "sip.invite");
    let answer = by_name("milliwatt-signaling", "sip.answer");
    let bye = by_name("milliwatt-signaling", "sip.bye");
    let release = by_name("milliwatt-signaling", "call.release");
    for s in [&invite, &answer, &bye, &release] {
        assert_eq!(s.trace_id, trace, "{} in another trace", s.name);
        assert_eq!(
            s.parent, call.span_id,
            "{} is not a child of the call",
            s.name
        );
    }
    let allocate = by_name(
        "milliwatt-media",
        "milliwatt.media.v1.Media/AllocateSession",
    );
    let start = by_name("milliwatt-media", "milliwatt.media.v1.Media/StartTone");
    let released = by_name("milliwatt-media", "milliwatt.media.v1.Media/ReleaseSession");
    for (media, sip) in [
        (&allocate, &invite),
        (&start, &answer),
        (&released, &release),
    ] {
        assert_eq!(
            media.trace_id, trace,
            "{} is not in the call's trace",
            media.name
        );
        assert_eq!(
            media.parent, sip.span_id,
            "{} is not a child of {}",
            media.name, sip.name
        );
    }
    // Log lines inside the call carry its call-id and trace id.
    let log = server.log_text();
    let trace_hex = hex(&trace);
    let answered = log
        .lines()
        .find(|l| l.contains("answered (ACK received)"))
        .expect("answered log line");
    assert!(
        answered.contains(&format!("trace_id={trace_hex}")),
        "{answered}"
    );
    assert!(answered.contains("call_id="), "{answered}");
}

#[test]
fn json_logs_carry_call_id_and_trace_id() {
    let mut cfg = TestConfig::new();
    cfg.tone_seconds = 1;
    cfg.extra = "[log]\nformat = \"json\"\n".into();
    let server = Server::start(cfg, Mode::AllInOne);
    one_call(&server);
    let log = server.log_text();
    let line = log
        .lines()
        .find(|l| l.contains("tone started"))
        .expect("tone started line");
    let json: serde_json::Value =
        serde_json::from_str(line.trim_start_matches("[milliwatt] ")).expect("a JSON log line");
    assert_eq!(json["fields"]["message"], "tone started");
    // The span list starts with the call's root span.
    let call = &json["spans"][0];
    assert_eq!(call["name"], "call", "{json}");
    assert!(
        call["call_id"].as_str().is_some_and(|c| !c.is_empty()),
        "{json}"
    );
    assert_eq!(call["trace_id"].as_str().map(str::len), Some(32), "{json}");
}

#[test]
fn a_collector_that_is_down_neither_blocks_calls_nor_goes_uncounted() {
    // A black hole, not a refused port: it accepts connections and never answers, so the
    // exporter's 2 s timeout is what ends each export.
    let hole = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = hole.local_addr().unwrap().port();
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    {
        let accepted = accepted.clone();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            // Bounded: at most 64 connections held; the thread ends with the test process.
            for conn in hole.incoming().take(64).flatten() {
                accepted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                held.push(conn);
            }
        });
    }
    let mut cfg = TestConfig::new();
    cfg.tone_seconds = 1;
    cfg.extra = format!("[telemetry]\notlp_endpoint = \"http://127.0.0.1:{dead}\"\n");
    let server = Server::start(cfg.clone(), Mode::AllInOne);
    for _ in 0..2 {
        // A 1 s tone answered at once: the call takes its own time, not the exporter's.
        let t = std::time::Instant::now();
        one_call(&server);
        let took = t.elapsed();
        assert!(
            took < 5 * SEC,
            "a call took {took:?} with the collector hanging"
        );
    }
    // The batch processor tries every 5 s; its failure is counted.
    let deadline = std::time::Instant::now() + 15 * SEC;
    let dropped = loop {
        let (_, text) = http_get(cfg.admin_port, "/metrics").unwrap();
        let metrics: HashMap<&str, f64> = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let mut it = l.split_whitespace();
                Some((it.next()?, it.next()?.parse().ok()?))
            })
            .collect();
        let d = metrics
            .get("milliwatt_otlp_spans_dropped_total")
            .copied()
            .unwrap_or(0.0);
        if d > 0.0 {
            break d;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "dropped spans never counted:\n{text}"
        );
        std::thread::sleep(SEC);
    };
    assert!(
        accepted.load(std::sync::atomic::Ordering::SeqCst) > 0,
        "the exporter never connected to the black hole: the timeout was not exercised"
    );
    eprintln!("{dropped} spans dropped with the collector hanging");
}
