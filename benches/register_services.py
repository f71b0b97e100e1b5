#!/usr/bin/env python3
"""Register APPS x PER_APP services on a plain-HTTP Mp1 endpoint, concurrently.

Service i (0 <= i < APPS*PER_APP) belongs to app-{i // PER_APP:04d} and is named
svc-{i % NAMES}, so every name has APPS*PER_APP/NAMES instances from different apps.
Progress and errors go to stderr; stdout gets one line: "<ok> <failed> <seconds> <per_second>".
Standard library only.
"""
import argparse
import http.client
import json
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

ROOT = "/mep/mec_service_mgmt/v1"


def body(name):
    return json.dumps({
        "serName": name, "version": "1.0", "state": "ACTIVE", "serializer": "JSON",
        "transportInfo": {"id": "t1", "name": "REST", "type": "REST_HTTP", "protocol": "HTTP",
                          "version": "2.0", "endpoint": {"uris": ["http://10.1.1.1:8080/x"]},
                          "security": {}},
    }).encode()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("base", help="e.g. http://127.0.0.1:8443")
    p.add_argument("--apps", type=int, default=1000)
    p.add_argument("--per-app", type=int, default=10)
    p.add_argument("--names", type=int, default=1000)
    p.add_argument("--concurrency", type=int, default=32)
    a = p.parse_args()
    u = urlsplit(a.base)
    local = threading.local()
    statuses, samples, lock = Counter(), [], threading.Lock()

    def request(method, path, payload=None):
        for attempt in (1, 2):  # one retry on a dropped keep-alive connection
            conn = getattr(local, "conn", None)
            if conn is None:
                conn = local.conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
            try:
                headers = {"Content-Type": "application/json"} if payload else {}
                conn.request(method, path, body=payload, headers=headers)
                r = conn.getresponse()
                return r.status, r.read()
            except (http.client.HTTPException, OSError):
                conn.close()
                local.conn = None
                if attempt == 2:
                    raise

    def register(i):
        path = f"{ROOT}/applications/app-{i // a.per_app:04d}/services"
        try:
            status, data = request("POST", path, body(f"svc-{i % a.names}"))
        except Exception as e:  # noqa: BLE001 - report, do not abort the run
            status, data = f"exception {type(e).__name__}", str(e).encode()
        with lock:
            statuses[status] += 1
            if status != 201 and len(samples) < 5:
                samples.append(f"{path} -> {status}: {data[:300]!r}")

    total = a.apps * a.per_app
    t0 = time.monotonic()
    with ThreadPoolExecutor(a.concurrency) as pool:
        list(pool.map(register, range(total), chunksize=64))
    elapsed = time.monotonic() - t0
    ok = statuses.get(201, 0)
    checks_ok = True
    print(f"registration statuses: {dict(statuses)}", file=sys.stderr)
    for s in samples:
        print(f"  unexpected: {s}", file=sys.stderr)

    # Sanity check of what the benchmark will query.
    for path, want in ((f"{ROOT}/services?ser_name=svc-7", total // a.names),
                       (f"{ROOT}/applications/app-0007/services", a.per_app)):
        status, data = request("GET", path)
        got = len(json.loads(data)) if status == 200 else None
        if status != 200 or got != want:
            print(f"CHECK FAILED: GET {path} -> {status}, {got} items (want 200, {want})",
                  file=sys.stderr)
            checks_ok = False
    print(f"{ok} {total - ok} {elapsed:.3f} {total / elapsed:.1f}")
    return 0 if ok == total and checks_ok else 1


if __name__ == "__main__":
    sys.exit(main())
