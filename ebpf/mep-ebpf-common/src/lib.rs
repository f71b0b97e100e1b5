//! The `#[repr(C)]` map keys and values shared by mep's XDP/TC programs and their loader.
//!
//! Every structure is free of implicit padding so that userspace can hand it to the kernel as
//! plain bytes. Addresses are kept as IPv6 in network byte order; IPv4 addresses are stored
//! IPv4-mapped (`::ffff:a.b.c.d`, prefix lengths + 96) so one key type serves both families.
#![no_std]

/// Counter slots, i.e. traffic rules the data plane can hold at once.
pub const MAX_RULES: u32 = 131_072;
/// Filter entries (a rule has one or more), shared by both generations: an entry is written once
/// into a free slot and never changed while a generation refers to it.
pub const MAX_ENTRIES: u32 = 131_072;
/// Candidate-list items per generation.
pub const MAX_LIST_ITEMS: u32 = 1 << 19;
/// Keys per index hash map of a generation (allocated as used, not up front).
pub const MAX_KEYS: u32 = 131_072;
/// Candidates checked per candidate list: the bound of the kernel's scan loop.
pub const MAX_SCAN: u32 = 16;
/// Distinct prefix lengths an address index looks up, longest first.
pub const MAX_LENS: usize = 8;
/// Values per filter field in one entry; longer lists are split over several entries.
pub const FIELD_MAX: usize = 4;
/// Interfaces the status map can describe.
pub const MAX_IFACES: u32 = 64;

/// Rule actions (`RuleAction::kind`).
pub const ACT_DROP: u32 = 1;
pub const ACT_PASS: u32 = 2;
pub const ACT_FORWARD: u32 = 3;
pub const ACT_FORWARD_DECAP: u32 = 4;
pub const ACT_DUPLICATE: u32 = 5;
pub const ACT_DUPLICATE_DECAP: u32 = 6;

/// `Entry::flags`: which fields the filter constrains.
pub const F_SRC: u32 = 1 << 0;
pub const F_DST: u32 = 1 << 1;
pub const F_SPORT: u32 = 1 << 2;
pub const F_DPORT: u32 = 1 << 3;
pub const F_PROTO: u32 = 1 << 4;
pub const F_TEID: u32 = 1 << 5;
pub const F_TSRC: u32 = 1 << 6;
pub const F_TDST: u32 = 1 << 7;
pub const F_TSPORT: u32 = 1 << 8;
pub const F_TDPORT: u32 = 1 << 9;
pub const F_DSCP: u32 = 1 << 10;
pub const F_TC: u32 = 1 << 11;
/// The filter names tunnel fields and so only matches GTP-U packets.
pub const F_TUNNEL: u32 = 1 << 12;

/// `GenConfig::dims`: which indexes hold entries.
pub const DIM_DST: u32 = 1 << 0;
pub const DIM_SRC: u32 = 1 << 1;
pub const DIM_TEID: u32 = 1 << 2;
pub const DIM_WILD: u32 = 1 << 3;

/// `DstIf::flags`.
pub const IF_DST_MAC: u32 = 1 << 0;
pub const IF_SRC_MAC: u32 = 1 << 1;
pub const IF_DST_IP: u32 = 1 << 2;
pub const IF_DST_IP6: u32 = 1 << 3;

/// `IfaceInfo::mode`.
pub const MODE_NATIVE: u32 = 1;
pub const MODE_GENERIC: u32 = 2;

/// Marks XDP metadata left for the TC duplicate program ("mepd").
pub const META_MAGIC: u32 = 0x6d65_7064;

/// An address prefix: `addr` already masked, both in network byte order.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Prefix {
    pub addr: [u32; 4],
    pub mask: [u32; 4],
}

/// An inclusive port range in host byte order.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ports {
    pub lo: u16,
    pub hi: u16,
}

/// One traffic filter (or a part of one whose lists were too long), checked field by field, with
/// its rule's action (so that a match costs no further lookup).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Entry {
    /// The rule's counter slot.
    pub slot: u32,
    pub flags: u32,
    /// Bitmap of IP protocol numbers.
    pub proto: [u64; 4],
    pub n_src: u8,
    pub n_dst: u8,
    pub n_sport: u8,
    pub n_dport: u8,
    pub n_teid: u8,
    pub n_tsrc: u8,
    pub n_tdst: u8,
    pub n_tsport: u8,
    pub n_tdport: u8,
    /// DSCP, 0..=63.
    pub dscp: u8,
    /// IPv6 traffic class.
    pub tc: u8,
    pub _pad: u8,
    pub _pad2: u32,
    pub src: [Prefix; FIELD_MAX],
    pub dst: [Prefix; FIELD_MAX],
    pub tsrc: [Prefix; FIELD_MAX],
    pub tdst: [Prefix; FIELD_MAX],
    pub sport: [Ports; FIELD_MAX],
    pub dport: [Ports; FIELD_MAX],
    pub tsport: [Ports; FIELD_MAX],
    pub tdport: [Ports; FIELD_MAX],
    /// TEIDs in network byte order.
    pub teid: [u32; FIELD_MAX],
    pub action: RuleAction,
}

/// A destination interface: where FORWARD and DUPLICATE send packets.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DstIf {
    pub flags: u32,
    /// Next hop for the FIB lookup, network byte order (IPv4 in word 0 unless `IF_DST_IP6`).
    pub dst_ip: [u32; 4],
    pub dst_mac: [u8; 6],
    pub src_mac: [u8; 6],
}

/// What a rule does with a matching packet.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RuleAction {
    pub kind: u32,
    pub n_if: u32,
    pub ifs: [DstIf; 2],
}

/// Key of the address indexes: a masked address and its (IPv4-mapped) prefix length.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct AddrKey {
    pub len: u32,
    pub addr: [u32; 4],
}

/// One candidate of a list: an entry and its rule's rank (lower ranks win). Ranks follow rule
/// priority, so a list sorted by rank can stop at the first match.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ListItem {
    pub rank: u64,
    pub entry: u32,
    pub _pad: u32,
}

impl ListItem {
    pub const fn new(rank: u64, entry: u32) -> Self {
        Self {
            rank,
            entry,
            _pad: 0,
        }
    }
}

/// A run of items in a generation's candidate-list array, sorted by rank.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ListRef {
    pub start: u32,
    pub len: u32,
}

/// Per-generation settings: which indexes to consult and how.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GenConfig {
    pub dims: u32,
    pub n_dst_lens: u32,
    pub n_src_lens: u32,
    pub _pad: u32,
    /// Entries that no index holds; checked for every packet.
    pub wild: ListRef,
    /// Prefix lengths present in the indexes, longest first (IPv4-mapped lengths).
    pub dst_lens: [u32; MAX_LENS],
    pub src_lens: [u32; MAX_LENS],
    /// The network-order masks of those lengths (precomputed: no branches in the kernel).
    pub dst_masks: [[u32; 4]; MAX_LENS],
    pub src_masks: [[u32; 4]; MAX_LENS],
}

/// Packets and bytes a rule matched (per CPU in the kernel).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counter {
    pub packets: u64,
    pub bytes: u64,
}

/// Who owns a rule slot, for `mep xdp status` (NUL-padded, truncated ids).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RuleId {
    pub used: u32,
    pub app: [u8; 64],
    pub rule: [u8; 64],
}

impl Default for RuleId {
    fn default() -> Self {
        Self {
            used: 0,
            app: [0; 64],
            rule: [0; 64],
        }
    }
}

/// An interface the program is attached to, for `mep xdp status`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IfaceInfo {
    pub ifindex: u32,
    pub mode: u32,
    pub name: [u8; 16],
}

/// Metadata the XDP program leaves in front of a packet to be duplicated.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DupMeta {
    pub magic: u32,
    /// The matched entry (it holds the counter slot and the action).
    pub entry: u32,
    /// Bytes between the outer L2 header and the inner IP header (0 when not tunnelled).
    pub strip: u32,
    /// `DUP_INNER_V6` when the inner packet is IPv6.
    pub flags: u32,
}

/// `DupMeta::flags`: the inner packet is IPv6.
pub const DUP_INNER_V6: u32 = 1;

/// Marks XDP metadata left for the TC program to forward a packet ("mepf").
pub const META_FWD_MAGIC: u32 = 0x6d65_7066;

/// Metadata the XDP program leaves in front of a packet it cannot redirect itself: a target that
/// takes no XDP frames (a veth whose peer runs no XDP program, in native mode), or a next hop
/// whose MAC is not resolved yet. The TC program redirects it as an skb.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FwdMeta {
    pub magic: u32,
    /// The matched entry (its action names the next hop for `FWD_RESOLVE`).
    pub entry: u32,
    /// The egress interface the FIB chose.
    pub ifindex: u32,
    /// `FWD_RESOLVE` when the MACs below are not known.
    pub flags: u32,
    pub dmac: [u8; 6],
    pub smac: [u8; 6],
}

/// `FwdMeta::flags`: the TC program resolves the next hop (`bpf_redirect_neigh`).
pub const FWD_RESOLVE: u32 = 1;

/// Slots of `MEP_DELIVERY`: how matched FORWARD packets left, or why they did not.
pub const DELIVERY_XDP_REDIRECT: u32 = 0;
pub const DELIVERY_TC_REDIRECT: u32 = 1;
/// The FIB has no route to the next hop: the packet goes on to the kernel stack unsteered.
pub const DELIVERY_NO_ROUTE: u32 = 2;
/// The TC program could not redirect (the packet goes on to the stack).
pub const DELIVERY_TC_FAILED: u32 = 3;
pub const DELIVERY_SLOTS: u32 = 4;

/// Longest question name, in wire form, that the kernel answers; longer names go to userspace.
pub const DNS_NAME_MAX: usize = 128;
/// Bytes of answer records one kernel answer carries (whole A and AAAA records, which are 16
/// and 28 bytes long: always a multiple of 4).
pub const DNS_RECORDS_MAX: usize = 448;
/// Room for the records in a `DnsRecords`: a power of two, so that a length masked for the
/// verifier (`((len - 1) & (CAP - 1)) + 1`, never zero) is within the value.
pub const DNS_RECORDS_CAP: usize = 512;
/// Kernel answers (a name and a type each) the map holds.
pub const MAX_DNS_ANSWERS: u32 = 131_072;
/// Addresses the DNS service is reached at.
pub const MAX_DNS_ADDRS: u32 = 64;

/// `MEP_DNS_ANSWERS` key: the lower-case wire name, zero-padded, and the query type. The name
/// comes first so that the program, which keeps the key 8-byte aligned, writes it in words.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DnsKey {
    pub name: [u8; DNS_NAME_MAX],
    pub qtype: u16,
}

/// Wire names up to this long are held in `MEP_DNS_ANSWERS_SHORT`: a lookup hashes and
/// compares the key whole, and most names are short.
pub const DNS_SHORT_NAME_MAX: usize = 32;

/// `MEP_DNS_ANSWERS_SHORT` key: as [`DnsKey`], for a name of at most [`DNS_SHORT_NAME_MAX`]
/// wire bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DnsShortKey {
    pub name: [u8; DNS_SHORT_NAME_MAX],
    pub qtype: u16,
}

/// `MEP_DNS_ANSWERS` value: the answer records of one local answer as the userspace server
/// writes them (owner names compressed to the question), and their checksum contribution.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DnsRecords {
    /// Bytes of `data` in use (a multiple of 4).
    pub len: u16,
    /// ANCOUNT.
    pub count: u16,
    /// The one's-complement sum of `data[..len]` as 16-bit big-endian words, folded.
    pub sum: u32,
    pub data: [u8; DNS_RECORDS_CAP],
}

/// `MEP_DNS_CFG`: whether the kernel answers, on which UDP port, and the EDNS payload size the
/// userspace server announces.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DnsConfig {
    pub enabled: u32,
    /// Host byte order.
    pub port: u16,
    pub udp_payload: u16,
}

/// Slots of `MEP_DNS_STATS`: queries the kernel answered, and queries for the DNS service it
/// left to userspace.
pub const DNS_ANSWERED: u32 = 0;
pub const DNS_PASSED: u32 = 1;
pub const DNS_STAT_SLOTS: u32 = 2;

/// Room for one frame of the benchmark load generator (`mep-bench-gun`): a DNS query over IPv4
/// with a name of up to 70 wire bytes. A power of two, for the same masking as
/// [`DNS_RECORDS_CAP`].
pub const GUN_FRAME_CAP: usize = 128;
/// Frames the load generator cycles through.
pub const GUN_FRAMES_MAX: u32 = 4096;

/// `MEP_GUN_FRAMES` value: one complete frame, checksums included, as the generator sends it.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GunFrame {
    /// Bytes of `data` in use, 1..=`GUN_FRAME_CAP`.
    pub len: u32,
    pub data: [u8; GUN_FRAME_CAP],
}

/// `MEP_GUN_CFG`: the veth the generator sends its frames out of (and counts answers on), how
/// many of `MEP_GUN_FRAMES` it cycles through, the server's UDP port and the ports its queries
/// come from (host byte order), and its pace.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GunConfig {
    pub ifindex: u32,
    pub frames: u32,
    pub server_port: u16,
    pub port_base: u16,
    pub port_count: u16,
    pub _pad: u16,
    /// Queries sent back to back when a burst is due, as a NIC's interrupt coalescing would
    /// hand them to the server together.
    pub burst: u32,
    pub _pad2: u32,
    /// On average one query every this many ns (0: one per run).
    pub interval_ns: u64,
    /// No queries from this `CLOCK_MONOTONIC` time on.
    pub stop_ns: u64,
}

/// `MEP_GUN_STATE`, per CPU: when the next burst is due, the queries sent, the next frame, and
/// the queries of the current burst still to send.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GunState {
    pub next_ns: u64,
    pub sent: u64,
    pub cursor: u32,
    pub burst_left: u32,
}

#[cfg(feature = "user")]
mod pod {
    use super::*;

    // SAFETY: plain `#[repr(C)]` data without padding or pointers.
    unsafe impl aya::Pod for Entry {}
    unsafe impl aya::Pod for GunFrame {}
    unsafe impl aya::Pod for GunConfig {}
    unsafe impl aya::Pod for GunState {}
    unsafe impl aya::Pod for RuleAction {}
    unsafe impl aya::Pod for AddrKey {}
    unsafe impl aya::Pod for ListRef {}
    unsafe impl aya::Pod for ListItem {}
    unsafe impl aya::Pod for GenConfig {}
    unsafe impl aya::Pod for Counter {}
    unsafe impl aya::Pod for RuleId {}
    unsafe impl aya::Pod for IfaceInfo {}
    unsafe impl aya::Pod for FwdMeta {}
    unsafe impl aya::Pod for DnsKey {}
    unsafe impl aya::Pod for DnsShortKey {}
    unsafe impl aya::Pod for DnsRecords {}
    unsafe impl aya::Pod for DnsConfig {}
}
