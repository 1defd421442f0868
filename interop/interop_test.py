#!/usr/bin/env python3
"""Interop test: an aiortc client and a native client exchange video through a
Conclave server.

Starts target/debug/conclave on loopback with a fresh data directory, creates
an account and a meeting without waiting room over the HTTP API, runs
interop/aiortc_client.py and `conclave join --send-ivf ... --stats` at the same
time, and checks that WebRTC works between the two stacks in both directions.

Every Conclave meeting is end-to-end encrypted and aiortc speaks no SFrame, so
the check is at the transport: aiortc receives the native client's video
packets (SFrame ciphertext its decoder cannot show), and the native client
receives every video frame aiortc sends whole and refuses to accept any of them
as media, since they are not encrypted under the group's keys. Meant to be run by interop/run (inside a loopback-only network
namespace, with the venv's python); exits non-zero on failure.
"""

import http.cookiejar
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.environ.get("CONCLAVE_BIN", os.path.join(ROOT, "target", "debug", "conclave"))
SAMPLE = os.path.join(ROOT, "samples", "video-320x240.ivf")
DURATION = int(os.environ.get("INTEROP_DURATION", "8"))
MIN_FRAMES = 30
PASSWORD = "interop-password-123"


def log(*args):
    print("[interop]", *args, file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Api:
    def __init__(self, base):
        self.base = base
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
        )

    def post(self, path, body):
        req = urllib.request.Request(
            self.base + path,
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with self.opener.open(req, timeout=10) as r:
            return r.status, json.loads(r.read() or b"null")


def wait_for_server(base, proc, within=20):
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(base + "/api/v1/openapi.json", timeout=1):
                return
        except Exception:
            time.sleep(0.1)
    raise SystemExit("server did not come up")


def main():
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="conclave-interop-") as data:
        subprocess.run(
            [BIN, "admin", "create-user", "--password-stdin", "--data-dir", data, "host"],
            input=PASSWORD.encode(),
            check=True,
            stdout=subprocess.DEVNULL,
        )
        server_log = open(os.path.join(data, "server.log"), "w")
        server = subprocess.Popen(
            [
                BIN, "serve",
                "--listen", f"127.0.0.1:{port}",
                "--media-port", "0",
                "--public-url", base,
                "--public-ip", "127.0.0.1",
                "--data-dir", data,
            ],
            stdout=server_log,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_for_server(base, server)
            api = Api(base)
            status, _ = api.post("/api/v1/auth/signin", {"username": "host", "password": PASSWORD})
            assert status == 200, status
            status, meeting = api.post(
                "/api/v1/meetings",
                {"title": "interop", "settings": {"waiting_room": False}},
            )
            assert status == 201, (status, meeting)
            link = meeting["invite_link"]
            log("meeting", link)

            aio = subprocess.Popen(
                [sys.executable, os.path.join(ROOT, "interop", "aiortc_client.py"),
                 link, "--duration", str(DURATION + 1)],
                stdout=subprocess.PIPE,
            )
            time.sleep(float(os.environ.get("INTEROP_STAGGER", "0.5")))
            native = subprocess.Popen(
                [BIN, "join", link, "--name", "Native", "--send-ivf", SAMPLE,
                 "--duration", str(DURATION), "--patience", "10", "--stats"],
                stdout=subprocess.PIPE,
            )
            try:
                n_out, _ = native.communicate(timeout=DURATION + 60)
                a_out, _ = aio.communicate(timeout=DURATION + 60)
            finally:
                for p in (native, aio):
                    if p.poll() is None:
                        p.kill()
                        p.wait()
            if native.returncode != 0 or aio.returncode != 0:
                raise SystemExit(
                    f"client failed: native {native.returncode}, aiortc {aio.returncode}"
                )
            n = json.loads(n_out)
            a = json.loads(a_out)
        finally:
            server.terminate()
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
            server_log.close()
            with open(os.path.join(data, "server.log")) as f:
                server_output = f.read()
            if os.environ.get("INTEROP_SERVER_LOG") or sys.exc_info()[0] is not None:
                sys.stderr.write(server_output[-20000:])

    native_id, aio_id = n["participant"], a["participant"]
    from_aio = [
        t for t in n["received"].values()
        if t["participant"] == aio_id and t["kind"] == "video"
    ]
    native_got = sum(t["frames"] + t["undecryptable_frames"] for t in from_aio)
    native_accepted = sum(t["frames"] for t in from_aio)
    aio_got = a.get("video_packets_received", 0)
    summary = {
        "aiortc_video_packets_from_native": aio_got,
        "aiortc_decoded_from_native": a["received_video_frames"].get(str(native_id), 0),
        "native_received_from_aiortc": native_got,
        "native_accepted_plaintext_frames": native_accepted,
        "aiortc_sent_frames": a["sent_frames"],
        "native_sent_frames": n["sent_frames"],
        "aiortc_connect_seconds": a["connect_seconds"],
        "aiortc_frame_sizes": a["frame_sizes"],
        "native_keyframe_requests": n["keyframe_requests"],
        "duration_seconds": DURATION,
    }
    print(json.dumps(summary, indent=2), flush=True)
    ok = True
    if aio_got < MIN_FRAMES:
        log(f"FAIL: aiortc received {aio_got} video packets from the native client (< {MIN_FRAMES})")
        log("aiortc report:", json.dumps(a))
        ok = False
    if native_got < MIN_FRAMES:
        log(f"FAIL: native client received {native_got} video frames from aiortc (< {MIN_FRAMES})")
        log("native report:", json.dumps(n))
        ok = False
    if native_accepted != 0:
        log(f"FAIL: the native client took {native_accepted} unencrypted frames as media")
        ok = False
    if not ok:
        sys.stderr.write(server_output[-20000:])
        sys.exit(1)
    log("PASS")


if __name__ == "__main__":
    main()
