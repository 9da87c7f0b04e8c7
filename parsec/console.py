"""Progress lines for long commands: one time-stamped line each, flushed at once (a Ray
job's log and a terminal both show it as it happens)."""

from __future__ import annotations

import time


def say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)
