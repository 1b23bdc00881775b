#!/usr/bin/env python3
"""Writes the seed inputs of the fuzz targets from the project's own samples.

Seeds give libFuzzer real messages to mutate from the first second, so a
60 s run spends its time past the JSON and YAML syntax. Run from anywhere:
    python3 fuzz/seeds/make.py
Each seed file is named after the sample it came from. The layouts follow
the header comments of fuzz_targets/devices.rs and commands.rs.

seeds/liveness and seeds/core are not made here: they are the corpora of
earlier runs, merged down to the inputs that add coverage, with
    cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run T seeds/T corpus/T -- -merge=1
(their inputs are decoded with `arbitrary`; see `cargo fuzz fmt T FILE`).
"""
import glob
import json
import os
import shutil

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
FIXTURES = os.path.join(ROOT, "tests", "fixtures")

# Doors of fuzz_targets/devices.rs, in the config's (sorted) key order.
ZIGBEE_ALONE, ZIGBEE_ZWAVE_CONTACT, ZWAVE_ALONE, ZWAVE_ZIGBEE_CONTACT = range(4)
RAW_TOPIC = 0x80


def fresh(target):
    path = os.path.join(HERE, target)
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)
    return path


def write(path, name, data):
    with open(os.path.join(path, name), "wb") as f:
        f.write(data)


def as_bytes(payload):
    if isinstance(payload, str):
        return payload.encode()
    return json.dumps(payload).encode()


def devices():
    out = fresh("devices")
    for file in sorted(glob.glob(os.path.join(FIXTURES, "zigbee2mqtt", "*.json"))):
        sample = json.load(open(file))
        stem = os.path.splitext(os.path.basename(file))[0]
        messages = sample.get("messages")
        if messages is None:
            # availability.json / malformed.json: bare payloads by name.
            messages = {k: v for k, v in sample.items() if k != "source"}
        contact = "contact" in stem
        for name, payload in messages.items():
            door, topic = (
                (ZWAVE_ZIGBEE_CONTACT, "zigbee2mqtt/Garage contact")
                if contact
                else (ZIGBEE_ALONE, "zigbee2mqtt/Front door")
            )
            if name in ("online", "offline", "legacy_online", "legacy_offline"):
                topic += "/availability"
            head = bytes([door, RAW_TOPIC]) + topic.encode() + b"\0"
            write(out, f"z2m-{stem}-{name}", head + as_bytes(payload))
    for file in sorted(glob.glob(os.path.join(FIXTURES, "zwave_js", "*.json"))):
        sample = json.load(open(file))
        stem = os.path.splitext(os.path.basename(file))[0]
        messages = sample.get("messages") or {
            k: v for k, v in sample.items() if k != "source"
        }
        for name, msg in messages.items():
            if not isinstance(msg, dict) or "topic" not in msg:
                continue
            rel = msg["topic"]
            if rel.startswith("@gateway/"):
                topic = "zwave/_CLIENTS/ZWAVE_GATEWAY-zwave-js-ui/" + rel[len("@gateway/"):]
            else:
                topic = "zwave/12/" + rel
            payload = msg.get("payload", "")
            head = bytes([ZWAVE_ALONE, RAW_TOPIC]) + topic.encode() + b"\0"
            write(out, f"zwave-{stem}-{name}", head + as_bytes(payload))


def commands():
    out = fresh("commands")
    # flags: bit 0 retained, bits 1-4 the shape of fuzz_targets/commands.rs.
    samples = [
        (0, "front", "UNLOCK"),
        (0, "back", "LOCK"),
        (1, "front", "PRESS"),
        (1, "front", '{"minutes": 30, "code": "482913"}'),
        (2, "front", "PRESS"),
        (3, "back", "PRESS"),
        (4, "front", "30.0"),
        (5, "front", "482913"),
        (6, "front", '{"code": "482913", "carrier": "DHL"}'),
        (6, "front", ""),
        (7, "", "online"),
        (8, "doorwarden_front_lock", '{"name":null,"origin":{"name":"doorwarden"}}'),
        (9, "lock/doorwarden_gone", '{"o":{"name":"doorwarden"}}'),
    ]
    for i, (shape, text, payload) in enumerate(samples):
        for retain in (0, 1):
            flags = (shape << 1) | retain
            data = bytes([flags]) + text.encode() + b"\0" + payload.encode()
            write(out, f"cmd-{i:02}-shape{shape}-retain{retain}", data)


def config():
    out = fresh("config")
    write(out, "config.example.yaml", open(os.path.join(ROOT, "config.example.yaml"), "rb").read())
    for file in sorted(glob.glob(os.path.join(ROOT, "tests", "**", "*.yaml"), recursive=True)):
        name = os.path.relpath(file, ROOT).replace(os.sep, "_")
        write(out, name, open(file, "rb").read())


devices()
commands()
config()
