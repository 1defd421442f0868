#!/usr/bin/env python3
"""An aiortc client for Conclave: an independent WebRTC implementation joining
a meeting through the same signaling as the native client.

It joins via the invite link, waits to be admitted, publishes one VP8 video
track (a moving test pattern, send-only), answers the server's offers, decodes
the video it receives and counts the decoded frames per remote participant.
After --duration seconds it prints a JSON report on standard output and exits 0
(non-zero on a signaling or setup failure).

Media may only go to 127.0.0.0/8: aioice's host-address lookup is limited to
127.0.0.1 and no STUN server is configured.
"""

import argparse
import asyncio
import json
import sys
import time
import urllib.parse

import aioice.ice
import websockets
from aiortc import (
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
    VideoStreamTrack,
)
from av import VideoFrame

# Only loopback host candidates (the LAN address must never be offered).
aioice.ice.get_host_addresses = lambda use_ipv4=True, use_ipv6=False: ["127.0.0.1"]

WIDTH, HEIGHT = 320, 240


def log(*args):
    print("[aiortc]", *args, file=sys.stderr, flush=True)


class PatternTrack(VideoStreamTrack):
    """aiortc's VideoStreamTrack timing (30 fps), with a vertical bar that
    moves across a grey background so every frame differs."""

    def __init__(self):
        super().__init__()
        self.count = 0

    async def recv(self):
        pts, time_base = await self.next_timestamp()
        frame = VideoFrame(WIDTH, HEIGHT, "yuv420p")
        x = (self.count * 4) % WIDTH
        for i, plane in enumerate(frame.planes):
            w = WIDTH if i == 0 else WIDTH // 2
            h = HEIGHT if i == 0 else HEIGHT // 2
            if i == 0:
                bx = x
                row = bytearray([96]) * plane.line_size
                row[bx : min(bx + 16, w)] = bytes([235]) * (min(bx + 16, w) - bx)
            else:
                row = bytearray([128]) * plane.line_size
            plane.update(bytes(row) * h)
        frame.pts = pts
        frame.time_base = time_base
        self.count += 1
        return frame


def check_candidates(sdp):
    """Refuses to signal any candidate that is not on 127.0.0.0/8."""
    for line in sdp.splitlines():
        if line.startswith("a=candidate:"):
            address = line.split()[4]
            if not address.startswith("127."):
                raise SystemExit(f"non-loopback ICE candidate offered: {line}")


def parse_invite(link):
    """http://host:port/j/<id>#p=<passcode> -> (ws url, passcode)."""
    u = urllib.parse.urlsplit(link)
    path = u.path.rstrip("/")
    if "/j/" not in path:
        raise SystemExit(f"not an invite link: {link}")
    meeting = path.rsplit("/j/", 1)[1]
    frag = urllib.parse.parse_qs(u.fragment)
    passcode = frag.get("p", [None])[0]
    scheme = "wss" if u.scheme == "https" else "ws"
    return f"{scheme}://{u.netloc}/api/v1/meetings/{meeting}/ws", passcode


class Client:
    def __init__(self, name, duration, patience):
        self.name = name
        self.duration = duration
        self.patience = patience
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.me = None
        # mid -> {"participant", "kind"} from the server's offers.
        self.remote_tracks = {}
        # participant id (str) -> decoded video frames.
        self.frames = {}
        self.frame_sizes = {}
        self.first_frame_at = {}
        self.sent_offer_at = None
        self.connected_at = None
        self.errors = []
        self.tasks = []
        self.pattern = PatternTrack()
        self.pc.on("track", self.on_track)
        self.pc.on("connectionstatechange", self.on_state)

    def on_state(self):
        state = self.pc.connectionState
        log("connection state", state)
        if state == "connected" and self.connected_at is None:
            self.connected_at = time.monotonic()

    def participant_of(self, track):
        for t in self.pc.getTransceivers():
            if t.receiver.track is track:
                info = self.remote_tracks.get(t.mid)
                if info:
                    return str(info["participant"]), t.mid
                return None, t.mid
        return None, None

    def on_track(self, track):
        if track.kind != "video":
            self.tasks.append(asyncio.ensure_future(self.drain(track)))
            return
        self.tasks.append(asyncio.ensure_future(self.count_frames(track)))

    async def drain(self, track):
        try:
            while True:
                await track.recv()
        except Exception:
            pass

    async def count_frames(self, track):
        who, mid = self.participant_of(track)
        log("video track", mid, "from participant", who)
        key = who if who is not None else f"mid:{mid}"
        self.frames.setdefault(key, 0)
        try:
            while True:
                frame = await track.recv()
                if key not in self.first_frame_at:
                    self.first_frame_at[key] = time.monotonic()
                self.frames[key] += 1
                self.frame_sizes[key] = [frame.width, frame.height]
        except Exception:
            pass

    async def send(self, ws, msg):
        await ws.send(json.dumps(msg))

    async def publish(self, ws):
        await self.send(ws, {"type": "set_media", "audio": False, "video": True})
        transceiver = self.pc.addTransceiver(self.pattern, direction="sendonly")
        vp8 = [
            c
            for c in RTCRtpSender.getCapabilities("video").codecs
            if c.mimeType.lower() == "video/vp8"
        ]
        transceiver.setCodecPreferences(vp8)
        await self.pc.setLocalDescription(await self.pc.createOffer())
        check_candidates(self.pc.localDescription.sdp)
        self.sent_offer_at = time.monotonic()
        await self.send(
            ws,
            {
                "type": "media_offer",
                "sdp": self.pc.localDescription.sdp,
                "tracks": [{"mid": transceiver.mid, "kind": "video"}],
            },
        )
        log("sent media_offer, mid", transceiver.mid)

    async def on_server_offer(self, ws, msg):
        for t in msg.get("tracks", []):
            self.remote_tracks[t["mid"]] = {
                "participant": t["participant"],
                "kind": t["kind"],
            }
        await self.pc.setRemoteDescription(
            RTCSessionDescription(sdp=msg["sdp"], type="offer")
        )
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        check_candidates(self.pc.localDescription.sdp)
        await self.send(ws, {"type": "media_answer", "sdp": self.pc.localDescription.sdp})
        log("answered server offer, tracks", msg.get("tracks"))

    async def run(self, link):
        url, passcode = parse_invite(link)
        async with websockets.connect(url, max_size=1 << 20) as ws:
            join = {"type": "join", "name": self.name}
            if passcode:
                join["passcode"] = passcode
            await self.send(ws, join)
            deadline = time.monotonic() + self.patience
            while True:
                raw = await asyncio.wait_for(ws.recv(), max(0.1, deadline - time.monotonic()))
                msg = json.loads(raw)
                kind = msg.get("type")
                if kind == "joined":
                    self.me = msg.get("you")
                    break
                if kind == "waiting":
                    log("in the waiting room")
                    continue
                if kind in ("error", "denied", "removed", "ended"):
                    raise SystemExit(f"not admitted: {msg}")
            log("admitted as", self.me)
            await self.publish(ws)
            end_at = time.monotonic() + self.duration
            # Signaling must be handled in order: offers and answers queue up.
            while True:
                left = end_at - time.monotonic()
                if left <= 0:
                    break
                try:
                    raw = await asyncio.wait_for(ws.recv(), left)
                except asyncio.TimeoutError:
                    break
                msg = json.loads(raw)
                kind = msg.get("type")
                if kind == "media_answer":
                    await self.pc.setRemoteDescription(
                        RTCSessionDescription(sdp=msg["sdp"], type="answer")
                    )
                    log("accepted server answer")
                elif kind == "media_offer":
                    await self.on_server_offer(ws, msg)
                elif kind == "error":
                    log("server error", msg)
                    self.errors.append(msg)
                elif kind in ("removed", "ended"):
                    self.errors.append(msg)
                    break
            try:
                await self.send(ws, {"type": "leave"})
            except Exception:
                pass
        stats = {}
        try:
            report = await self.pc.getStats()
            for s in report.values():
                if s.type == "outbound-rtp":
                    stats["packets_sent"] = stats.get("packets_sent", 0) + s.packetsSent
                elif s.type == "inbound-rtp" and s.kind == "video":
                    stats["video_packets_received"] = (
                        stats.get("video_packets_received", 0) + s.packetsReceived
                    )
        except Exception as e:  # stats are informative only
            log("getStats failed:", e)
        for t in self.tasks:
            t.cancel()
        await self.pc.close()
        return {
            "participant": self.me,
            "sent_frames": self.pattern.count,
            "received_video_frames": self.frames,
            "frame_sizes": self.frame_sizes,
            "connect_seconds": (
                round(self.connected_at - self.sent_offer_at, 3)
                if self.connected_at and self.sent_offer_at
                else None
            ),
            "remote_tracks": self.remote_tracks,
            "errors": self.errors,
            **stats,
        }


async def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("invite", help="invite link, http://host:port/j/<id>#p=<passcode>")
    ap.add_argument("--name", default="aiortc client")
    ap.add_argument("--duration", type=float, default=8.0, help="seconds to stay once admitted")
    ap.add_argument("--patience", type=float, default=30.0, help="seconds to wait for admission")
    args = ap.parse_args()
    client = Client(args.name, args.duration, args.patience)
    report = await client.run(args.invite)
    print(json.dumps(report, indent=2, sort_keys=True), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
