"""The `ecwid-relay` command: dev, serve, worker, scheduler, poll, events, replay, instances,
failed, redis, listen.

Settings are read from the environment here, once, and passed down.
"""

from __future__ import annotations

import argparse
import os
import sys

import redis.exceptions

from workers import keys
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

    events = commands.add_parser("events", help="an instance's event log: what happened to event X")
    events_actions = events.add_subparsers(dest="action", required=True)
    events_list = events_actions.add_parser("list", help="the newest notifications, one JSON line each")
    events_list.add_argument("--instance", type=int, required=True)
    events_list.add_argument("--status", help="comma-separated statuses to list, e.g. FAILED")
    events_list.add_argument("--limit", type=int, default=20)
    events_show = events_actions.add_parser("show", help="one notification and every attempt")
    events_show.add_argument("event", help="a notification id or Ecwid's eventId")
    events_show.add_argument("--instance", type=int, required=True)

    replay = commands.add_parser("replay", help="send finished events again, keeping their Elements-Webhook-Id")
    replay.add_argument("--instance", type=int, required=True)
    replay.add_argument("--event", help="one notification id or Ecwid eventId (default: every match of --status)")
    replay.add_argument("--status", help="NOTIFIED, FAILED or SKIPPED, comma-separated (default FAILED)")
    replay.add_argument("--limit", type=int, default=100, help="at most this many (default 100, at most 1000)")

    instances = commands.add_parser("instances", help="instances as the API shows them, for every user")
    instances_actions = instances.add_subparsers(dest="action", required=True)
    instances_list = instances_actions.add_parser("list", help="one summary line per instance")
    instances_list.add_argument("--store", type=int, help="only the instances of this Ecwid store")
    instances_show = instances_actions.add_parser("show", help="one instance, with its poller's state")
    instances_show.add_argument("instance", type=int)
    for action, text in (("pause", "pause deliveries by hand (events are buffered)"),
                         ("resume", "resume a paused instance: its buffer drains")):  # fmt: skip
        instances_actions.add_parser(action, help=text).add_argument("instance", type=int)

    failed = commands.add_parser("failed", help="jobs in RQ's failed registry")
    failed_actions = failed.add_subparsers(dest="action", required=True)
    failed_list = failed_actions.add_parser("list", help="the newest failed jobs, one JSON line each")
    failed_list.add_argument("--limit", type=int, default=50)
    failed_requeue = failed_actions.add_parser("requeue", help="queue failed jobs again (one more attempt each)")
    failed_requeue.add_argument("jobs", nargs="*", help="job ids (from `failed list`)")
    failed_requeue.add_argument("--all", action="store_true", help="every job in the registry")
    for sub in (failed_list, failed_requeue):
        sub.add_argument("--queue", default=keys.DELIVERY_QUEUE, choices=keys.QUEUES)

    redis_command = commands.add_parser("redis", help="check the Redis the relay uses")
    redis_actions = redis_command.add_subparsers(dest="action", required=True)
    redis_actions.add_parser("check", help="reachable, version, AOF and fsync, eviction policy, queue depths")

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
        if args.command not in ("dev", "listen"):
            settings.require_redis_url()
    except SettingsError as exc:
        print(f"ecwid-relay: configuration error: {exc}", file=sys.stderr)
        return 2
    if args.command in OPERATOR_COMMANDS:
        try:
            return _operate(args, settings)
        except redis.exceptions.RedisError as exc:
            # The URL may hold a password: name the error, not the connection.
            print(f"ecwid-relay: Redis error: {type(exc).__name__}", file=sys.stderr)
            return 2
    if args.command == "dev":
        from workers import devstack

        return devstack.run(settings, os.environ, host=args.host, port=args.port, workers=args.workers)
    if args.command == "scheduler":
        from workers import scheduler

        return scheduler.run(settings, tick=max(1, args.tick))
    if args.command == "worker":
        from workers import worker

        return worker.run(
            settings, burst=args.burst, name=args.name, metrics_port=args.metrics_port, metrics_host=args.metrics_host
        )
    from workers import serve

    return serve.run(settings, host=args.host, port=args.port, processes=args.processes)


OPERATOR_COMMANDS = ("poll", "events", "replay", "instances", "failed", "redis")


def _operate(args: argparse.Namespace, settings: Settings) -> int:
    """The one-shot operator commands; each prints JSON lines and returns the exit status."""
    if args.command == "poll":
        from workers import poll_once

        return poll_once.run(settings, args.instance)
    if args.command in ("events", "replay"):
        from workers import event_cli

        limit = max(1, min(getattr(args, "limit", 1), 1000))
        if args.command == "replay":
            return event_cli.replay(settings, args.instance, args.event, args.status, limit)
        shown = args.event if args.action == "show" else None
        return event_cli.events(settings, args.instance, shown, getattr(args, "status", None), limit)
    from workers import ops_cli

    if args.command == "instances":
        return ops_cli.instances(settings, args.action, getattr(args, "instance", None), getattr(args, "store", None))
    if args.command == "failed":
        limit = max(1, getattr(args, "limit", 1))
        return ops_cli.failed(settings, args.action, getattr(args, "jobs", []), getattr(args, "all", False),
                              args.queue, limit)  # fmt: skip
    return ops_cli.redis_status(settings)


if __name__ == "__main__":
    sys.exit(main())
