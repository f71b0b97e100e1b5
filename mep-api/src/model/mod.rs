//! MEC 011 wire types, spelled as the spec spells them, and their validation. Everything that comes
//! out of this module after `validate` is trusted by the rest of the control plane.

pub mod appd;
pub mod common;
pub mod confirmation;
pub mod ids;
pub mod service;
pub mod subscription;
