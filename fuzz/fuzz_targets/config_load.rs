//! Configuration loading: any file text gives a configuration that passed `validate`, or an
//! error whose message names what is wrong — never a panic. A loaded configuration's
//! derived values (RTP port pairs, advertised hosts) are computed as the services do.
#![no_main]

use libfuzzer_sys::fuzz_target;
use milliwatt_common::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Config::from_toml(text) {
        Ok(cfg) => {
            assert!(
                cfg.rtp_port_pairs() > 0,
                "a valid configuration with no RTP port pair"
            );
            let _ = cfg.sip_advertised_host();
            let _ = cfg.media_advertised_host();
        }
        Err(e) => assert!(!e.to_string().is_empty(), "an error without a message"),
    }
});
