//! The maps. The indexes and candidate lists exist twice (generation 0 and 1); `ACTIVE` names the
//! generation packets use, so userspace updates the other one and flips `ACTIVE` in one write: a
//! packet reads the generation once and never sees half of an update. The entries the lists name
//! are shared: an entry is immutable while any generation refers to it.

use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, PerCpuArray},
};
use mep_ebpf_common::{
    AddrKey, Counter, DnsConfig, DnsKey, DnsRecords, DnsShortKey, Entry, GenConfig, IfaceInfo,
    ListItem, ListRef, RuleId, DELIVERY_SLOTS, DNS_NAME_MAX, DNS_SHORT_NAME_MAX, DNS_STAT_SLOTS,
    MAX_DNS_ADDRS, MAX_DNS_ANSWERS, MAX_ENTRIES, MAX_IFACES, MAX_KEYS, MAX_LIST_ITEMS, MAX_RULES,
};

#[map(name = "MEP_ACTIVE")]
pub static ACTIVE: Array<u32> = Array::with_max_entries(1, 0);

#[map(name = "MEP_GEN_CFG")]
pub static GEN_CFG: Array<GenConfig> = Array::with_max_entries(2, 0);

#[map(name = "MEP_COUNTERS")]
pub static COUNTERS: PerCpuArray<Counter> = PerCpuArray::with_max_entries(MAX_RULES, 0);

/// Slot owners, read only by `mep xdp status`.
#[map(name = "MEP_RULE_IDS")]
pub static RULE_IDS: Array<RuleId> = Array::with_max_entries(MAX_RULES, 0);

/// Attached interfaces, read only by `mep xdp status`.
#[map(name = "MEP_IFACES")]
pub static IFACES: Array<IfaceInfo> = Array::with_max_entries(MAX_IFACES, 0);

/// The interfaces mep's XDP program runs on (ifindex to attach mode): a native redirect into one
/// of them arrives; into anything else it goes through TC.
#[map(name = "MEP_XDP_TARGETS")]
pub static XDP_TARGETS: HashMap<u32, u32> = HashMap::with_max_entries(MAX_IFACES, 0);

/// How matched FORWARD packets left, per `DELIVERY_*` slot.
#[map(name = "MEP_DELIVERY")]
pub static DELIVERY: PerCpuArray<Counter> = PerCpuArray::with_max_entries(DELIVERY_SLOTS, 0);

/// Counts one packet of `bytes` in delivery slot `slot`.
#[inline(always)]
pub fn count_delivery(slot: u32, bytes: u64) {
    if let Some(c) = DELIVERY.get_ptr_mut(slot) {
        let c: &mut Counter = unsafe { &mut *c };
        c.packets += 1;
        c.bytes += bytes;
    }
}

/// Kernel DNS answers: off until userspace enables them.
#[map(name = "MEP_DNS_CFG")]
pub static DNS_CFG: Array<DnsConfig> = Array::with_max_entries(1, 0);

/// The addresses (IPv4-mapped words) of the DNS service the kernel answers for.
#[map(name = "MEP_DNS_ADDRS")]
pub static DNS_ADDRS: HashMap<[u32; 4], u32> = HashMap::with_max_entries(MAX_DNS_ADDRS, 0);

/// The local answers of ACTIVE DNS rules, by query type and name; each update replaces one
/// answer whole, so a query sees the old answer or the new one.
#[map(name = "MEP_DNS_ANSWERS")]
pub static DNS_ANSWERS: HashMap<DnsKey, DnsRecords> =
    HashMap::with_max_entries(MAX_DNS_ANSWERS, NO_PREALLOC);

/// The same for names of at most `DNS_SHORT_NAME_MAX` wire bytes, which are not in
/// `MEP_DNS_ANSWERS`: their lookups hash and compare 34 bytes of key, not 130.
#[map(name = "MEP_DNS_ANSWERS_SHORT")]
pub static DNS_ANSWERS_SHORT: HashMap<DnsShortKey, DnsRecords> =
    HashMap::with_max_entries(MAX_DNS_ANSWERS, NO_PREALLOC);

/// Per-CPU room for the lookup key of the query being answered. Kept out of the stack on
/// purpose: the verifier tracks stack bytes one by one, so a key on the stack would leave one
/// state per name length to verify the rest of the program with.
#[map(name = "MEP_DNS_SCRATCH")]
pub static DNS_SCRATCH: PerCpuArray<DnsScratch> = PerCpuArray::with_max_entries(1, 0);

#[repr(C)]
pub struct DnsScratch {
    /// The question's first bytes as sent, loaded in one helper call and read in words.
    pub question: [u64; DNS_NAME_MAX / 8],
    /// The key of a short name; 8-byte aligned, so that its name is written in words.
    pub short_key: DnsShortKey,
    pub _pad0: [u8; 6],
    /// The key of a longer name, aligned the same way.
    pub key: DnsKey,
    pub _pad: u16,
    /// Length of the question name, read back as a value the verifier does not know.
    pub name_len: u32,
    /// The headers and the question while the frame grows at its head (at most 214 bytes).
    pub head: [u8; 256],
}

const _: () = assert!(core::mem::offset_of!(DnsScratch, short_key) % 8 == 0);
const _: () = assert!(core::mem::offset_of!(DnsScratch, key) % 8 == 0);
const _: () = assert!(DNS_SHORT_NAME_MAX % 8 == 0);

/// Queries answered and passed, per `DNS_*` slot.
#[map(name = "MEP_DNS_STATS")]
pub static DNS_STATS: PerCpuArray<Counter> = PerCpuArray::with_max_entries(DNS_STAT_SLOTS, 0);

/// Index hash maps allocate their elements as keys are added instead of up front.
const NO_PREALLOC: u32 = 1;

/// The filter entries of both generations. Userspace writes an entry into a slot no generation
/// refers to, and frees it only after neither does.
#[map(name = "MEP_ENTRIES")]
pub static ENTRIES: Array<Entry> = Array::with_max_entries(MAX_ENTRIES, 0);

macro_rules! generation {
    ($lists:ident, $dst:ident, $src:ident, $teid:ident,
     $lists_n:literal, $dst_n:literal, $src_n:literal, $teid_n:literal) => {
        #[map(name = $lists_n)]
        pub static $lists: Array<ListItem> = Array::with_max_entries(MAX_LIST_ITEMS, 0);
        #[map(name = $dst_n)]
        pub static $dst: HashMap<AddrKey, ListRef> =
            HashMap::with_max_entries(MAX_KEYS, NO_PREALLOC);
        #[map(name = $src_n)]
        pub static $src: HashMap<AddrKey, ListRef> =
            HashMap::with_max_entries(MAX_KEYS, NO_PREALLOC);
        #[map(name = $teid_n)]
        pub static $teid: HashMap<u32, ListRef> = HashMap::with_max_entries(MAX_KEYS, NO_PREALLOC);
    };
}

generation!(
    LISTS_0,
    DST_0,
    SRC_0,
    TEID_0,
    "MEP_LISTS_0",
    "MEP_DST_0",
    "MEP_SRC_0",
    "MEP_TEID_0"
);
generation!(
    LISTS_1,
    DST_1,
    SRC_1,
    TEID_1,
    "MEP_LISTS_1",
    "MEP_DST_1",
    "MEP_SRC_1",
    "MEP_TEID_1"
);

// Each generation gets its own copy of the code that uses these (a const generic `G`), so that
// every lookup site names one map: the verifier then inlines the lookup. A site that could see
// either generation's map is "poisoned" and pays a full helper call.

#[inline(always)]
pub fn lists<const G: u32>() -> &'static Array<ListItem> {
    if G == 0 {
        &LISTS_0
    } else {
        &LISTS_1
    }
}

#[inline(always)]
pub fn dst<const G: u32>() -> &'static HashMap<AddrKey, ListRef> {
    if G == 0 {
        &DST_0
    } else {
        &DST_1
    }
}

#[inline(always)]
pub fn src<const G: u32>() -> &'static HashMap<AddrKey, ListRef> {
    if G == 0 {
        &SRC_0
    } else {
        &SRC_1
    }
}

#[inline(always)]
pub fn teid<const G: u32>() -> &'static HashMap<u32, ListRef> {
    if G == 0 {
        &TEID_0
    } else {
        &TEID_1
    }
}
