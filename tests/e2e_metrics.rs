//! `/metrics` read by the Prometheus project's own OpenMetrics parser (Python prometheus_client):
//! the counters match the calls placed.

mod common;

use std::collections::HashMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::rtp::{judge, Expect, RtpSink};
use common::{
    http_get, reject_scenario, scenario, sipp, temp_dir, tone_scenario, Mode, Server, TestConfig,
};

const SEC: Duration = Duration::from_secs(1);

fn parse(text: &str) -> HashMap<String, f64> {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/metrics/parse.py");
    // scripts/test.sh points this at a venv holding prometheus-client.
    let python = std::env::var("OPENMETRICS_PARSER_PYTHON").unwrap_or_else(|_| "python3".into());
    let mut child = Command::new(&python)
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{python} is needed for the OpenMetrics parser: {e}"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the OpenMetrics parser rejected /metrics: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn metrics_parse_as_openmetrics_and_count_the_calls() {
    let mut cfg = TestConfig::new();
    cfg.tone_seconds = 1;
    let server = Server::start(cfg.clone(), Mode::AllInOne);
    let dir = temp_dir("metrics");
    for _ in 0..2 {
        let sink = RtpSink::bind();
        let sc = tone_scenario(&dir, sink.port(), "0", 5000);
        sipp(&server, &sc, &[], 10 * SEC).assert_ok();
        std::thread::sleep(Duration::from_millis(100));
        judge(&sink.finish(), &Expect::pcmu_440(SEC));
    }
    let reject = reject_scenario(&dir, "18", 488);
    sipp(&server, &reject, &[], 10 * SEC).assert_ok();
    sipp(&server, &scenario("options.xml", &[], &dir), &[], 10 * SEC).assert_ok();
    server.wait_log("media session released", 2 * SEC);
    std::thread::sleep(Duration::from_millis(300));

    let (status, text) = http_get(cfg.admin_port, "/metrics").unwrap();
    assert_eq!(status, 200);
    let m = parse(&text);
    let get = |k: &str| {
        m.get(k)
            .copied()
            .unwrap_or_else(|| panic!("{k} missing: {m:#?}"))
    };
    assert_eq!(get("milliwatt_calls_received_total"), 3.0);
    assert_eq!(get("milliwatt_calls_answered_total"), 2.0);
    assert_eq!(get("milliwatt_calls_failed_total"), 1.0);
    assert_eq!(
        get("milliwatt_calls_failed_by_reason_total{reason=no_acceptable_media}"),
        1.0
    );
    assert_eq!(get("milliwatt_calls_active"), 0.0);
    assert_eq!(get("milliwatt_sip_responses_total{code=100}"), 2.0);
    assert_eq!(get("milliwatt_sip_responses_total{code=180}"), 2.0);
    assert_eq!(
        get("milliwatt_sip_responses_total{code=200}"),
        3.0,
        "two answers and OPTIONS"
    );
    assert_eq!(get("milliwatt_sip_responses_total{code=488}"), 1.0);
    assert_eq!(get("milliwatt_answer_latency_seconds_count"), 2.0);
    let latency_sum = get("milliwatt_answer_latency_seconds_sum");
    assert!(
        (0.6..1.5).contains(&latency_sum),
        "two answers after a 300 ms delay: {latency_sum}"
    );
    for method in ["AllocateSession", "StartTone", "ReleaseSession"] {
        assert_eq!(
            get(&format!(
                "milliwatt_media_grpc_latency_seconds_count{{method={method}}}"
            )),
            2.0
        );
    }
    let sent = get("milliwatt_media_rtp_packets_sent_total");
    assert!(
        (95.0..=110.0).contains(&sent),
        "2 calls x 1 s x 50 packets: {sent}"
    );
    assert_eq!(get("milliwatt_media_pacing_lateness_seconds_count"), sent);
    assert_eq!(
        get("milliwatt_media_pacing_lateness_seconds_bucket{le=+Inf}"),
        sent
    );
    assert_eq!(get("milliwatt_media_sessions"), 0.0);
    assert_eq!(get("milliwatt_media_sessions_allocated_total"), 2.0);
    assert_eq!(get("milliwatt_media_rtp_send_errors_total"), 0.0);
    assert!(m.contains_key("milliwatt_otlp_spans_dropped_total"));
}
