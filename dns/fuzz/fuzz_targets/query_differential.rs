//! Arbitrary bytes to mep's query parser and to hickory-proto's decoder: they must agree on
//! what is dropped, refused and accepted, and on the question
//! (see `mep_dns::differential::query`).
//!
//! `cargo +nightly fuzz run query_differential` in `dns/`.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|packet: &[u8]| {
    if let Err(disagreement) = mep_dns::differential::query::check(packet) {
        panic!("{disagreement}");
    }
});
