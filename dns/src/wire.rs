//! The few pieces of the DNS wire format (RFC 1035 §4, RFC 6891) that the server reads and writes
//! itself. The hot path works on the packet bytes directly: no message is decoded into owned
//! structures and nothing is allocated.

pub(crate) const HEADER_LEN: usize = 12;
/// Longest name in wire form, RFC 1035 §3.1.
pub(crate) const MAX_NAME_LEN: usize = 255;
/// Longest DNS message over TCP (two-byte length prefix).
pub(crate) const MAX_TCP_MESSAGE: usize = 65_535;
/// What every DNS client accepts over UDP without EDNS, RFC 1035 §2.3.4.
pub(crate) const CLASSIC_UDP_PAYLOAD: usize = 512;
/// Length of an OPT record without options.
pub(crate) const OPT_LEN: usize = 11;
/// Fixed part of a resource record after its owner name: type, class, TTL, RDLENGTH.
pub(crate) const RR_FIXED_LEN: usize = 10;

pub(crate) const TYPE_A: u16 = 1;
pub(crate) const TYPE_SOA: u16 = 6;
pub(crate) const TYPE_AAAA: u16 = 28;
pub(crate) const TYPE_OPT: u16 = 41;
pub(crate) const TYPE_IXFR: u16 = 251;
pub(crate) const TYPE_AXFR: u16 = 252;
pub(crate) const TYPE_ANY: u16 = 255;
pub(crate) const CLASS_IN: u16 = 1;

pub(crate) const FLAG_QR: u16 = 0x8000;
pub(crate) const FLAG_AA: u16 = 0x0400;
pub(crate) const FLAG_TC: u16 = 0x0200;
pub(crate) const FLAG_RD: u16 = 0x0100;
pub(crate) const FLAG_RA: u16 = 0x0080;
pub(crate) const FLAG_AD: u16 = 0x0020;
pub(crate) const FLAG_CD: u16 = 0x0010;
/// The DO bit ("DNSSEC answer OK", RFC 3225) in the flags half of the OPT record's TTL.
pub(crate) const OPT_FLAG_DO: u16 = 0x8000;
pub(crate) const OPCODE_MASK: u16 = 0x7800;

/// Response codes, including the extended ones carried partly in the OPT record.
pub(crate) mod rcode {
    pub(crate) const NOERROR: u16 = 0;
    pub(crate) const FORMERR: u16 = 1;
    pub(crate) const SERVFAIL: u16 = 2;
    pub(crate) const NXDOMAIN: u16 = 3;
    pub(crate) const NOTIMP: u16 = 4;
    pub(crate) const REFUSED: u16 = 5;
    pub(crate) const BADVERS: u16 = 16;
}

/// Offsets of the four section counts in the header.
pub(crate) const QDCOUNT_AT: usize = 4;
pub(crate) const ANCOUNT_AT: usize = 6;
pub(crate) const NSCOUNT_AT: usize = 8;
pub(crate) const ARCOUNT_AT: usize = 10;

pub(crate) fn u16_at(bytes: &[u8], at: usize) -> Option<u16> {
    let b = bytes.get(at..at + 2)?;
    Some(u16::from_be_bytes([b[0], b[1]]))
}

pub(crate) fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    let b = bytes.get(at..at + 4)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

pub(crate) fn put_u16(bytes: &mut [u8], at: usize, value: u16) {
    bytes[at..at + 2].copy_from_slice(&value.to_be_bytes());
}

pub(crate) fn put_u32(bytes: &mut [u8], at: usize, value: u32) {
    bytes[at..at + 4].copy_from_slice(&value.to_be_bytes());
}

/// Skips the (possibly compressed) name that starts at `at` and returns the offset just after
/// it. Every compression pointer must point strictly backwards and past the header, and the
/// expanded name must fit in 255 bytes; so following pointers always ends, and dropping records
/// from the end of a message never leaves a pointer dangling.
pub(crate) fn skip_name(msg: &[u8], at: usize) -> Option<usize> {
    let mut pos = at;
    let mut end = None;
    let mut expanded = 0usize;
    loop {
        let len = *msg.get(pos)?;
        match len & 0xC0 {
            0x00 => {
                expanded += usize::from(len) + 1;
                if expanded > MAX_NAME_LEN {
                    return None;
                }
                if len == 0 {
                    return Some(end.unwrap_or(pos + 1));
                }
                pos += usize::from(len) + 1;
            }
            0xC0 => {
                let target = usize::from(u16_at(msg, pos)? & 0x3FFF);
                if target < HEADER_LEN || target >= pos {
                    return None;
                }
                end.get_or_insert(pos + 2);
                pos = target;
            }
            _ => return None,
        }
    }
}

/// Where one resource record lies in a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RecordSpan {
    pub(crate) start: usize,
    /// Offset of the TYPE field, just after the owner name.
    pub(crate) fixed: usize,
    pub(crate) rtype: u16,
    pub(crate) rdata: usize,
    pub(crate) end: usize,
}

impl RecordSpan {
    pub(crate) fn ttl_at(&self) -> usize {
        self.fixed + 4
    }
}

/// Reads the extent of the resource record that starts at `at`.
pub(crate) fn record_at(msg: &[u8], at: usize) -> Option<RecordSpan> {
    let fixed = skip_name(msg, at)?;
    let rtype = u16_at(msg, fixed)?;
    let rdlen = usize::from(u16_at(msg, fixed + 8)?);
    let rdata = fixed + RR_FIXED_LEN;
    let end = rdata + rdlen;
    if end > msg.len() {
        return None;
    }
    Some(RecordSpan {
        start: at,
        fixed,
        rtype,
        rdata,
        end,
    })
}

/// Appends an OPT record without options (RFC 6891 §6.1.2): our UDP payload size, the upper
/// eight bits of an extended RCODE, version 0, no DO bit (the server does not serve DNSSEC).
#[cfg(test)]
pub(crate) fn push_opt(out: &mut Vec<u8>, udp_payload: u16, extended_rcode: u16) {
    push_opt_with(out, udp_payload, extended_rcode, false, &[]);
}

/// `push_opt` with the DO bit and EDNS options (`options` is their wire form, at most 65,535
/// bytes).
pub(crate) fn push_opt_with(
    out: &mut Vec<u8>,
    udp_payload: u16,
    extended_rcode: u16,
    dnssec_ok: bool,
    options: &[u8],
) {
    let flags = if dnssec_ok { OPT_FLAG_DO } else { 0 };
    let ttl = u32::from((extended_rcode >> 4) as u8) << 24 | u32::from(flags);
    out.push(0);
    out.extend_from_slice(&TYPE_OPT.to_be_bytes());
    out.extend_from_slice(&udp_payload.to_be_bytes());
    out.extend_from_slice(&ttl.to_be_bytes());
    let len = u16::try_from(options.len()).unwrap_or(0);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&options[..usize::from(len)]);
}

/// Appends a 12-byte header.
pub(crate) fn push_header(out: &mut Vec<u8>, id: u16, flags: u16, counts: [u16; 4]) {
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&flags.to_be_bytes());
    for count in counts {
        out.extend_from_slice(&count.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg_with(tail: &[u8]) -> Vec<u8> {
        let mut m = vec![0u8; HEADER_LEN];
        m.extend_from_slice(tail);
        m
    }

    #[test]
    fn skips_plain_and_compressed_names() {
        let m = msg_with(b"\x03www\x07example\x00\xC0\x10");
        assert_eq!(skip_name(&m, 12), Some(12 + 13));
        // The pointer at 25 points to "example" at 16.
        assert_eq!(skip_name(&m, 25), Some(27));
    }

    #[test]
    fn refuses_bad_pointers_and_overlong_names() {
        // Pointer to itself, forwards, and into the header.
        assert_eq!(skip_name(&msg_with(b"\xC0\x0C"), 12), None);
        assert_eq!(skip_name(&msg_with(b"\xC0\x20\x00"), 12), None);
        assert_eq!(skip_name(&msg_with(b"\x01a\xC0\x02"), 12), None);
        // Reserved label types and a name running off the end.
        assert_eq!(skip_name(&msg_with(b"\x41a\x00"), 12), None);
        assert_eq!(skip_name(&msg_with(b"\x05ab"), 12), None);
        let mut long = Vec::new();
        for _ in 0..5 {
            long.push(63);
            long.extend_from_slice(&[b'a'; 63]);
        }
        long.push(0);
        assert_eq!(skip_name(&msg_with(&long), 12), None);
    }

    #[test]
    fn opt_carries_the_upper_rcode_bits() {
        let mut out = Vec::new();
        push_opt(&mut out, 1232, rcode::BADVERS);
        assert_eq!(out.len(), OPT_LEN);
        assert_eq!(u16_at(&out, 1), Some(TYPE_OPT));
        assert_eq!(u16_at(&out, 3), Some(1232));
        assert_eq!(out[5], 1);
    }
}
