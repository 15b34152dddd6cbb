"""CLI of the local stack: up (foreground, Ctrl-C stops; supervises what it starts), down, reset,
status, and stop NAME / start NAME (one process stopped on purpose, and started again)."""

from __future__ import annotations

import signal
import sys
import time

from loket_stack.runner import FRONT, INFRA, WORKERS, Stack, StackConfig
from loket_stack.supervisor import Supervisor, become_subreaper


def main(argv: list[str]) -> int:
    command = argv[1] if len(argv) > 1 else "up"
    stack = Stack(StackConfig.from_env())
    if command == "down":
        stack.down()
        print("Loket stopped.")
        return 0
    if command == "reset":
        stack.reset()
        print(f"Loket stopped and {stack.config.data} wiped.")
        return 0
    if command in ("stop", "start"):
        names = [*INFRA, "sinks", *FRONT, *stack.services, *stack.workers, *stack.seconds]
        if len(argv) != 3 or argv[2] not in names:
            print(f"usage: python -m loket_stack {command} {{{','.join(names)}}}", file=sys.stderr)
            return 2
        if command == "stop":
            stack.hold(argv[2])
            print(f"{argv[2]} stopped; nothing starts it again until `python -m loket_stack start {argv[2]}`.")
        else:
            stack.release(argv[2])
            print(
                f"{argv[2]} started again."
                if stack.supervisor_pid() is None
                else f"{argv[2]} released: `up` starts it."
            )
        return 0
    if command == "status":
        for name, state, details in stack.report():
            print(f"{name:20} {state:11} {details}".rstrip())
        return 0
    if command != "up":
        print(__doc__)
        return 2
    other = stack.supervisor_pid()
    if other is not None:
        print(f"Loket is already up from {stack.config.data} (`up` is pid {other}); `make down` stops it.")
        return 1
    # SIGTERM stops the stack as Ctrl-C does. (A handler that sets a threading.Event can deadlock:
    # it runs in the main thread, maybe while that thread holds the Event's own lock in wait().)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    become_subreaper()
    supervisor = Supervisor(stack)
    try:
        return _up(stack, supervisor)
    finally:
        supervisor.close()


def _up(stack: Stack, supervisor: Supervisor) -> int:
    supervisor.claim()  # from now on `make down` elsewhere asks this process to stop
    started = time.monotonic()
    try:
        timings = stack.up()
    except (Exception, KeyboardInterrupt) as exc:  # StackError, KafkaError, a failed pg_ctl, ...: stop what started
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if isinstance(exc, KeyboardInterrupt):
            print("\nStopping Loket before it was up...", flush=True)
        else:
            print(f"\nLoket could not start: {exc}", file=sys.stderr, flush=True)
        stack.down()
        print("Loket stopped.")
        return 1
    c = stack.config
    print(
        f"""
Loket is up in {time.monotonic() - started:.1f}s ({", ".join(f"{k} {v:.1f}s" for k, v in timings.items())})

  Web app and API   {c.base_url}/   (nginx: rate limits, deploy/edge/README.md)
  API docs          {c.base_url}/api/v1/docs   (OpenAPI: {c.base_url}/api/v1/openapi.json)
  Demo accounts     staff, staff-gentbrugge, ops, admin  (password: demo)
  Services          {", ".join(f"{s} :{getattr(c, s)}" for s in stack.services)}
                    {", ".join(f"{w} :{getattr(c, WORKERS[w][1])}" for w in stack.workers)}
  Kafka             127.0.0.1:{c.kafka}    PostgreSQL  postgresql://postgres@127.0.0.1:{c.postgres}/
  Mail (.eml)       {c.data / "mail"}   SMS  {c.data / "sms.jsonl"}
  Logs              {c.data / "logs"}

A process that stops is started again (`make status` counts the restarts).
Ctrl-C (or `make down`) stops everything; the data stays for the next `make up`.""",
        flush=True,
    )
    try:
        supervisor.adopt()
        supervisor.run()
    except KeyboardInterrupt:
        pass
    # A second Ctrl-C or SIGTERM must not cut the stopping short and leave processes behind.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    print("\nStopping Loket...", flush=True)
    stack.down()
    print("Loket stopped.")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
