#!/usr/bin/env python3
"""A real RTSP server for doorwarden's tests: GStreamer's gst-rtsp-server on
127.0.0.1, serving pre-encoded H.264 clips pushed in real time (no live
encoding, so a dozen streams cost next to nothing) and, for the picture
checks, pictures encoded live by x264 (320x180 at 15 fps, constant QP 26,
one keyframe a second). The clips loop, so to a picture check they are a
replayed recording; the /cam-* mounts are the live sources and the faults.

Mounts (all shared: every client of a mount sees the same stream):
  /live    the moving clip; its source can be paused or switched to the still
           picture from stdin
  /still   the still picture (encoder running, picture unchanged)
  /auth    the moving clip behind HTTP Basic authentication (on <auth port>)
  /<name>  any extra clip given with --mount name=path (H.264, or H.265 when
           the file name ends in .h265 / .hevc)
  /cam-live        live: a moving ball over faint sensor noise, a clock
  /cam-quiet       live, a still scene: a static view, faint noise, a clock
  /cam-still       a hung sensor, encoder running: the same picture forever
  /cam-still-clock a hung sensor behind a ticking on-screen clock
  /cam-black       no picture: black (a covered lens)
  /cam-main        a camera's main stream: the /cam-live scene; `pause
                   cam-main` stops its frames (the session stays up)
  /cam-sub         the same camera's substream for the picture checks: the
                   same scene, encoded by its own pipeline; `still cam-sub`
                   hangs its picture, `moving cam-sub` brings it back,
                   `pause cam-sub` stops its frames
  /cam-still-cbr   /cam-still with x264 at a bitrate target (500 kbit/s CBR):
                   the encoder keeps refining the hung sensor's picture, so
                   P-frames are never empty (docs/performance.md)
  /cam-still-clock-cbr  /cam-still-clock with that encoder: the clock makes
                   every keyframe new, so not even the replay rule sees it
  /cam-quiet-cbr   /cam-quiet with that same encoder: a live quiet scene
  /cam-live265, /cam-quiet265, /cam-still265, /cam-still-clock265,
  /cam-black265, /cam-switch265
                   the same scenes in H.265 (only if x265enc is installed)
  /cam-live-bframes /cam-live from x264 with B-frames (2 between references)
  /cam-live-sdp    /cam-live whose parameter sets (SPS, PPS) travel only in
                   the SDP (sprop-parameter-sets), never with a frame, as
                   some cameras send them
  /cam-live-sdp-first  the same, but the first keyframe a client gets
                   carries them too (x264's habit), the later ones not
  /cam-live265-sdp the H.265 /cam-live-sdp (VPS, SPS, PPS; only if x265enc
                   is installed)

Usage:
  rtsp_server.py [--port 0] [--clips assets/clips] [--user U --password P]
                 [--mount name=path.h264 ...] [--fps 15]
User and password also come from RTSP_TEST_USER / RTSP_TEST_PASSWORD.

Prints "READY <port> <auth port>" on stdout once it listens: /auth is served
on a second port (see below why). Reads commands on stdin, one
per line, and answers "OK <command>" once applied ("ERR ..." otherwise):
  pause [mount]    stop sending frames; the RTSP session stays up
  resume [mount]   send again
  still [mount]    switch the mount to the still picture (clips, /cam-switch
                   and /cam-sub)
  moving [mount]   switch it back to the moving clip (live scene)
  quit             exit
The mount defaults to "live". End of stdin or SIGTERM/SIGKILL stops the
server, which is how a test makes the camera vanish.
"""

import argparse
import os
import sys
import threading
import time

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def nal_units(data):
    """Yields (start, body) offsets of each NAL unit in an Annex B stream;
    `start` includes the start code (3 or 4 bytes)."""
    i = 0
    while True:
        j = data.find(b"\x00\x00\x01", i)
        if j < 0:
            return
        # Keep a 4-byte start code's leading zero with its NAL.
        yield (j - 1 if j > 0 and data[j - 1] == 0 else j), j + 3
        i = j + 3


def codec_of(path):
    return "h265" if path.endswith((".h265", ".hevc", ".265")) else "h264"


def access_units(path):
    """Splits an Annex B H.264 or H.265 file into access units (frames).

    A new unit starts at a parameter set, delimiter or prefix SEI that
    follows a picture, or at a picture slice that says it is the first slice
    of its picture.
    """
    codec = codec_of(path)
    with open(path, "rb") as f:
        data = f.read()
    starts = list(nal_units(data))
    units = []
    current = []
    has_picture = False
    for k, (s, body) in enumerate(starts):
        end = starts[k + 1][0] if k + 1 < len(starts) else len(data)
        if body + 2 >= end:
            continue
        if codec == "h265":
            kind = (data[body] >> 1) & 0x3F
            is_picture = kind <= 31
            opens_unit = kind in (32, 33, 34, 35, 39) or 41 <= kind <= 44
            # first_slice_segment_in_pic_flag: first bit after the 2-byte header.
            first_slice = is_picture and data[body + 2] & 0x80
        else:
            kind = data[body] & 0x1F
            is_picture = kind in (1, 5)
            opens_unit = kind in (6, 7, 8, 9) or 14 <= kind <= 18
            # first_mb_in_slice == 0 is coded as a single 1 bit.
            first_slice = is_picture and data[body + 1] & 0x80
        if has_picture and (opens_unit or first_slice):
            units.append(b"".join(current))
            current, has_picture = [], False
        current.append(data[s:end])
        has_picture = has_picture or is_picture
    if current:
        units.append(b"".join(current))
    if not units:
        raise SystemExit(f"no access units in {path}")
    return units


class Feed:
    """The frames of one mount, pushed in real time into whichever appsrc
    the mount's (shared) media currently has."""

    def __init__(self, name, clips, first, fps):
        self.name = name
        self.clips = clips  # clip name -> list of access units
        self.clip = first
        self.index = 0
        self.fps = fps
        self.paused = False
        self.sources = []
        self.lock = threading.Lock()
        threading.Thread(target=self.run, name=f"feed-{name}", daemon=True).start()

    def attach(self, appsrc):
        with self.lock:
            self.sources.append(appsrc)

    def detach(self, appsrc):
        with self.lock:
            if appsrc in self.sources:
                self.sources.remove(appsrc)

    def command(self, word):
        with self.lock:
            if word == "pause":
                self.paused = True
            elif word == "resume":
                self.paused = False
            elif word in self.clips:
                if self.clip != word:
                    # Start the new clip at its first (key)frame.
                    self.clip, self.index = word, 0
            else:
                return False
        return True

    def run(self):
        period = 1.0 / self.fps
        next_at = time.monotonic()
        while True:
            next_at += period
            delay = next_at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            else:
                # Fell behind (a busy machine): skip ahead instead of bursting.
                next_at = time.monotonic()
            with self.lock:
                if self.paused:
                    continue
                units = self.clips[self.clip]
                unit = units[self.index % len(units)]
                self.index = (self.index + 1) % len(units)
                sources = list(self.sources)
            for src in sources:
                buf = Gst.Buffer.new_wrapped(unit)
                buf.duration = int(Gst.SECOND / self.fps)
                src.emit("push-buffer", buf)


class Factory(GstRtspServer.RTSPMediaFactory):
    def __init__(self, feed, fps, codec="h264"):
        super().__init__()
        self.feed = feed
        self.set_shared(True)
        self.set_launch(
            "( appsrc name=src is-live=true format=time do-timestamp=true "
            f"caps=video/x-{codec},stream-format=byte-stream,alignment=au,framerate={fps}/1 "
            "max-buffers=30 leaky-type=downstream "
            f"! {codec}parse ! rtp{codec}pay name=pay0 pt=96 config-interval=-1 )"
        )
        self.connect("media-configure", self.on_configure)

    def on_configure(self, _factory, media):
        appsrc = media.get_element().get_child_by_name("src")
        self.feed.attach(appsrc)
        media.connect("unprepared", lambda _m: self.feed.detach(appsrc))


SIZE = "video/x-raw,width=320,height=180,framerate=15/1"
# Sensor noise: GStreamer's snow pattern blended in faintly (3 %, a few luma
# levels), enough to survive the encoder in a still scene as a real
# sensor's does.
NOISE = f"videotestsrc is-live=true pattern=snow ! {SIZE} ! c."
CLOCK = "clockoverlay time-format=%H:%M:%S font-desc=Sans,10"
SCENES = {
    "cam-live": f"compositor name=c sink_1::alpha=0.03 ! {SIZE} ! {CLOCK} ! {{enc}} "
    f"videotestsrc is-live=true pattern=ball motion=sweep ! {SIZE} ! c. {NOISE}",
    "cam-quiet": f"compositor name=c sink_1::alpha=0.03 ! {SIZE} ! {CLOCK} ! {{enc}} "
    f"videotestsrc is-live=true pattern=pinwheel ! {SIZE} ! c. {NOISE}",
    "cam-still": f"videotestsrc is-live=true pattern=pinwheel ! {SIZE} ! {{enc}}",
    "cam-still-clock": f"videotestsrc is-live=true pattern=pinwheel ! {SIZE} ! {CLOCK} ! {{enc}}",
    "cam-black": f"videotestsrc is-live=true pattern=black ! {SIZE} ! {{enc}}",
    # /cam-live until told `still cam-switch`: then the sensor hangs (the
    # encoder goes on); `moving cam-switch` brings the live scene back.
    "cam-switch": f"input-selector name=sel ! {{enc}} "
    f"compositor name=c sink_1::alpha=0.03 ! {SIZE} ! {CLOCK} ! sel. "
    f"videotestsrc is-live=true pattern=ball motion=sweep ! {SIZE} ! c. {NOISE} "
    f"videotestsrc is-live=true pattern=pinwheel ! {SIZE} ! sel.",
    # A camera with two streams (picture_url): two pipelines, as a camera's
    # two encoders, showing the same synthetic scene (the ball's sweep and
    # the clock follow the running time, so both show the same moment). The
    # main stream is not decoded by doorwarden, so it stays at the tests'
    # small size; what matters is that it can stall on its own.
    "cam-main": f"compositor name=c sink_1::alpha=0.03 ! {SIZE} ! {CLOCK} ! valve name=valve "
    f"! {{enc}} videotestsrc is-live=true pattern=ball motion=sweep ! {SIZE} ! c. {NOISE}",
    "cam-sub": f"input-selector name=sel ! valve name=valve ! {{enc}} "
    f"compositor name=c sink_1::alpha=0.03 ! {SIZE} ! {CLOCK} ! sel. "
    f"videotestsrc is-live=true pattern=ball motion=sweep ! {SIZE} ! c. {NOISE} "
    f"videotestsrc is-live=true pattern=pinwheel ! {SIZE} ! sel.",
}


def encoder(codec, rate="quant", bframes=0):
    """Live encoder into the RTP payloader. Constant QP: fed an unchanging
    picture, x264 then codes every P-frame as skipped, as a camera's
    encoder does in VBR. With a bitrate target (`rate="cbr"`) it keeps
    refining a still picture after every keyframe instead: P-frames that
    change the decoded picture by ever smaller amounts (see
    docs/performance.md). `bframes`: B-frames between reference frames
    (x264 at constant QP only; zerolatency alone allows none)."""
    if codec == "h265":
        enc = "x265enc tune=zerolatency speed-preset=ultrafast qp=26 key-int-max=15"
    elif rate == "cbr":
        enc = ("x264enc tune=zerolatency speed-preset=ultrafast pass=cbr bitrate=500 "
               "key-int-max=15")
    else:
        # zerolatency turns B-frames off whatever `bframes` says.
        tune = "" if bframes else "tune=zerolatency "
        enc = (f"x264enc {tune}speed-preset={'veryfast' if bframes else 'ultrafast'} pass=quant quantizer=26 "
               f"key-int-max=15 bframes={bframes} byte-stream=true")
        if bframes:
            # The payloader also accepts Constrained Baseline, which has no
            # B-frames; x264 would settle on it.
            enc += " ! video/x-h264,profile=main"
    return (f"videoconvert ! video/x-raw,format=I420 ! {enc} ! {codec}parse "
            f"! rtp{codec}pay name=pay0 pt=96 config-interval=-1")


class LiveFactory(GstRtspServer.RTSPMediaFactory):
    def __init__(self, scene, codec="h264", rate="quant", bframes=0):
        super().__init__()
        self.set_shared(True)
        self.set_launch("( " + SCENES[scene].format(enc=encoder(codec, rate, bframes)) + " )")
        self.selectors = []
        self.valves = []
        self.still = False
        self.paused = False
        self.lock = threading.Lock()
        self.connect("media-configure", self.on_configure)

    def on_configure(self, _factory, media):
        valve = media.get_element().get_child_by_name("valve")
        if valve is not None:
            with self.lock:
                self.valves.append(valve)
                valve.set_property("drop", self.paused)
        sel = media.get_element().get_child_by_name("sel")
        if sel is None:
            return
        with self.lock:
            self.selectors.append(sel)
        self.select(sel)

    def select(self, sel):
        # sink_0 is the live scene, sink_1 the hung sensor's picture.
        pad = sel.get_static_pad("sink_1" if self.still else "sink_0")
        if pad is not None:
            sel.set_property("active-pad", pad)

    def command(self, word):
        if word in ("pause", "resume") and self.valves:
            # The valve drops buffers before the encoder: no frames, the
            # RTSP session stays up (a stalled camera).
            with self.lock:
                self.paused = word == "pause"
                for valve in self.valves:
                    valve.set_property("drop", self.paused)
            return True
        if word not in ("still", "moving") or not self.selectors:
            return False
        with self.lock:
            self.still = word == "still"
            for sel in self.selectors:
                self.select(sel)
        return True


class OutOfBandFeed:
    """A live scene whose parameter sets reach clients only in the SDP.

    x264 and x265 repeat them before every keyframe whatever the caps ask,
    so the encoder's output (length-prefixed, with the sets in its
    codec_data) goes through here: each frame is pushed to the mount's
    appsrc without its SPS/PPS (and VPS) NAL units, and the payloader
    (config-interval=0) takes the sets from the caps into the SDP only.
    With `keep_first` each client's first keyframe keeps them. The encoder
    starts with the first client and then runs for the server's life."""

    def __init__(self, scene, codec, keep_first):
        self.scene = scene
        self.codec = codec
        self.keep_first = keep_first
        self.pipeline = None
        self.caps = None
        self.ready = threading.Event()
        self.sources = {}  # appsrc -> whether it was sent a keyframe yet
        self.lock = threading.Lock()

    def start(self):
        with self.lock:
            if self.pipeline is not None:
                return
            if self.codec == "h265":
                enc = "x265enc tune=zerolatency speed-preset=ultrafast qp=26 key-int-max=15"
                fmt = "hvc1"
            else:
                enc = ("x264enc tune=zerolatency speed-preset=ultrafast pass=quant quantizer=26 "
                       "key-int-max=15")
                fmt = "avc"
            out = (f"videoconvert ! video/x-raw,format=I420 ! {enc} ! {self.codec}parse "
                   f"! video/x-{self.codec},stream-format={fmt},alignment=au "
                   "! appsink name=out emit-signals=true sync=false max-buffers=30 drop=true")
            self.pipeline = Gst.parse_launch(SCENES[self.scene].format(enc=out))
            self.pipeline.get_by_name("out").connect("new-sample", self.on_sample)
            self.pipeline.set_state(Gst.State.PLAYING)

    def parameter_set(self, nal):
        if self.codec == "h265":
            return (nal[0] >> 1) & 0x3F in (32, 33, 34)
        return nal[0] & 0x1F in (7, 8)

    def strip(self, data):
        """The frame without its parameter sets (4-byte NAL lengths, as
        both encoders' codec_data say)."""
        kept, i = [], 0
        while i + 4 < len(data):
            end = i + 4 + int.from_bytes(data[i:i + 4], "big")
            if not self.parameter_set(data[i + 4:end]):
                kept.append(data[i:end])
            i = end
        return b"".join(kept)

    def on_sample(self, sink):
        sample = sink.emit("pull-sample")
        if sample is None:
            return Gst.FlowReturn.OK
        if self.caps is None:
            self.caps = sample.get_caps()
            self.ready.set()
        buf = sample.get_buffer()
        data = buf.extract_dup(0, buf.get_size())
        keyframe = not buf.has_flags(Gst.BufferFlags.DELTA_UNIT)
        stripped = self.strip(data)
        with self.lock:
            sources = list(self.sources.items())
            if keyframe:
                for src, _ in sources:
                    self.sources[src] = True
        for src, had_keyframe in sources:
            whole = keyframe and self.keep_first and not had_keyframe
            out = Gst.Buffer.new_wrapped(data if whole else stripped)
            out.duration = buf.duration
            src.emit("push-buffer", out)
        return Gst.FlowReturn.OK

    def attach(self, appsrc):
        self.start()
        if not self.ready.wait(20):
            print("ERR encoder gave no caps", file=sys.stderr, flush=True)
            return
        appsrc.set_property("caps", self.caps)
        with self.lock:
            self.sources[appsrc] = False

    def detach(self, appsrc):
        with self.lock:
            self.sources.pop(appsrc, None)


class OutOfBandFactory(GstRtspServer.RTSPMediaFactory):
    def __init__(self, feed):
        super().__init__()
        self.feed = feed
        self.set_shared(True)
        self.set_launch(
            "( appsrc name=src is-live=true format=time do-timestamp=true "
            "max-buffers=30 leaky-type=downstream "
            f"! rtp{feed.codec}pay name=pay0 pt=96 config-interval=0 )"
        )
        self.connect("media-configure", self.on_configure)

    def on_configure(self, _factory, media):
        appsrc = media.get_element().get_child_by_name("src")
        self.feed.attach(appsrc)
        media.connect("unprepared", lambda _m: self.feed.detach(appsrc))


def permissions(*roles):
    perms = GstRtspServer.RTSPPermissions()
    for role in roles:
        perms.add_role_from_structure(
            Gst.Structure.new_from_string(
                f"{role}, media.factory.access=(boolean)true, "
                "media.factory.construct=(boolean)true"
            )
        )
    return perms


def listener(port):
    srv = GstRtspServer.RTSPServer()
    srv.set_address("127.0.0.1")
    srv.set_service(str(port))
    return srv


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--clips", default=os.path.join(here, "..", "assets", "clips"))
    ap.add_argument("--user", default=os.environ.get("RTSP_TEST_USER", "courier"))
    ap.add_argument("--password", default=os.environ.get("RTSP_TEST_PASSWORD", "letmein"))
    ap.add_argument("--mount", action="append", default=[])
    ap.add_argument("--fps", type=int, default=15)
    args = ap.parse_args()

    Gst.init(None)
    moving = access_units(os.path.join(args.clips, "moving.h264"))
    still = access_units(os.path.join(args.clips, "still.h264"))
    both = {"moving": moving, "still": still}

    # Two servers: gst-rtsp-server answers 404 (not 401) to an anonymous
    # client of a mount it may not see whenever anonymous clients exist at
    # all, so the password-protected mount lives on a server of its own that
    # admits nobody without credentials.
    server = listener(args.port)
    auth_server = listener(0)
    auth = GstRtspServer.RTSPAuth()
    user = GstRtspServer.RTSPToken()
    user.set_string("media.factory.role", "user")
    auth.add_basic(GstRtspServer.RTSPAuth.make_basic(args.user, args.password), user)
    auth_server.set_auth(auth)

    feeds = {}

    def add(srv, name, clips, first, codec="h264"):
        feed = Feed(name, clips, first, args.fps)
        factory = Factory(feed, args.fps, codec)
        if srv is auth_server:
            factory.set_permissions(permissions("user"))
        srv.get_mount_points().add_factory("/" + name, factory)
        feeds[name] = feed

    add(server, "live", both, "moving")
    add(server, "still", {"still": still}, "still")
    add(auth_server, "auth", {"moving": moving}, "moving")
    mounts = server.get_mount_points()
    for scene in SCENES:
        factory = LiveFactory(scene)
        mounts.add_factory("/" + scene, factory)
        if scene in ("cam-switch", "cam-main", "cam-sub"):
            feeds[scene] = factory
    for scene in ("cam-still", "cam-still-clock", "cam-quiet"):
        mounts.add_factory(f"/{scene}-cbr", LiveFactory(scene, rate="cbr"))
    mounts.add_factory("/cam-live-bframes", LiveFactory("cam-live", bframes=2))
    mounts.add_factory("/cam-live-sdp", OutOfBandFactory(OutOfBandFeed("cam-live", "h264", False)))
    mounts.add_factory("/cam-live-sdp-first",
                       OutOfBandFactory(OutOfBandFeed("cam-live", "h264", True)))
    if Gst.ElementFactory.find("x265enc"):
        mounts.add_factory("/cam-live265-sdp",
                           OutOfBandFactory(OutOfBandFeed("cam-live", "h265", False)))
        for scene in ("cam-live", "cam-quiet", "cam-still", "cam-still-clock", "cam-black",
                      "cam-switch"):
            factory = LiveFactory(scene, "h265")
            mounts.add_factory(f"/{scene}265", factory)
            if scene == "cam-switch":
                feeds["cam-switch265"] = factory
    for spec in args.mount:
        name, _, path = spec.partition("=")
        add(server, name, {"moving": access_units(path)}, "moving", codec_of(path))

    for srv in (server, auth_server):
        if srv.attach(None) == 0:
            print("ERR cannot listen", flush=True)
            sys.exit(1)
    loop = GLib.MainLoop()
    print(f"READY {server.get_bound_port()} {auth_server.get_bound_port()}", flush=True)

    def control():
        for line in sys.stdin:
            words = line.split()
            if not words:
                continue
            if words[0] == "quit":
                break
            target = words[1] if len(words) > 1 else "live"
            feed = feeds.get(target)
            if feed is not None and feed.command(words[0]):
                print(f"OK {line.strip()}", flush=True)
            else:
                print(f"ERR {line.strip()}", flush=True)
        GLib.idle_add(loop.quit)

    threading.Thread(target=control, name="control", daemon=True).start()
    loop.run()


if __name__ == "__main__":
    main()
