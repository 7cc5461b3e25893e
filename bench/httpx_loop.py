"""The ceiling for delivery: a plain `httpx.Client` POST loop, one per process.

Same sink, same body, same keep-alive as a worker has, none of the relay's work.
Starts at the monotonic time START (so that all processes run together) and
prints {"count": n, "seconds": s}.

Run: python -m bench.httpx_loop URL SECONDS START BODY_FILE
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import httpx


def main() -> None:
    url, seconds, start, body_file = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), Path(sys.argv[4])
    body = body_file.read_bytes()
    headers = {"Content-Type": "application/json", "Elements-Webhook-Id": "ceiling"}
    with httpx.Client(timeout=10) as client:
        client.post(url, content=body, headers=headers)  # connect before the clock starts
        time.sleep(max(0.0, start - time.monotonic()))
        end = start + seconds
        count = 0
        while time.monotonic() < end:
            client.post(url, content=body, headers=headers).raise_for_status()
            count += 1
    print(json.dumps({"count": count, "seconds": seconds}))


if __name__ == "__main__":
    main()
