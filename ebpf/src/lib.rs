//! mep's XDP traffic-steering data plane: the aya loader and the shared `#[repr(C)]` types of the
//! kernel program. Filled by the XDP issue.
