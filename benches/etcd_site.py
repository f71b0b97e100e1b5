#!/usr/bin/env python3
"""Cross-node visibility of mep on etcd (benches/etcd-site.sh runs it).

visibility: write on one node at a fixed rate, and measure how long until another node shows the
change: a service registered on node 1 discovered on node 3 (GET /services?ser_name=), and a DNS
rule changed over Mm5 on node 2 answered by node 1's DNS server (a UDP query).
"""

import http.client
import json
import socket
import struct
import sys
import time
import urllib.parse


def service(name):
    return json.dumps({
        "serName": name, "version": "1", "state": "ACTIVE", "serializer": "JSON",
        "transportInfo": {"id": "t", "name": "REST", "type": "REST_HTTP", "protocol": "HTTP",
                          "version": "2.0", "endpoint": {"uris": ["http://10.0.0.1/x"]},
                          "security": {}}})


class Http:
    """One keep-alive connection."""

    def __init__(self, base):
        u = urllib.parse.urlsplit(base)
        self.path = u.path
        self.conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10)

    def request(self, method, path, body=None):
        headers = {"content-type": "application/json"} if body else {}
        self.conn.request(method, self.path + path, body=body, headers=headers)
        r = self.conn.getresponse()
        return r.status, r.read()


def dns_query(sock, addr, name, qid):
    q = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    for label in name.split("."):
        q += bytes([len(label)]) + label.encode()
    q += b"\x00" + struct.pack(">HH", 1, 1)
    sock.sendto(q, addr)
    try:
        data, _ = sock.recvfrom(2048)
    except socket.timeout:
        return None
    # The last four bytes of a one-A answer are its address.
    if len(data) >= len(q) + 16 and struct.unpack(">H", data[6:8])[0] >= 1:
        return socket.inet_ntoa(data[-4:])
    return None


def percentile(sorted_values, p):
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * p))]


def visibility(args):
    mp1_write, mp1_read, mm5_write, dns_read, changes, rate = args
    changes, rate = int(changes), float(rate)
    writer, reader = Http(mp1_write), Http(mp1_read)
    period = 1.0 / rate
    discovery = []
    start = time.monotonic()
    for i in range(changes):
        name = f"vis-{int(start)}-{i}"
        t0 = time.monotonic()
        status, _ = writer.request("POST", "/applications/bench-vis/services", service(name))
        assert status == 201, status
        while True:
            status, body = reader.request("GET", f"/services?ser_name={name}")
            if status == 200 and body != b"[]":
                break
        discovery.append(time.monotonic() - t0)
        next_at = start + (i + 1) * period
        time.sleep(max(0.0, next_at - time.monotonic()))
    cfg = Http(mm5_write)
    host, port = dns_read.rsplit(":", 1)
    addr = (host, int(port))
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(2)
    dns = []
    start = time.monotonic()
    method = "POST"
    for i in range(changes):
        ip = f"198.51.{(i // 250) % 250}.{i % 250 + 1}"
        body = json.dumps({"appName": "vis", "appDNSRule": [{
            "dnsRuleId": "d1", "domainName": "vis.edge.example", "ipAddressType": "IP_V4",
            "ipAddress": ip, "ttl": 30, "state": "ACTIVE"}]})
        t0 = time.monotonic()
        status, _ = cfg.request(method, "/mepcfg/app_lcm/v1/applications/bench-dns/appd_configuration", body)
        assert 200 <= status < 300, status
        method = "PUT"
        qid = 0
        while True:
            qid = (qid + 1) & 0xFFFF
            if dns_query(sock, addr, "vis.edge.example", qid) == ip:
                break
        dns.append(time.monotonic() - t0)
        next_at = start + (i + 1) * period
        time.sleep(max(0.0, next_at - time.monotonic()))
    for label, values in (("discovery", discovery), ("dns", dns)):
        values.sort()
        print(f"visibility {label}: n={len(values)} p50={percentile(values, 0.5) * 1000:.1f} ms "
              f"p99={percentile(values, 0.99) * 1000:.1f} ms max={values[-1] * 1000:.1f} ms "
              "(write answered and seen on the other node)")


if __name__ == "__main__":
    visibility(sys.argv[1:])
