//! What the verifier needs to see, shared by every program object.

/// `len` masked into `1..=CAP` (a power of two, 0 wrapping to `CAP`): a size the verifier can
/// bound for a helper call that must not be given zero. Equal to `len` whenever `len` is in
/// that range, so callers compare the two to reject anything else.
#[inline(always)]
pub fn masked_len<const CAP: u32>(len: u32) -> u32 {
    const { assert!(CAP.is_power_of_two()) };
    (len.wrapping_sub(1) & (CAP - 1)) + 1
}
