#!/usr/bin/env bash
# Regenerates the small media samples the tests and `conclave join` send.
# Needs ffmpeg with libvpx and libopus (Debian: apt-get install ffmpeg).
set -euo pipefail
cd "$(dirname "$0")"
# 3 s of a moving test pattern, VP8 at 30 fps, a key frame every second.
ffmpeg -y -loglevel error -f lavfi -i testsrc=size=320x240:rate=30 -t 3 \
  -c:v libvpx -b:v 200k -g 30 -keyint_min 30 -auto-alt-ref 0 video-320x240.ivf
# The same pattern at 1/2 and 1/4 of the size: the lower simulcast layers
# ("h" and "q") next to the full one ("f"); same frame rate and key frames.
ffmpeg -y -loglevel error -f lavfi -i testsrc=size=160x120:rate=30 -t 3 \
  -c:v libvpx -b:v 80k -g 30 -keyint_min 30 -auto-alt-ref 0 video-160x120.ivf
ffmpeg -y -loglevel error -f lavfi -i testsrc=size=80x60:rate=30 -t 3 \
  -c:v libvpx -b:v 30k -g 30 -keyint_min 30 -auto-alt-ref 0 video-80x60.ivf
# 3 s of a 440 Hz tone, Opus in Ogg, 20 ms frames.
ffmpeg -y -loglevel error -f lavfi -i sine=frequency=440:sample_rate=48000 -t 3 \
  -c:a libopus -b:a 32k -frame_duration 20 -application voip audio-440hz.ogg
