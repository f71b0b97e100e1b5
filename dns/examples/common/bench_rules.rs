//! The DNS rules every DNS benchmark serves (benches/dns.sh, benches/xdp-dns-veth.sh), so that
//! mep's servers, hickory's and the kernel's answer the same names as the zone files of Knot and
//! Unbound: rule i is `host<i>.<zone>` → 198.18.<i / 256>.<i % 256> (the benchmarking range,
//! RFC 2544), TTL 3600.

use std::net::Ipv4Addr;

use mep_rules::DnsRule;

pub fn bench_rules(count: u32, zone: &str) -> Vec<DnsRule> {
    (0..count)
        .map(|i| {
            let address = Ipv4Addr::new(198, 18, (i / 256) as u8, (i % 256) as u8);
            DnsRule::active(
                format!("rule-{i}"),
                format!("host{i}.{zone}"),
                address.into(),
                Some(3600),
            )
        })
        .collect()
}
