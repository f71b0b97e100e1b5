//! Packet parsing: Ethernet (+802.1Q/802.1ad), IPv4, IPv6, TCP/UDP ports and GTP-U with its inner
//! IPv4/IPv6 packet. Reads only; every access is bounds-checked against `data_end`.

use aya_ebpf::programs::XdpContext;

pub const ETH_LEN: usize = 14;
pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_IPV6: u16 = 0x86dd;
pub const ETH_P_8021Q: u16 = 0x8100;
pub const ETH_P_8021AD: u16 = 0x88a8;
const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;
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

/// Hides `v`'s value from LLVM (at the cost of one register move), so that it cannot rewrite a
/// bounds check `p + n > end` into `p >= end` or fold `n` into `p` and read at a negative
/// offset: the verifier only accepts the plain form.
#[inline(always)]
pub fn opaque(mut v: usize) -> usize {
    unsafe { core::arch::asm!("{0} = {0}", inout(reg) v, options(pure, nomem, nostack)) };
    v
}

/// The frame's bounds, read once per parse; each header is checked once for its whole length.
pub struct Frame {
    pub start: usize,
    pub end: usize,
}

/// A header whose `N` bytes are known to be inside the frame.
pub struct Hdr<const N: usize>(*const u8);

impl<const N: usize> Hdr<N> {
    #[inline(always)]
    pub fn u8(&self, i: usize) -> u8 {
        unsafe { *self.0.add(i) }
    }

    // Headers are not aligned (IPv4 addresses sit at offset 26): the build enables
    // `allows-misaligned-mem-access`, so these are single loads, which the kernel permits on
    // packet data.
    #[inline(always)]
    pub fn be16(&self, i: usize) -> u16 {
        u16::from_be(unsafe { core::ptr::read_unaligned(self.0.add(i) as *const u16) })
    }

    /// Four bytes as a native word (i.e. still in network byte order).
    #[inline(always)]
    pub fn word(&self, i: usize) -> u32 {
        unsafe { core::ptr::read_unaligned(self.0.add(i) as *const u32) }
    }

    // Writes: packet data is writable in XDP.
    #[inline(always)]
    pub fn put_u8(&self, i: usize, v: u8) {
        unsafe { *(self.0.add(i) as *mut u8) = v }
    }

    #[inline(always)]
    pub fn put_be16(&self, i: usize, v: u16) {
        unsafe { core::ptr::write_unaligned(self.0.add(i) as *mut u16, v.to_be()) }
    }

    /// Four bytes as a native word (already in network byte order).
    #[inline(always)]
    pub fn put_word(&self, i: usize, v: u32) {
        unsafe { core::ptr::write_unaligned(self.0.add(i) as *mut u32, v) }
    }
}

impl Frame {
    #[inline(always)]
    pub fn hdr<const N: usize>(&self, off: usize) -> Option<Hdr<N>> {
        let p = opaque(self.start + opaque(off));
        if p + N > self.end {
            return None;
        }
        Some(Hdr(p as *const u8))
    }
}

/// `::ffff:0:0/96` in native words.
pub const V4_MAPPED: u32 = u32::from_ne_bytes([0, 0, 0xff, 0xff]);

/// The IP header at `off` apart from its addresses (which `parse_ip` writes in place): protocol,
/// DSCP/TC, and the L4 offset (None for non-first fragments, whose ports are not in the packet).
struct Ip {
    proto: u8,
    dscp: u8,
    tc: u8,
    v6: bool,
    l4_off: Option<usize>,
}

#[inline(always)]
fn parse_ip(f: &Frame, off: usize, v6: bool, src: &mut [u32; 4], dst: &mut [u32; 4]) -> Option<Ip> {
    if v6 {
        let h = f.hdr::<40>(off)?;
        let tc = (h.u8(0) << 4) | (h.u8(1) >> 4);
        *src = [h.word(8), h.word(12), h.word(16), h.word(20)];
        *dst = [h.word(24), h.word(28), h.word(32), h.word(36)];
        Some(Ip {
            proto: h.u8(6),
            dscp: tc >> 2,
            tc,
            v6: true,
            l4_off: Some(off + 40),
        })
    } else {
        let h = f.hdr::<20>(off)?;
        let vihl = h.u8(0);
        if vihl >> 4 != 4 {
            return None;
        }
        let ihl = ((vihl & 0x0f) as usize) * 4;
        if ihl < 20 {
            return None;
        }
        let tos = h.u8(1);
        *src = [0, 0, V4_MAPPED, h.word(12)];
        *dst = [0, 0, V4_MAPPED, h.word(16)];
        Some(Ip {
            proto: h.u8(9),
            dscp: tos >> 2,
            tc: tos,
            v6: false,
            l4_off: if h.be16(6) & 0x1fff == 0 {
                Some(off + ihl)
            } else {
                None
            },
        })
    }
}

/// Source and destination port of a TCP or UDP header.
#[inline(always)]
fn ports(f: &Frame, ip: &Ip) -> Option<(u16, u16)> {
    match (ip.proto, ip.l4_off) {
        (IPPROTO_TCP | IPPROTO_UDP, Some(off)) => {
            let h = f.hdr::<4>(off)?;
            Some((h.be16(0), h.be16(2)))
        }
        _ => None,
    }
}

/// Length of the GTP-U header at `off` (with its optional fields and extension headers) and the
/// TEID, or None when it is not a G-PDU.
#[inline(always)]
fn gtpu(f: &Frame, off: usize) -> Option<(usize, u32)> {
    let h = f.hdr::<8>(off)?;
    let flags = h.u8(0);
    if flags >> 5 != 1 || h.u8(1) != GTPU_G_PDU {
        return None;
    }
    let teid = h.word(4);
    if flags & 0x07 == 0 {
        return Some((8, teid));
    }
    let opt = f.hdr::<4>(off + 8)?;
    let mut len = 12;
    let mut next = opt.u8(3);
    if flags & 0x04 == 0 {
        return Some((len, teid));
    }
    for _ in 0..GTPU_MAX_EXT {
        if next == 0 {
            return Some((len, teid));
        }
        let units = f.hdr::<1>(off + len)?.u8(0) as usize;
        if units == 0 {
            return None;
        }
        len += units * 4;
        next = f.hdr::<1>(off + len - 1)?.u8(0);
    }
    if next == 0 {
        Some((len, teid))
    } else {
        None
    }
}

/// Four word stores: a plain `= [0; 4]` next to other zeroed fields becomes a call to the
/// byte-at-a-time `memset` of compiler-builtins.
#[inline(always)]
fn zero(words: &mut [u32; 4]) {
    for w in words.iter_mut() {
        unsafe { core::ptr::write_volatile(w, 0) };
    }
}

/// Parses the frame into `out`; false for frames that are not IPv4/IPv6 (those always pass).
/// Not inlined: its own stack frame keeps the caller's under the BPF limit. Writes in place
/// rather than returning the (large) `Pkt`, which would be copied.
#[inline(never)]
pub fn parse(ctx: &XdpContext, out: &mut Pkt) -> bool {
    parse_frame(ctx, out).is_some()
}

#[inline(always)]
fn parse_frame(ctx: &XdpContext, out: &mut Pkt) -> Option<()> {
    let (start, end) = bounds(ctx);
    let f = Frame { start, end };
    let eth = f.hdr::<ETH_LEN>(0)?;
    let mut off = ETH_LEN;
    let mut proto = eth.be16(12);
    for _ in 0..2 {
        if proto == ETH_P_8021Q || proto == ETH_P_8021AD {
            proto = f.hdr::<4>(off)?.be16(2);
            off += 4;
        }
    }
    let v6 = match proto {
        ETH_P_IP => false,
        ETH_P_IPV6 => true,
        _ => return None,
    };
    let outer = parse_ip(&f, off, v6, &mut out.src, &mut out.dst)?;
    let outer_ports = ports(&f, &outer);
    out.l2_len = off;
    out.outer_v6 = v6;
    if let (Some((sport, dport)), Some(l4)) = (outer_ports, outer.l4_off) {
        if outer.proto == IPPROTO_UDP && (dport == GTPU_PORT || sport == GTPU_PORT) {
            let gtp = l4 + 8;
            if let Some((glen, teid)) = gtpu(&f, gtp) {
                let inner_off = gtp + glen;
                let inner_v6 = match f.hdr::<1>(inner_off)?.u8(0) >> 4 {
                    4 => false,
                    6 => true,
                    _ => return None,
                };
                out.tsrc = out.src;
                out.tdst = out.dst;
                let inner = parse_ip(&f, inner_off, inner_v6, &mut out.src, &mut out.dst)?;
                let inner_ports = ports(&f, &inner);
                let (isport, idport) = inner_ports.unwrap_or((0, 0));
                out.teid = teid;
                out.sport = isport;
                out.dport = idport;
                out.tsport = sport;
                out.tdport = dport;
                out.proto = inner.proto;
                out.dscp = inner.dscp;
                out.tc = inner.tc;
                out.v6 = inner.v6;
                out.has_ports = inner_ports.is_some();
                out.tunnel = true;
                out.l3_off = inner_off;
                return Some(());
            }
        }
    }
    let (sport, dport) = outer_ports.unwrap_or((0, 0));
    zero(&mut out.tsrc);
    zero(&mut out.tdst);
    out.teid = 0;
    out.sport = sport;
    out.dport = dport;
    out.tsport = 0;
    out.tdport = 0;
    out.proto = outer.proto;
    out.dscp = outer.dscp;
    out.tc = outer.tc;
    out.v6 = outer.v6;
    out.has_ports = outer_ports.is_some();
    out.tunnel = false;
    out.l3_off = off;
    Some(())
}
