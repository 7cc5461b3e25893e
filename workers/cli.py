"""The `ecwid-relay` command: dev, serve, worker, scheduler, poll, events, replay, listen.

Settings are read from the environment here, once, and passed down.
"""

from __future__ import annotations

import argparse
import os
import sys

from workers.settings import Settings, SettingsError


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="ecwid-relay", description="Event relay for Ecwid stores.")
    commands = root.add_subparsers(dest="command", required=True)

    dev = commands.add_parser("dev", help="run Redis, the receiver and workers together, for development")
    dev.add_argument("--host", default="127.0.0.1")
    dev.add_argument("--port", type=int, default=8080)
    dev.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")

    serve = commands.add_parser("serve", help="run the receiver (HTTP API and ingest)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--processes", type=int, default=1, help="uvicorn worker processes (default 1)")

    worker = commands.add_parser("worker", help="run one delivery worker (RQ, dispatcher, scheduler)")
    worker.add_argument("--burst", action="store_true", help="work off what is queued, then exit")
    worker.add_argument("--name", help="worker name (default: host-pid-random)")
    worker.add_argument("--metrics-port", type=int, help="serve this worker's Prometheus metrics on this port")
    worker.add_argument("--metrics-host", default="0.0.0.0", help="address for --metrics-port (default 0.0.0.0)")

    scheduler = commands.add_parser("scheduler", help="run RQ's cron scheduler, which starts polling rounds")
    scheduler.add_argument(
        "--tick", type=int, default=30, help="seconds between looks for due polling rounds (default 30)"
    )

    poll = commands.add_parser("poll", help="run polling rounds now, in this process")
    poll.add_argument("--once", action="store_true", required=True, help="one round, then exit")
    poll.add_argument("--instance", type=int, help="only this instance (default: every polling instance)")

    events = commands.add_parser("events", help="show an instance's event log: what happened to event X")
    events.add_argument("--instance", type=int, required=True)
    events.add_argument("--event", help="a notification id or Ecwid's eventId (default: the newest events)")
    events.add_argument("--status", help="comma-separated statuses to list, e.g. FAILED")
    events.add_argument("--limit", type=int, default=20)

    replay = commands.add_parser("replay", help="send finished events again, keeping their Elements-Webhook-Id")
    replay.add_argument("--instance", type=int, required=True)
    replay.add_argument("--event", help="one notification id or Ecwid eventId (default: every match of --status)")
    replay.add_argument("--status", help="NOTIFIED, FAILED or SKIPPED, comma-separated (default FAILED)")
    replay.add_argument("--limit", type=int, default=100, help="at most this many (default 100, at most 1000)")

    listen = commands.add_parser("listen", help="print notifications sent to a local callback URL")
    listen.add_argument("port", type=int, nargs="?", default=9000)
    listen.add_argument("--host", default="127.0.0.1")
    listen.add_argument("--key", help="signature key, to check Elements-Webhook-Signature")
    return root


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command == "listen":
        from workers import listen

        return listen.serve(args.host, args.port, args.key)
    try:
        settings = Settings.from_env(os.environ)
        if args.command in ("serve", "worker", "scheduler", "poll", "events", "replay"):
            settings.require_redis_url()
    except SettingsError as exc:
        print(f"ecwid-relay: configuration error: {exc}", file=sys.stderr)
        return 2
    if args.command == "dev":
        from workers import devstack

        return devstack.run(settings, os.environ, host=args.host, port=args.port, workers=args.workers)
    if args.command == "scheduler":
        from workers import scheduler

        return scheduler.run(settings, tick=max(1, args.tick))
    if args.command == "poll":
        from workers import poll_once

        return poll_once.run(settings, args.instance)
    if args.command in ("events", "replay"):
        from workers import event_cli

        limit = max(1, min(args.limit, 1000))
        command = event_cli.events if args.command == "events" else event_cli.replay
        return command(settings, args.instance, args.event, args.status, limit)
    if args.command == "worker":
        from workers import worker

        return worker.run(
            settings, burst=args.burst, name=args.name, metrics_port=args.metrics_port, metrics_host=args.metrics_host
        )
    from workers import serve

    return serve.run(settings, host=args.host, port=args.port, processes=args.processes)


if __name__ == "__main__":
    sys.exit(main())
