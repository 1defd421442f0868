#!/usr/bin/env python3
"""Load benchmark: K publishers x M subscribers of native clients through one
Conclave server, for a fixed time. A benchmark, not a test: it reports, it
asserts nothing.

Every publisher sends timestamped synthetic media (`conclave join --synthetic`:
video of 130 one-packet frames a second, ~1.1 Mbit/s, and audio of 50 small
frames a second); every client receives everyone else. Reported:

- forwarded packets per second (one synthetic frame is one RTP packet);
- server CPU seconds per 1,000 forwarded packets (utime+stime of the server
  process only, from /proc);
- loss (frames missing between the first and last frame counter a receiver saw);
- one-way latency p50/p99 (send time stamped in the payload; all on this host);
- server memory per participant (RSS growth over the idle server / participants).

Usage: bench/load.py [--publishers 2] [--subscribers 4] [--seconds 10]
                     [--binary target/release/conclave] [--json FILE]
All traffic stays on 127.0.0.1.
"""

import argparse
import http.cookiejar
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

PASSWORD = "benchmark password 1"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # utime and stime are fields 14 and 15 (1-based); after the ')' split the
    # first field here is field 3.
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_bytes(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--publishers", type=int, default=2)
    ap.add_argument("--subscribers", type=int, default=4)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--binary", default="target/release/conclave")
    ap.add_argument("--json", help="also write the figures to this file")
    args = ap.parse_args()

    data = tempfile.mkdtemp(prefix="conclave-bench-")
    subprocess.run(
        [args.binary, "admin", "create-user", "bench", "--password-stdin", "--data-dir", data],
        input=PASSWORD.encode(), check=True, stdout=subprocess.DEVNULL)
    port = free_port()
    server = subprocess.Popen(
        [args.binary, "serve", "--listen", f"127.0.0.1:{port}", "--media-port", "0",
         "--data-dir", data],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={**os.environ, "RUST_LOG": "warn"})
    base = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            urllib.request.urlopen(base + "/healthz", timeout=1)
            break
        except OSError:
            time.sleep(0.05)
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))

    def post(path, body):
        req = urllib.request.Request(base + path, json.dumps(body).encode(),
                                     {"content-type": "application/json"})
        return json.load(opener.open(req))

    post("/api/v1/auth/signin", {"username": "bench", "password": PASSWORD})
    meeting = post("/api/v1/meetings", {"settings": {"waiting_room": False,
                                                      "max_participants": 1000}})
    link = meeting["invite_link"]

    time.sleep(0.5)
    rss_idle = rss_bytes(server.pid)
    cpu_before = cpu_seconds(server.pid)
    clients = []
    # Publishers stay a little longer so subscribers see the whole window.
    for i in range(args.publishers):
        clients.append(subprocess.Popen(
            [args.binary, "join", link, "--name", f"pub{i}", "--synthetic",
             "--duration", str(args.seconds + 2), "--stats"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL))
    for i in range(args.subscribers):
        clients.append(subprocess.Popen(
            [args.binary, "join", link, "--name", f"sub{i}",
             "--duration", str(args.seconds), "--stats"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL))
    started = time.monotonic()
    time.sleep(args.seconds / 2)
    rss_busy = rss_bytes(server.pid)
    reports = []
    for c in clients:
        out, _ = c.communicate(timeout=args.seconds + 60)
        reports.append(json.loads(out) if out.strip() else {})
    elapsed = time.monotonic() - started
    cpu = cpu_seconds(server.pid) - cpu_before
    server.terminate()
    server.wait(timeout=20)

    received = expected = 0
    p50s, p99s = [], []
    for r in reports:
        for track in r.get("received", {}).values():
            received += track.get("frames", 0)
            if track.get("expected_frames"):
                expected += track["expected_frames"]
            lat = track.get("latency_us")
            if lat:
                p50s.append(lat["p50"])
                p99s.append(lat["p99"])
    participants = args.publishers + args.subscribers
    figures = {
        "publishers": args.publishers,
        "subscribers": args.subscribers,
        "seconds": round(elapsed, 2),
        "forwarded_packets": received,
        "forwarded_packets_per_s": round(received / elapsed, 1),
        "server_cpu_s": round(cpu, 3),
        "server_cpu_s_per_1000_packets": round(cpu / (received / 1000), 4) if received else None,
        "loss": round(1 - received / expected, 5) if expected else None,
        "latency_p50_us_median": statistics.median(p50s) if p50s else None,
        "latency_p99_us_max": max(p99s) if p99s else None,
        "server_rss_idle_mib": round(rss_idle / 2**20, 1),
        "server_rss_per_participant_kib": round((rss_busy - rss_idle) / participants / 1024, 1),
    }
    width = max(len(k) for k in figures)
    for k, v in figures.items():
        print(f"{k:<{width}}  {v}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(figures, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
