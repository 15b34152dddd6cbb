"""CLI of the local stack: up (foreground, Ctrl-C stops), down, reset, status."""

from __future__ import annotations

import signal
import sys
import time

from loket_stack.runner import WORKERS, Stack, StackConfig, StackError


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
    if command == "status":
        for name, state in stack.status().items():
            print(f"{name:20} {state}")
        return 0
    if command != "up":
        print(__doc__)
        return 2
    # SIGTERM stops the stack as Ctrl-C does. (A handler that sets a threading.Event can deadlock:
    # it runs in the main thread, maybe while that thread holds the Event's own lock in wait().)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    started = time.monotonic()
    try:
        timings = stack.up()
    except (StackError, KeyboardInterrupt) as exc:
        print(f"\nLoket could not start: {exc}", file=sys.stderr)
        stack.down()
        return 1
    c = stack.config
    print(
        f"""
Loket is up in {time.monotonic() - started:.1f}s ({", ".join(f"{k} {v:.1f}s" for k, v in timings.items())})

  Web app and API   {c.base_url}/
  API docs          {c.base_url}/api/v1/docs   (OpenAPI: {c.base_url}/api/v1/openapi.json)
  Demo accounts     staff, staff-gentbrugge, ops, admin  (password: demo)
  Services          {", ".join(f"{s} :{getattr(c, s)}" for s in stack.services)}
                    {", ".join(f"{w} :{getattr(c, WORKERS[w][1])}" for w in stack.workers)}
  Kafka             127.0.0.1:{c.kafka}    PostgreSQL  postgresql://postgres@127.0.0.1:{c.postgres}/
  Mail (.eml)       {c.data / "mail"}   SMS  {c.data / "sms.jsonl"}
  Logs              {c.data / "logs"}

Ctrl-C (or `make down`) stops everything; the data stays for the next `make up`.""",
        flush=True,
    )
    reported: set[str] = set()
    try:
        while True:
            time.sleep(1.0)
            for name in ("gateway", *stack.services, *stack.workers, "sinks"):
                if name not in reported and stack._running_pid(name) is None:
                    reported.add(name)
                    print(f"{name} stopped unexpectedly; see {c.data / 'logs' / (name + '.log')}", flush=True)
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
