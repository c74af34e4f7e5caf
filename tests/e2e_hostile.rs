//! Hostile input that names foreign addresses. The brief's rule: a test that feeds foreign SDP
//! runs the server in a network namespace with loopback only, so a server that obeyed such an
//! SDP would have nowhere to send. Each test here re-executes itself under `unshare -n` (root,
//! util-linux) with `lo` up (iproute2), and runs the server and SIPp inside.

mod common;

use std::time::Duration;

use common::rtp::{judge, Expect, RtpSink};
use common::*;

#[test]
fn offers_naming_groups_networks_or_no_one_get_488_and_nothing_is_sent() {
    if reexec_in_loopback_namespace(
        "offers_naming_groups_networks_or_no_one_get_488_and_nothing_is_sent",
    ) {
        return;
    }
    let cfg = TestConfig::new();
    let server = Server::start(cfg.clone(), Mode::AllInOne);
    let dir = temp_dir("hostile");
    for (addr, why) in [
        ("224.0.0.1", "multicast"),
        ("239.255.255.250", "multicast"),
        ("255.255.255.255", "broadcast"),
        ("ff02::1", "multicast"),
        ("0.0.0.0", "names no destination"),
    ] {
        let sc = reject_scenario_to(&dir, "0", addr, 488);
        sipp(&server, &sc, &[], Duration::from_secs(10)).assert_ok();
        server.wait_log(why, Duration::from_secs(2));
    }
    // Nothing was allocated for any of them, so nothing was ever sent.
    assert!(grpc::list_sessions(&server.grpc_endpoint()).is_empty());
    // A unicast offer still gets its call (the namespace's loopback).
    let sink = RtpSink::bind();
    sipp(
        &server,
        &tone_scenario(&dir, sink.port(), "0", 5000),
        &[],
        Duration::from_secs(15),
    )
    .assert_ok();
    judge(
        &sink.finish(),
        &Expect::pcmu_440(Duration::from_secs(cfg.tone_seconds)),
    );
}
