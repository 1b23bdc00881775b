#!/usr/bin/env python3
"""Renders one Home Assistant template the way Home Assistant does, for
tests/blueprints.rs: Jinja2 (the engine Home Assistant uses) in an immutable
sandbox, with the few Home Assistant functions the doorwarden blueprints
call, over entity states the test gives. The result is stripped, as Home
Assistant strips it.

Reads one JSON object on stdin:
  {"template": "...", "variables": {...},
   "states": {"image.porch_snapshot": {"taken_at": "2026-...+00:00"}}}
and prints the rendered text. Times print in UTC (the test sets TZ=UTC).
"""

import json
import sys
from datetime import datetime

from jinja2.sandbox import ImmutableSandboxedEnvironment


def main():
    job = json.load(sys.stdin)
    states = job.get("states", {})

    def state_attr(entity_id, name):
        return states.get(entity_id, {}).get(name)

    def as_timestamp(value, default=None):
        if isinstance(value, (int, float)):
            return float(value)
        try:
            return datetime.fromisoformat(str(value)).timestamp()
        except (TypeError, ValueError):
            if default is None:
                raise ValueError(f"as_timestamp got invalid input {value!r}")
            return default

    def timestamp_custom(value, fmt, local=True):
        when = datetime.fromtimestamp(value) if local else datetime.utcfromtimestamp(value)
        return when.strftime(fmt)

    env = ImmutableSandboxedEnvironment(extensions=["jinja2.ext.loopcontrols"])
    env.globals.update(state_attr=state_attr, as_timestamp=as_timestamp)
    env.filters.update(as_timestamp=as_timestamp, timestamp_custom=timestamp_custom)
    out = env.from_string(job["template"]).render(**job.get("variables", {}))
    sys.stdout.write(out.strip())


if __name__ == "__main__":
    main()
