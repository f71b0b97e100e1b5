//! Packet parsing: Ethernet (+802.1Q/802.1ad), IPv4, IPv6, TCP/UDP ports and GTP-U with its inner
//! IPv4/IPv6 packet. Reads only; every access is bounds-checked against `data_end`.

use aya_ebpf::programs::XdpContext;

pub const ETH_LEN: usize = 14;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
const GTPU_PORT: u16 = 2152;
const GTPU_G_PDU: u8 = 0xff;
/// Extension headers followed per GTP-U packet.
const GTPU_MAX_EXT: usize = 4;

/// What the filters see of one packet. For GTP-U traffic the plain fields describe the inner
/// packet and the `t*` fields the tunnel; addresses are IPv6 words in network byte order, IPv4
/// mapped.
#[repr(C)]
#[derive(Default)]
pub struct Pkt {
    pub src: [u32; 4],
    pub dst: [u32; 4],
    pub tsrc: [u32; 4],
    pub tdst: [u32; 4],
    /// TEID in network byte order.
    pub teid: u32,
    pub sport: u16,
    pub dport: u16,
    pub tsport: u16,
    pub tdport: u16,
    pub proto: u8,
    pub dscp: u8,
    pub tc: u8,
    pub v6: bool,
    pub has_ports: bool,
    pub tunnel: bool,
    pub outer_v6: bool,
    /// Offset of the (inner, for GTP-U) IP header from the start of the frame.
    pub l3_off: usize,
    /// Length of the outer Ethernet header with its VLAN tags.
    pub l2_len: usize,
}

/// The frame's start and end. Read with volatile loads so that they stay loads from the context in
/// whichever function uses them: LLVM would otherwise hoist them into a caller and pass them as
/// truncated integers, which the verifier refuses as pointer arithmetic.
#[inline(always)]
pub fn bounds(ctx: &XdpContext) -> (usize, usize) {
    unsafe {
        (
            core::ptr::read_volatile(&(*ctx.ctx).data) as usize,
            core::ptr::read_volatile(&(*ctx.ctx).data_end) as usize,
        )
    }
}

/// Hides `v`'s value from LLVM (at the cost of one register move), so that it cannot rewrite a bounds
/// check `p + n > end` into `p >= end` or fold `n` into `p` and read at a negative offset: the
/// verifier only accepts the plain form.
#[inline(always)]
fn opaque(mut v: usize) -> usize {
    unsafe { core::arch::asm!("{0} = {0}", inout(reg) v, options(pure, nomem, nostack)) };
    v
}

#[inline(always)]
fn ptr_at<T>(ctx: &XdpContext, off: usize) -> Option<*const T> {
    let (start, end) = bounds(ctx);
    let p = opaque(start + off);
    if p + core::mem::size_of::<T>() > end {
        return None;
    }
    Some(p as *const T)
}

#[inline(always)]
fn u8_at(ctx: &XdpContext, off: usize) -> Option<u8> {
    ptr_at::<u8>(ctx, off).map(|p| unsafe { *p })
}

#[inline(always)]
fn be16_at(ctx: &XdpContext, off: usize) -> Option<u16> {
    ptr_at::<[u8; 2]>(ctx, off).map(|p| u16::from_be_bytes(unsafe { *p }))
}

#[inline(always)]
fn word_at(ctx: &XdpContext, off: usize) -> Option<u32> {
    ptr_at::<[u8; 4]>(ctx, off).map(|p| u32::from_ne_bytes(unsafe { *p }))
}

/// `::ffff:0:0/96` in native words.
const V4_MAPPED: u32 = u32::from_ne_bytes([0, 0, 0xff, 0xff]);

/// The IP header at `off`: addresses, protocol, DSCP/TC, and the L4 offset (None for
/// non-first fragments, whose ports are not in the packet).
struct Ip {
    src: [u32; 4],
    dst: [u32; 4],
    proto: u8,
    dscp: u8,
    tc: u8,
    v6: bool,
    l4_off: Option<usize>,
}

#[inline(always)]
fn parse_ip(ctx: &XdpContext, off: usize, v6: bool) -> Option<Ip> {
    if v6 {
        let b0 = u8_at(ctx, off)?;
        let b1 = u8_at(ctx, off + 1)?;
        let tc = (b0 << 4) | (b1 >> 4);
        let proto = u8_at(ctx, off + 6)?;
        let src_p = ptr_at::<[u32; 4]>(ctx, off + 8)?;
        let dst_p = ptr_at::<[u32; 4]>(ctx, off + 24)?;
        Some(Ip {
            src: unsafe { *src_p },
            dst: unsafe { *dst_p },
            proto,
            dscp: tc >> 2,
            tc,
            v6: true,
            l4_off: Some(off + 40),
        })
    } else {
        let vihl = u8_at(ctx, off)?;
        if vihl >> 4 != 4 {
            return None;
        }
        let ihl = ((vihl & 0x0f) as usize) * 4;
        if ihl < 20 {
            return None;
        }
        let tos = u8_at(ctx, off + 1)?;
        let frag = be16_at(ctx, off + 6)?;
        let proto = u8_at(ctx, off + 9)?;
        let src = word_at(ctx, off + 12)?;
        let dst = word_at(ctx, off + 16)?;
        Some(Ip {
            src: [0, 0, V4_MAPPED, src],
            dst: [0, 0, V4_MAPPED, dst],
            proto,
            dscp: tos >> 2,
            tc: tos,
            v6: false,
            l4_off: if frag & 0x1fff == 0 {
                Some(off + ihl)
            } else {
                None
            },
        })
    }
}

/// Source and destination port of a TCP or UDP header.
#[inline(always)]
fn ports(ctx: &XdpContext, ip: &Ip) -> Option<(u16, u16)> {
    match (ip.proto, ip.l4_off) {
        (IPPROTO_TCP | IPPROTO_UDP, Some(off)) => {
            Some((be16_at(ctx, off)?, be16_at(ctx, off + 2)?))
        }
        _ => None,
    }
}

/// Length of the GTP-U header at `off` (with its optional fields and extension headers), or
/// None when it is not a G-PDU carrying an IP packet.
#[inline(always)]
fn gtpu_len(ctx: &XdpContext, off: usize) -> Option<usize> {
    let flags = u8_at(ctx, off)?;
    if flags >> 5 != 1 || u8_at(ctx, off + 1)? != GTPU_G_PDU {
        return None;
    }
    if flags & 0x07 == 0 {
        return Some(8);
    }
    let mut len = 12;
    let mut next = u8_at(ctx, off + 11)?;
    if flags & 0x04 == 0 {
        return Some(len);
    }
    for _ in 0..GTPU_MAX_EXT {
        if next == 0 {
            return Some(len);
        }
        let units = u8_at(ctx, off + len)? as usize;
        if units == 0 {
            return None;
        }
        len += units * 4;
        next = u8_at(ctx, off + len - 1)?;
    }
    if next == 0 {
        Some(len)
    } else {
        None
    }
}

/// Parses the frame; None for frames that are not IPv4/IPv6 (those always pass). Not inlined:
/// its own stack frame keeps the caller's under the BPF limit.
#[inline(never)]
pub fn parse(ctx: &XdpContext, out: &mut Pkt) -> bool {
    match parse_frame(ctx) {
        Some(p) => {
            *out = p;
            true
        }
        None => false,
    }
}

#[inline(always)]
fn parse_frame(ctx: &XdpContext) -> Option<Pkt> {
    let mut off = ETH_LEN;
    let mut proto = be16_at(ctx, 12)?;
    for _ in 0..2 {
        if proto == ETH_P_8021Q || proto == ETH_P_8021AD {
            proto = be16_at(ctx, off + 2)?;
            off += 4;
        }
    }
    let v6 = match proto {
        ETH_P_IP => false,
        ETH_P_IPV6 => true,
        _ => return None,
    };
    let outer = parse_ip(ctx, off, v6)?;
    let outer_ports = ports(ctx, &outer);
    if let (Some((sport, dport)), Some(l4)) = (outer_ports, outer.l4_off) {
        if outer.proto == IPPROTO_UDP && (dport == GTPU_PORT || sport == GTPU_PORT) {
            let gtp = l4 + 8;
            if let Some(glen) = gtpu_len(ctx, gtp) {
                let inner_off = gtp + glen;
                let teid = word_at(ctx, gtp + 4)?;
                let inner_v6 = match u8_at(ctx, inner_off)? >> 4 {
                    4 => false,
                    6 => true,
                    _ => return None,
                };
                let inner = parse_ip(ctx, inner_off, inner_v6)?;
                let inner_ports = ports(ctx, &inner);
                let (isport, idport) = inner_ports.unwrap_or((0, 0));
                return Some(Pkt {
                    src: inner.src,
                    dst: inner.dst,
                    tsrc: outer.src,
                    tdst: outer.dst,
                    teid,
                    sport: isport,
                    dport: idport,
                    tsport: sport,
                    tdport: dport,
                    proto: inner.proto,
                    dscp: inner.dscp,
                    tc: inner.tc,
                    v6: inner.v6,
                    has_ports: inner_ports.is_some(),
                    tunnel: true,
                    outer_v6: v6,
                    l3_off: inner_off,
                    l2_len: off,
                });
            }
        }
    }
    let (sport, dport) = outer_ports.unwrap_or((0, 0));
    Some(Pkt {
        src: outer.src,
        dst: outer.dst,
        tsrc: [0; 4],
        tdst: [0; 4],
        teid: 0,
        sport,
        dport,
        tsport: 0,
        tdport: 0,
        proto: outer.proto,
        dscp: outer.dscp,
        tc: outer.tc,
        v6: outer.v6,
        has_ports: outer_ports.is_some(),
        tunnel: false,
        outer_v6: v6,
        l3_off: off,
        l2_len: off,
    })
}
