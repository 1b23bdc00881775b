#!/usr/bin/env bash
# The whole test suite, on a fresh Debian machine or a developer's.
#
# The tests talk to real peers: a Mosquitto broker and GStreamer's RTSP
# server (plus ffmpeg for test clips, ffprobe and the benchmarks, and
# for the add-on's scripts the shellcheck linter). This script installs whichever of them is missing
# from Debian's packages; each test then starts its own broker or camera
# server on a free 127.0.0.1 port and stops it when it ends, so a test can
# also kill and restart its peer on purpose.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v mosquitto >/dev/null 2>&1 || missing+=(mosquitto)
command -v mosquitto_passwd >/dev/null 2>&1 || missing+=(mosquitto)
command -v mosquitto_sub >/dev/null 2>&1 || missing+=(mosquitto-clients)
# Debian's python3 (the tests run /usr/bin/python3): another python3 first on
# PATH may lack the GObject bindings.
if ! /usr/bin/python3 - <<'PY' >/dev/null 2>&1
import gi
gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import Gst, GstRtspServer
Gst.init(None)
assert Gst.ElementFactory.find("h264parse") and Gst.ElementFactory.find("rtph264pay")
# The live test cameras (tests/rtsp_server.py /cam-*): x264 and x265
# encoders, and the on-screen clock (pango, in gstreamer1.0-x on Debian).
for name in ("x264enc", "x265enc", "clockoverlay", "compositor", "videoconvert"):
    assert Gst.ElementFactory.find(name), name
PY
then
  missing+=(python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-tools gstreamer1.0-plugins-base
            gstreamer1.0-plugins-good gstreamer1.0-plugins-ugly gstreamer1.0-plugins-bad
            gstreamer1.0-x)
fi
# The blueprint tests render Home Assistant templates with Jinja2, the
# engine Home Assistant uses (tests/ha_template.py, run by /usr/bin/python3).
/usr/bin/python3 -c "import jinja2" >/dev/null 2>&1 || missing+=(python3-jinja2)
command -v ffmpeg >/dev/null 2>&1 || missing+=(ffmpeg)
# The picture decoder (the openh264 crate) builds its bundled C++ source.
command -v g++ >/dev/null 2>&1 || missing+=(g++)
# ...and, when nasm is there at build time, its x86 SIMD assembly (about a
# fifth less CPU per decoded frame, docs/performance.md); without it the
# build silently falls back to plain C. Cargo does not notice nasm arriving
# later: `cargo clean -p openh264-sys2` makes it rebuild with it.
command -v nasm >/dev/null 2>&1 || missing+=(nasm)
command -v shellcheck >/dev/null 2>&1 || missing+=(shellcheck)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
command -v jq >/dev/null 2>&1 || missing+=(jq)
command -v curl >/dev/null 2>&1 || missing+=(curl)
# The real Z-Wave JS driver and server (tests/zwave-js) run on Node.js.
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)

if [ "${#missing[@]}" -gt 0 ]; then
  echo "== installing test peers: ${missing[*]}"
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  export DEBIAN_FRONTEND=noninteractive
  "${sudo_cmd[@]}" apt-get update -q
  "${sudo_cmd[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# zwave-js and @zwave-js/server, exactly as package-lock.json pins them
# (npm warns that one dependency wants Node 22; Debian's Node 20 runs it).
# Skipped when node_modules was installed from this very lockfile.
if ! cmp -s tests/zwave-js/package-lock.json tests/zwave-js/node_modules/.installed-from-lock; then
  echo "== npm ci (tests/zwave-js)"
  (cd tests/zwave-js && npm ci --no-audit --no-fund \
     && cp package-lock.json node_modules/.installed-from-lock)
fi

echo "== cargo fmt --check"
cargo fmt --check
echo "== cargo clippy"
cargo clippy --all-targets -- -D warnings
echo "== cargo test"
cargo test "$@"
