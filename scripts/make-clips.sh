#!/bin/sh
# Regenerates the bundled H.264 clips served by the simulated RTSP camera
# (crates/doorwarden-sim/src/camera.rs) and by the GStreamer test server.
# Run once; the outputs are committed so neither the tests nor
# `doorwarden demo` need ffmpeg.
#
# Both clips: 640x360, 15 fps, one IDR per second (GOP 15), no B-frames,
# SPS/PPS repeated before every IDR, no SEI, raw Annex B byte stream.
set -eu

out="$(dirname "$0")/../assets/clips"
mkdir -p "$out"

# Constant quality (-crf), not a bitrate: with a bitrate target x264 spends
# the spare bits refining a still picture, and its P-frames stay kilobytes.
# The SEI x264 writes (its settings, as text) is stripped: it is not video.
common="-an -c:v libx264 -profile:v baseline -level 3.0 -pix_fmt yuv420p -preset medium -bf 0 -g 15 -keyint_min 15 -sc_threshold 0 -crf 30 -x264-params repeat-headers=1:sliced-threads=0 -bsf:v filter_units=remove_types=6 -f h264"

# A moving test pattern: testsrc2 scrolls and counts on its own.
# shellcheck disable=SC2086 # $common is a word list on purpose
ffmpeg -hide_banner -loglevel error -y \
  -f lavfi -i "testsrc2=size=640x360:rate=15:duration=4" \
  $common "$out/moving.h264"

# An unchanging picture: one frame of the same pattern, held. The encoder
# keeps running, so frames keep coming as near-empty P-frames (the "hung
# sensor, encoder still running" case).
# shellcheck disable=SC2086
ffmpeg -hide_banner -loglevel error -y \
  -f lavfi -i "testsrc2=size=640x360:rate=15:duration=1" \
  -vf "select=eq(n\,0),loop=loop=59:size=1:start=0,setpts=N/15/TB" -r 15 \
  $common -frames:v 60 "$out/still.h264"
