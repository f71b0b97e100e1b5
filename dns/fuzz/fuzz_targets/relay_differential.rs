//! Arbitrary upstream responses to mep's relay and to hickory-proto's decoder: mep must refuse
//! them or relay their records intact, with the client's header, question and limit (see
//! `mep_dns::differential::relay`).
//!
//! `cargo +nightly fuzz run relay_differential` in `dns/`.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(disagreement) = mep_dns::differential::relay::check_bytes(data) {
        panic!("{disagreement}");
    }
});
