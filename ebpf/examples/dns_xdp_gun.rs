//! The load generator of `CLIENT=gun benches/xdp-dns-veth.sh` (`common/gun.rs`): sends DNS
//! queries for COUNT names (`host<i>.ZONE`, A) to DST_IP port 53 out of the veth IFACE at RATE
//! queries/s (0: as fast as it can) for SECONDS, from the kernel on the calling CPU, and counts
//! the answers. Prints `sent <queries> replies <answers>`.
//! Usage: dns_xdp_gun IFACE PEER_MAC SRC_IP DST_IP COUNT ZONE RATE SECONDS   (as root)

#[path = "common/gun.rs"]
mod gun;
use gun::Gun;

fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().collect();
    let [_, iface, peer_mac, src, dst, count, zone, rate, seconds] = args.as_slice() else {
        return Err(
            "usage: dns_xdp_gun IFACE PEER_MAC SRC_IP DST_IP COUNT ZONE RATE SECONDS".into(),
        );
    };
    let own_mac = std::fs::read_to_string(format!("/sys/class/net/{iface}/address"))
        .map_err(|e| format!("{iface}'s address: {e}"))?;
    let fired = Gun {
        iface,
        own_mac: parse_mac(own_mac.trim())?,
        peer_mac: parse_mac(peer_mac)?,
        src: src.parse().map_err(|e| format!("SRC_IP: {e}"))?,
        dst: dst.parse().map_err(|e| format!("DST_IP: {e}"))?,
        port: 53,
        count: count.parse().map_err(|e| format!("COUNT: {e}"))?,
        zone,
        rate: rate.parse().map_err(|e| format!("RATE: {e}"))?,
        seconds: seconds.parse().map_err(|e| format!("SECONDS: {e}"))?,
    }
    .fire()?;
    println!("sent {} replies {}", fired.sent, fired.replies);
    Ok(())
}

fn parse_mac(text: &str) -> Result<[u8; 6], String> {
    let bytes: Vec<u8> = text
        .split(':')
        .map(|b| u8::from_str_radix(b, 16))
        .collect::<Result<_, _>>()
        .map_err(|e| format!("MAC {text}: {e}"))?;
    bytes
        .try_into()
        .map_err(|_| format!("MAC {text}: not 6 bytes"))
}
