//! Differential oracles for mep's hand-written wire code: what it makes of bytes from the network,
//! checked against hickory-proto's decoder reading the same bytes. Each one is used by a bounded
//! property test in this crate and by a cargo-fuzz target in `fuzz/`.
//!
//! - [`query`]: the parser of clients' queries (`query_differential`);
//! - [`relay`]: the relay of upstream resolvers' answers (`relay_differential`).

pub mod query;
pub mod relay;

#[cfg(test)]
mod damage;
