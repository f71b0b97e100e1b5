//! The three-namespace topology of the end-to-end tests: a "upf" namespace, the mep host
//! namespace (the XDP program on its UPF-facing veth) and an "app" namespace.
//!
//! ```text
//!  upf: u0 10.201.1.1 ──── h0 10.201.1.2  host (mep, XDP)  h1 10.201.2.1 ──── a0 10.201.2.2 :app
//!       u0 fd00:201:1::1      h0 fd00:201:1::2   (the UPF link also carries IPv6)
//! ```

use std::net::UdpSocket;
use std::time::Duration;

use super::*;

pub struct Topology {
    pub upf: Netns,
    pub host: Netns,
    pub app: Netns,
    pub a0_mac: [u8; 6],
}

pub fn topology() -> Topology {
    require_root();
    let (upf, host, app) = (
        Netns::new("mepupf"),
        Netns::new("mephost"),
        Netns::new("mepapp"),
    );
    host.ip(&[
        "link", "add", "h0", "type", "veth", "peer", "name", "u0", "netns", &upf.name,
    ]);
    host.ip(&[
        "link", "add", "h1", "type", "veth", "peer", "name", "a0", "netns", &app.name,
    ]);
    host.ip(&["addr", "add", "10.201.1.2/24", "dev", "h0"]);
    host.ip(&["addr", "add", "10.201.2.1/24", "dev", "h1"]);
    host.ip(&[
        "-6",
        "addr",
        "add",
        "fd00:201:1::2/64",
        "dev",
        "h0",
        "nodad",
    ]);
    host.ip(&["link", "set", "h0", "up"]);
    host.ip(&["link", "set", "h1", "up"]);
    host.sysctl("net/ipv4/conf/all/forwarding", "1");
    upf.ip(&["addr", "add", "10.201.1.1/24", "dev", "u0"]);
    upf.ip(&[
        "-6",
        "addr",
        "add",
        "fd00:201:1::1/64",
        "dev",
        "u0",
        "nodad",
    ]);
    upf.ip(&["link", "set", "u0", "up"]);
    upf.ip(&["route", "add", "10.201.2.0/24", "via", "10.201.1.2"]);
    app.ip(&["addr", "add", "10.201.2.2/24", "dev", "a0"]);
    app.ip(&["link", "set", "a0", "up"]);
    app.ip(&["route", "add", "default", "via", "10.201.2.1"]);
    let a0_mac = mac_of(&app, "a0");
    host.ip(&[
        "neigh",
        "replace",
        "10.201.2.2",
        "lladdr",
        &mac_str(a0_mac),
        "dev",
        "h1",
        "nud",
        "permanent",
    ]);
    Topology {
        upf,
        host,
        app,
        a0_mac,
    }
}

/// Binds a UDP socket in the app namespace.
pub fn listen(app: &Netns, port: u16) -> UdpSocket {
    app.run(move || {
        let s = UdpSocket::bind(("10.201.2.2", port)).expect("bind in app namespace");
        s.set_read_timeout(Some(Duration::from_millis(700)))
            .unwrap();
        s
    })
}

/// Sends one datagram from the upf namespace.
pub fn send_from_upf(upf: &Netns, dst: &'static str, port: u16, payload: Vec<u8>) {
    upf.run(move || {
        let s = UdpSocket::bind("10.201.1.1:0").expect("bind in upf namespace");
        s.send_to(&payload, (dst, port)).expect("send");
    });
}

/// Sends one datagram from the upf namespace's IPv6 address.
pub fn send_from_upf6(upf: &Netns, dst: &'static str, port: u16, payload: Vec<u8>) {
    upf.run(move || {
        let s = UdpSocket::bind("[fd00:201:1::1]:0").expect("bind in upf namespace");
        s.send_to(&payload, (dst, port)).expect("send");
    });
}

pub fn received(sock: &UdpSocket) -> Option<Vec<u8>> {
    let mut buf = [0u8; 2048];
    sock.recv_from(&mut buf)
        .ok()
        .map(|(n, _)| buf[..n].to_vec())
}
