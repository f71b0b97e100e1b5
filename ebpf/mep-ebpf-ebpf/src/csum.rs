//! Internet checksums (RFC 1071), shared by the DNS answers and the TC program.

/// Folds a one's complement sum of 16-bit words (up to 64 bits of carries) to 16 bits.
#[inline(always)]
pub fn fold(mut sum: u64) -> u16 {
    sum = (sum & 0xffff_ffff) + (sum >> 32);
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum as u16
}
