//! Listener hygiene shared by mep's TCP servers (Mp1, Mm5, DNS over TCP), so that a handful of
//! cheap connections cannot take a service away from everyone else:
//!
//! - [`ConnTable`]: every open connection of a listener, with a cap per client address, an idle
//!   limit that shrinks as the table fills (as Knot and Unbound do), and eviction of the
//!   longest-idle connection when a new one arrives at a full table;
//! - [`fd`]: the process's descriptor budget, raised to the hard limit at start and divided
//!   between the listeners;
//! - [`AcceptBackoff`]: what an accept loop does when `accept` fails (out of descriptors): wait,
//!   longer each time, and say so once a second rather than on every attempt;
//! - [`ClientShares`]: a per-client cap on what a server holds for its clients at once (DNS
//!   queries waiting for an upstream), kept without a lock.

// Input and I/O paths never unwrap; tests may.
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

mod backoff;
pub mod fd;
mod share;
mod table;

pub use backoff::AcceptBackoff;
pub use share::{ClientShare, ClientShares};
pub use table::{Closed, ConnLimits, ConnTable, ConnTicket, InFlight, Refusal, TableCounts};
