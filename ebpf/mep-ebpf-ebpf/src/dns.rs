//! DNS answers in the kernel: a UDP query for the DNS service, for a name and type that an ACTIVE
//! DNS rule answers, gets the userspace server's answer from `MEP_DNS_ANSWERS` with XDP_TX. The
//! question stays in place; the program rewrites the header, appends the precompiled records
//! and an OPT record when the query had one, turns the addresses around and computes the UDP
//! checksum afresh (a query's own checksum may be a partial one left for offload). Anything it
//! cannot answer exactly as userspace would passes unchanged.
//!
//! The answer grows the frame at its tail where the buffer has room (NIC pages, test runs);
//! frames built from small socket buffers (veth, generic XDP) have little tailroom but the
//! XDP headroom, so there the headers and the question move to the front instead.

use aya_ebpf::{
    bindings::xdp_action,
    helpers::generated::{
        bpf_xdp_adjust_head, bpf_xdp_adjust_tail, bpf_xdp_load_bytes, bpf_xdp_store_bytes,
    },
    programs::XdpContext,
};
use mep_ebpf_common::{
    Counter, DnsConfig, DNS_ANSWERED, DNS_NAME_MAX, DNS_PASSED, DNS_RECORDS_CAP, DNS_RECORDS_MAX,
    DNS_SHORT_NAME_MAX,
};

use crate::csum::fold;
use crate::maps::{
    DnsScratch, DNS_ADDRS, DNS_ANSWERS, DNS_ANSWERS_SHORT, DNS_CFG, DNS_SCRATCH, DNS_STATS,
};
use crate::parse::{
    bounds, Frame, ETH_LEN, ETH_P_8021AD, ETH_P_8021Q, ETH_P_IP, ETH_P_IPV6, IPPROTO_UDP, V4_MAPPED,
};
use crate::verifier::masked_len;

const UDP_LEN: usize = 8;
const DNS_HEADER_LEN: usize = 12;
const OPT_LEN: usize = 11;
const FLAG_QR: u16 = 0x8000;
const FLAG_AA: u16 = 0x0400;
const FLAG_RD: u16 = 0x0100;
const FLAG_RA: u16 = 0x0080;
const FLAG_CD: u16 = 0x0010;
const OPCODE_MASK: u16 = 0x7800;
const TYPE_A: u16 = 1;
const TYPE_AAAA: u16 = 28;
const TYPE_OPT: u16 = 41;
const CLASS_IN: u16 = 1;
const OPT_FLAG_DO: u16 = 0x8000;
const CLASSIC_UDP_PAYLOAD: usize = 512;
const REPLY_TTL: u8 = 64;

/// What became of a packet.
enum Outcome {
    /// Not a UDP packet for the DNS service.
    NotForUs,
    /// A query for the DNS service that userspace answers.
    Passed,
    /// Answered with XDP_TX; the frame is this long.
    Answered(usize),
    /// The frame was resized but then not found as long as it should be: never seen, but the
    /// packet is no longer the query.
    Broken,
}

/// Answers the frame if it is a query the kernel can answer: XDP_TX, else XDP_PASS. Not
/// inlined: its stack frame (the lookup key) is its own.
#[inline(never)]
pub fn answer(ctx: &XdpContext) -> u32 {
    let Some(cfg) = DNS_CFG.get(0) else {
        return xdp_action::XDP_PASS;
    };
    if cfg.enabled == 0 {
        return xdp_action::XDP_PASS;
    }
    match try_answer(ctx, cfg) {
        Outcome::NotForUs => xdp_action::XDP_PASS,
        Outcome::Passed => {
            count(DNS_PASSED, (ctx.data_end() - ctx.data()) as u64);
            xdp_action::XDP_PASS
        }
        Outcome::Answered(len) => {
            count(DNS_ANSWERED, len as u64);
            xdp_action::XDP_TX
        }
        Outcome::Broken => xdp_action::XDP_ABORTED,
    }
}

#[inline(always)]
fn count(slot: u32, bytes: u64) {
    if let Some(c) = DNS_STATS.get_ptr_mut(slot) {
        let c: &mut Counter = unsafe { &mut *c };
        c.packets += 1;
        c.bytes += bytes;
    }
}

/// Evaluates to the value of an `Option`, or returns `Outcome::Passed`.
macro_rules! or_pass {
    ($e:expr) => {
        match $e {
            Some(v) => v,
            None => return Outcome::Passed,
        }
    };
}

/// Evaluates to the value of an `Option`, or returns `Outcome::Broken`.
macro_rules! or_broken {
    ($e:expr) => {
        match $e {
            Some(v) => v,
            None => return Outcome::Broken,
        }
    };
}

/// Evaluates to the value of an `Option`, or returns `Outcome::NotForUs`.
macro_rules! or_ignore {
    ($e:expr) => {
        match $e {
            Some(v) => v,
            None => return Outcome::NotForUs,
        }
    };
}

/// Adds the bytes of a 16-bit word that sits at an odd (`odd`) or even offset of the checksummed
/// data: one's-complement sums of byte-swapped words are the byte-swapped sum (RFC 1071).
#[inline(always)]
fn at(word: u16, odd: bool) -> u64 {
    u64::from(if odd { word.swap_bytes() } else { word })
}

#[inline(always)]
fn word_sum(w: u32) -> u64 {
    let b = w.to_ne_bytes();
    u64::from(u16::from_be_bytes([b[0], b[1]])) + u64::from(u16::from_be_bytes([b[2], b[3]]))
}

const BYTES_01: u64 = 0x0101_0101_0101_0101;
const BYTES_80: u64 = 0x8080_8080_8080_8080;
const LANES_16: u64 = 0x0000_ffff_0000_ffff;

/// The index of the lowest byte of a little-endian word whose top bit `marks` has set.
#[inline(always)]
fn first_marked_byte(marks: u64) -> u32 {
    let lowest = (marks & marks.wrapping_neg()) >> 7;
    // `lowest` is 1 << 8k: the multiplication moves byte 7 - k of the constant, which is k,
    // to the top.
    (lowest.wrapping_mul(0x0001_0203_0405_0607) >> 56) as u32
}

/// `v`'s bytes with ASCII upper-case letters lowered, all eight at once.
#[inline(always)]
fn ascii_lower(v: u64) -> u64 {
    let low7 = v & (0x7f * BYTES_01);
    let at_least_a = low7 + (0x80 - u64::from(b'A')) * BYTES_01;
    let above_z = low7 + (0x7f - u64::from(b'Z')) * BYTES_01;
    let upper = at_least_a & !above_z & !v & BYTES_80;
    v | (upper >> 2)
}

#[inline(always)]
fn try_answer(ctx: &XdpContext, cfg: &DnsConfig) -> Outcome {
    let (start, end) = bounds(ctx);
    let f = Frame { start, end };
    let eth = or_ignore!(f.hdr::<ETH_LEN>(0));
    let mut l3 = ETH_LEN;
    let mut proto = eth.be16(12);
    for _ in 0..2 {
        if proto == ETH_P_8021Q || proto == ETH_P_8021AD {
            proto = or_ignore!(f.hdr::<4>(l3)).be16(2);
            l3 += 4;
        }
    }
    let v6 = match proto {
        ETH_P_IP => false,
        ETH_P_IPV6 => true,
        _ => return Outcome::NotForUs,
    };
    // The destination address, and the length the IP header gives the UDP datagram.
    let (dst, ip_len, ip_udp_len) = if v6 {
        let h = or_ignore!(f.hdr::<40>(l3));
        if h.u8(6) != IPPROTO_UDP {
            return Outcome::NotForUs;
        }
        (
            [h.word(24), h.word(28), h.word(32), h.word(36)],
            40,
            usize::from(h.be16(4)),
        )
    } else {
        let h = or_ignore!(f.hdr::<20>(l3));
        // Options and fragments are left to the stack.
        if h.u8(0) != 0x45 || h.u8(9) != IPPROTO_UDP || h.be16(6) & 0x3fff != 0 {
            return Outcome::NotForUs;
        }
        (
            [0, 0, V4_MAPPED, h.word(16)],
            20,
            usize::from(h.be16(2)).wrapping_sub(20),
        )
    };
    let udp_at = l3 + ip_len;
    let udp = or_ignore!(f.hdr::<UDP_LEN>(udp_at));
    if udp.be16(2) != cfg.port || unsafe { DNS_ADDRS.get(&dst) }.is_none() {
        return Outcome::NotForUs;
    }
    // From here on the packet is a query for the service: what is not answered is counted.
    let udp_len = usize::from(udp.be16(4));
    if udp_len != ip_udp_len || udp_len < UDP_LEN + DNS_HEADER_LEN || udp_at + udp_len > end - start
    {
        return Outcome::Passed;
    }
    let dns_at = udp_at + UDP_LEN;
    let dns_end = udp_at + udp_len;
    let header = or_pass!(f.hdr::<DNS_HEADER_LEN>(dns_at));
    let flags = header.be16(2);
    let arcount = header.be16(10);
    if flags & (FLAG_QR | OPCODE_MASK) != 0
        || header.be16(4) != 1
        || header.be16(6) != 0
        || header.be16(8) != 0
        || arcount > 1
    {
        return Outcome::Passed;
    }

    // The question name, from its first DNS_NAME_MAX bytes loaded in one helper call and read
    // in words: its end is the first zero byte, the key is its bytes lower-cased (ASCII) and
    // zero-padded, the checksum sums them as sent. The key need not check the labels: the map
    // holds only well-formed names of letters, digits and hyphens, and a query whose bytes
    // (lower-cased) equal one up to its first zero is that name, as a compression pointer, a
    // zero inside a label or another character never is. The length goes through the scratch
    // map, so every name continues as one verifier state, not one per length.
    let question_at = dns_at + DNS_HEADER_LEN;
    let Some(scratch) = DNS_SCRATCH.get_ptr_mut(0) else {
        return Outcome::Passed;
    };
    let scratch: &mut DnsScratch = unsafe { &mut *scratch };
    let loaded = (dns_end - question_at).min(DNS_NAME_MAX);
    let load_len = masked_len::<{ DNS_NAME_MAX as u32 }>(loaded as u32);
    if loaded == 0
        || unsafe {
            bpf_xdp_load_bytes(
                ctx.ctx,
                question_at as u32,
                scratch.question.as_mut_ptr() as *mut _,
                load_len,
            )
        } != 0
    {
        return Outcome::Passed;
    }
    unsafe { core::ptr::write_volatile(&mut scratch.name_len, 0) };
    for w in 0..DNS_NAME_MAX / 8 {
        let v = scratch.question[w];
        let zeros = v.wrapping_sub(BYTES_01) & !v & BYTES_80;
        if zeros != 0 && unsafe { core::ptr::read_volatile(&scratch.name_len) } == 0 {
            let end = (w * 8) as u32 + first_marked_byte(zeros) + 1;
            unsafe { core::ptr::write_volatile(&mut scratch.name_len, end) };
        }
    }
    // Masked so that the register the offsets are computed from is bounded for the verifier
    // (LLVM checks ranges on a shifted copy).
    let name_len = (unsafe { core::ptr::read_volatile(&scratch.name_len) } & 0xff) as usize;
    // Unterminated within the bound, or the root (which no rule names). A zero among bytes
    // left from an earlier query, past a datagram that ends in the name, puts the question's
    // tail past the datagram's end, which is checked below.
    if !(2..=DNS_NAME_MAX).contains(&name_len) {
        return Outcome::Passed;
    }
    let mut sum_le: u64 = 0;
    let key_words = scratch.key.name.as_mut_ptr() as *mut u64;
    let short_words = scratch.short_key.name.as_mut_ptr() as *mut u64;
    for w in 0..DNS_NAME_MAX / 8 {
        let at = w * 8;
        let keep = if name_len >= at + 8 {
            u64::MAX
        } else if name_len <= at {
            0
        } else {
            (1u64 << ((name_len - at) * 8)) - 1
        };
        let v = scratch.question[w] & keep;
        // Little-endian words of bytes that sit at even offsets: byte-swapped network words.
        sum_le += (v & LANES_16) + ((v >> 16) & LANES_16);
        let lowered = ascii_lower(v);
        unsafe { key_words.add(w).write(lowered) };
        if w < DNS_SHORT_NAME_MAX / 8 {
            unsafe { short_words.add(w).write(lowered) };
        }
    }
    let mut sum = u64::from(fold(sum_le).swap_bytes());
    // Fresh bounds: the loop's checks are not carried on (as verifier state, one per length).
    let (start, end) = bounds(ctx);
    let f = Frame { start, end };
    let qtail_at = question_at + name_len;
    if qtail_at + 4 > dns_end {
        return Outcome::Passed;
    }
    let qtail = or_pass!(f.hdr::<4>(qtail_at));
    let qtype = qtail.be16(0);
    let odd = name_len & 1 == 1;
    if qtail.be16(2) != CLASS_IN || (qtype != TYPE_A && qtype != TYPE_AAAA) {
        return Outcome::Passed;
    }
    sum += at(qtype, odd) + at(CLASS_IN, odd);
    let records_at = qtail_at + 4;

    // EDNS: one OPT record of version 0 owned by the root; its options do not change a local
    // answer (userspace ignores them too).
    let mut edns = false;
    let mut dnssec_ok = false;
    let mut limit = CLASSIC_UDP_PAYLOAD;
    if arcount == 1 {
        let opt = or_pass!(f.hdr::<OPT_LEN>(records_at));
        if opt.u8(0) != 0 || opt.be16(1) != TYPE_OPT || opt.u8(6) != 0 {
            return Outcome::Passed;
        }
        if records_at + OPT_LEN + usize::from(opt.be16(9)) > dns_end {
            return Outcome::Passed;
        }
        edns = true;
        dnssec_ok = opt.be16(7) & OPT_FLAG_DO != 0;
        let payload = usize::from(opt.be16(3)).min(usize::from(cfg.udp_payload));
        limit = payload.max(CLASSIC_UDP_PAYLOAD);
    }

    let records = if name_len <= DNS_SHORT_NAME_MAX {
        scratch.short_key.qtype = qtype;
        unsafe { DNS_ANSWERS_SHORT.get(&scratch.short_key) }
    } else {
        scratch.key.qtype = qtype;
        unsafe { DNS_ANSWERS.get(&scratch.key) }
    };
    let Some(records) = records else {
        return Outcome::Passed;
    };
    let records_len = usize::from(records.len) & 0x1ff;
    if usize::from(records.len) > DNS_RECORDS_MAX || records_len & 3 != 0 {
        return Outcome::Passed;
    }
    let opt_len = if edns { OPT_LEN } else { 0 };
    let dns_len = records_at + records_len + opt_len - dns_at;
    if dns_len > limit {
        // Userspace truncates.
        return Outcome::Passed;
    }

    let frame_len = records_at + records_len + opt_len;
    let delta = frame_len as i32 - (end - start) as i32;
    if unsafe { bpf_xdp_adjust_tail(ctx.ctx, delta) } != 0 {
        match grow_at_head(ctx, scratch, records_at, delta) {
            Growth::Grown => {}
            Growth::Untouched => return Outcome::Passed,
            Growth::Broken => return Outcome::Broken,
        }
    }
    // The records in one helper call: a copy loop would be a verifier state per word. The
    // length is masked into 1..=DNS_RECORDS_CAP, which the verifier can see.
    let len = masked_len::<{ DNS_RECORDS_CAP as u32 }>(u32::from(unsafe {
        core::ptr::read_volatile(&records.len)
    }));
    if len as usize != records_len
        || unsafe {
            bpf_xdp_store_bytes(
                ctx.ctx,
                records_at as u32,
                records.data.as_ptr() as *mut _,
                len,
            )
        } != 0
    {
        return Outcome::Broken;
    }
    let (start, end) = bounds(ctx);
    let f = Frame { start, end };
    sum += at(records.sum as u16, odd);
    if edns {
        let out = or_broken!(f.hdr::<OPT_LEN>(records_at + records_len));
        let payload = cfg.udp_payload;
        let do_flag = if dnssec_ok { OPT_FLAG_DO } else { 0 };
        // NAME (root), TYPE, CLASS (our payload size), TTL (extended RCODE, version, flags),
        // RDLENGTH: the bytes userspace writes.
        out.put_u8(0, 0);
        out.put_be16(1, TYPE_OPT);
        out.put_be16(3, payload);
        out.put_be16(5, 0);
        out.put_be16(7, do_flag);
        out.put_be16(9, 0);
        // The record starts at an offset of the same parity as the question tail (records are
        // whole words); its bytes 1..=2 and 3..=4 and 7..=8 are the words written above.
        sum += at(TYPE_OPT, !odd) + at(payload, !odd) + at(do_flag, !odd);
    }

    let response_flags = FLAG_QR | FLAG_RA | FLAG_AA | (flags & (OPCODE_MASK | FLAG_RD | FLAG_CD));
    let header = or_broken!(f.hdr::<DNS_HEADER_LEN>(dns_at));
    header.put_be16(2, response_flags);
    header.put_be16(6, records.count);
    sum += u64::from(header.be16(0))
        + u64::from(response_flags)
        + 1
        + u64::from(records.count)
        + u64::from(arcount);

    let udp_len = (dns_len + UDP_LEN) as u16;
    let udp = or_broken!(f.hdr::<UDP_LEN>(udp_at));
    let sport = udp.be16(0);
    let dport = udp.be16(2);
    udp.put_be16(0, dport);
    udp.put_be16(2, sport);
    udp.put_be16(4, udp_len);
    // The UDP header and the pseudo-header's length and protocol.
    sum += u64::from(sport) + u64::from(dport) + 2 * u64::from(udp_len) + u64::from(IPPROTO_UDP);

    if v6 {
        let ip = or_broken!(f.hdr::<40>(l3));
        let mut s = 0u64;
        for i in 0..4 {
            let src = ip.word(8 + i * 4);
            let dst = ip.word(24 + i * 4);
            ip.put_word(8 + i * 4, dst);
            ip.put_word(24 + i * 4, src);
            s += word_sum(src) + word_sum(dst);
        }
        sum += s;
        ip.put_be16(4, udp_len);
        ip.put_u8(7, REPLY_TTL);
    } else {
        let ip = or_broken!(f.hdr::<20>(l3));
        let src = ip.word(12);
        let dst = ip.word(16);
        ip.put_word(12, dst);
        ip.put_word(16, src);
        sum += word_sum(src) + word_sum(dst);
        let total = udp_len + 20;
        ip.put_be16(2, total);
        ip.put_be16(4, 0);
        ip.put_be16(6, 0x4000);
        ip.put_u8(8, REPLY_TTL);
        ip.put_be16(10, 0);
        let mut ip_sum = 0u64;
        for i in 0..10 {
            ip_sum += u64::from(ip.be16(i * 2));
        }
        ip.put_be16(10, !fold(ip_sum));
    }
    let checksum = !fold(sum);
    udp.put_be16(6, if checksum == 0 { 0xffff } else { checksum });

    let eth = or_broken!(f.hdr::<ETH_LEN>(0));
    let (d0, d1, d2) = (eth.be16(0), eth.be16(2), eth.be16(4));
    let (s0, s1, s2) = (eth.be16(6), eth.be16(8), eth.be16(10));
    eth.put_be16(0, s0);
    eth.put_be16(2, s1);
    eth.put_be16(4, s2);
    eth.put_be16(6, d0);
    eth.put_be16(8, d1);
    eth.put_be16(10, d2);
    Outcome::Answered(frame_len)
}

/// Grows the frame by `delta` bytes at its head and moves the first `prefix` bytes (headers and
/// question) there, so that the records follow them as after a tail growth.
#[inline(always)]
fn grow_at_head(ctx: &XdpContext, scratch: &mut DnsScratch, prefix: usize, delta: i32) -> Growth {
    // 1..=256, the buffer's size.
    let len = masked_len::<256>(prefix as u32);
    if delta <= 0 || len as usize != prefix {
        return Growth::Untouched;
    }
    let buf = scratch.head.as_mut_ptr() as *mut _;
    unsafe {
        if bpf_xdp_load_bytes(ctx.ctx, 0, buf, len) != 0
            || bpf_xdp_adjust_head(ctx.ctx, -delta) != 0
        {
            return Growth::Untouched;
        }
        if bpf_xdp_store_bytes(ctx.ctx, 0, buf, len) != 0 {
            return Growth::Broken;
        }
    }
    Growth::Grown
}

enum Growth {
    Grown,
    /// No headroom either: the frame is as it was.
    Untouched,
    Broken,
}
