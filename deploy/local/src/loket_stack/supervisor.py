"""What `make up` does once the stack is up: watch every process it runs and start again, with
backoff, whatever stops.

Each tick (twice a second) the supervisor

- reaps: the services, the sinks, the issuer, the edge (nginx) and Kafka through their `Popen` objects, and any
  other child that has ended (PostgreSQL's postmaster and its backends are handed to us once
  `pg_ctl` exits, because `up` makes itself their subreaper);
- notices a process that is gone (or a zombie: it has ended), says so with how it ended, and
  schedules its restart after 1, 2, 4, ... up to 30 seconds (back to 1 once it has stayed up for
  a minute);
- starts again what is due, PostgreSQL and Kafka first; when one of them is back, whatever
  waits for its turn is tried at once (it most likely stopped for want of them);
- probes a restarted service until it is ready and says when it is back.

It keeps what it knows in `<data>/run/supervisor.json` (its own pid, and per process: state,
pid, restarts, how it last ended), which `make status` reads and `make down` uses to find `up`
and ask it to stop (SIGTERM), so the process that started everything is the one that stops it.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx

from loket_stack.runner import INFRA, Stack, StackError, held_signals

FIRST_DELAY = 1.0
MAX_DELAY = 30.0
STABLE_AFTER = 60.0  # a process up this long has stopped crash-looping: its next delay is FIRST_DELAY
READY_WITHIN = 120.0  # a restarted service not ready by then is said to be so (and left running)
TICK = 0.5


def backoff(failures: int) -> float:
    """Seconds before the next try after `failures` consecutive stops or failed starts (1, 2, 4, ...)."""
    return min(MAX_DELAY, FIRST_DELAY * 2.0 ** max(0, failures - 1))


def describe_exit(code: int | None) -> str:
    """A returncode (negative: the signal) as words."""
    if code is None:
        return "ended"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with code {code}"


@dataclass
class Watched:
    """What the supervisor knows of one process; as written to supervisor.json."""

    # running | starting (restarted, not ready yet) | restarting (waiting for its turn) | held (stopped on purpose)
    state: str = "running"
    pid: int | None = None
    restarts: int = 0
    last_exit: str | None = None
    last_exit_at: float | None = None  # wall clock
    last_error: str | None = None  # why the last try to start it failed (None once one succeeds)
    next_try_at: float | None = None  # wall clock, while restarting
    # not written: consecutive failures, when it (re)started and when its next try is due (monotonic)
    failures: int = 0
    since: float = field(default_factory=time.monotonic)
    due: float = 0.0
    slow: bool = False  # said that it is not ready yet


PRIVATE = {"failures", "since", "due", "slow"}


class Supervisor:
    def __init__(self, stack: Stack, say: Callable[[str], None] | None = None) -> None:
        self.stack = stack
        self.say = say or (lambda line: print(line, flush=True))
        self.state_file = stack.state_file
        self.names = [*INFRA, "sinks", "issuer", *stack.services, *stack.workers, *stack.seconds, "gateway"]
        self.watched: dict[str, Watched] = {}
        self.reaped: dict[int, int] = {}  # pid -> returncode, of children reaped without a Popen
        self._client = httpx.Client(timeout=1.0)

    # --- the loop -------------------------------------------------------------------------

    def claim(self) -> None:
        """Say in the state file that this process supervises the stack (before it is even up)."""
        self.stack.run_dir.mkdir(parents=True, exist_ok=True)
        self.stack.release_all()  # `up` starts everything
        self._write()

    def adopt(self) -> None:
        """Start watching what runs now (after `Stack.up`)."""
        for name in self.names:
            self.watched[name] = Watched(pid=self._pid_of(name))
        self._write()

    def run(self, until: Callable[[], bool] = lambda: False) -> None:
        """Tick until `until()` (or an exception: KeyboardInterrupt on Ctrl-C or SIGTERM)."""
        if not self.watched:
            self.adopt()
        while not until():
            self.tick()
            time.sleep(TICK)

    def close(self) -> None:
        self._reap()  # what ended while the stack stopped (the postmaster is our child, not pg_ctl's)
        self._client.close()
        if self.stack.supervisor_pid() == os.getpid():
            self.state_file.unlink(missing_ok=True)

    def tick(self) -> None:
        self._reap()
        changed = False
        now = time.monotonic()
        for name in self.names:
            w = self.watched[name]
            if w.state in ("running", "starting", "restarting") and self.stack.is_held(name):
                w.state, w.pid, w.next_try_at = "held", None, None
                self.say(
                    f"{name} is held: stopped on purpose, not restarted until `python -m loket_stack start {name}`"
                )
                changed = True
            elif w.state == "held" and not self.stack.is_held(name):
                w.state, w.due, w.failures = "restarting", 0.0, 0
                changed = True
            elif w.state in ("running", "starting") and self._pid_of(name) is None:
                self._stopped(name, w, now)
                changed = True
        # PostgreSQL and Kafka first: the others need them.
        for name in self.names:
            w = self.watched[name]
            if w.state == "restarting" and time.monotonic() >= w.due:
                self._restart(name, w)
                changed = True
        for name in self.names:
            w = self.watched[name]
            if w.state == "starting" and self._ready(name, w):
                changed = True
        if changed:
            self._write()

    # --- steps ----------------------------------------------------------------------------

    def _stopped(self, name: str, w: Watched, now: float) -> None:
        code = self.stack.exit_code(name)
        if code is None and w.pid is not None:
            code = self.reaped.pop(w.pid, None)
        ran = now - w.since
        w.failures = 1 if ran >= STABLE_AFTER else w.failures + 1
        w.last_exit, w.last_exit_at = describe_exit(code), time.time()
        self._leftovers(w.pid)
        self._schedule(w)
        after = f", {ran:.0f}s after its restart" if w.restarts else ""
        self.say(
            f"{name} stopped unexpectedly ({w.last_exit}{after}): restart {w.restarts + 1} "
            f"in {backoff(w.failures):.0f}s; see {self._log(name)}"
        )

    def _schedule(self, w: Watched) -> None:
        delay = backoff(w.failures)
        w.state, w.pid = "restarting", None
        w.due, w.next_try_at = time.monotonic() + delay, time.time() + delay

    def _restart(self, name: str, w: Watched) -> None:
        try:
            with self._infra_held(name):
                self.stack.start_process(name)
        except (StackError, OSError, RuntimeError, ValueError) as exc:  # KafkaError, CalledProcessError, ...
            w.failures += 1
            w.last_error = _first_line(exc)
            self._schedule(w)
            self.say(f"{name} could not be restarted ({_first_line(exc)}); next try in {backoff(w.failures):.0f}s")
            return
        w.restarts += 1
        w.pid, w.since, w.next_try_at, w.slow, w.last_error = self._pid_of(name), time.monotonic(), None, False, None
        if name in INFRA:  # PostgreSQL and Kafka are ready once started
            w.state = "running"
            self.say(f"{name} restarted (pid {w.pid}, restart {w.restarts}) and ready")
            for other in self.watched.values():  # what waits for its turn most likely waits for this
                if other.state == "restarting":
                    other.due = 0.0
        else:
            w.state = "starting"
            self.say(f"{name} restarted (pid {w.pid}, restart {w.restarts})")

    def _ready(self, name: str, w: Watched) -> bool:
        url = self.stack.ready_urls().get(name)
        try:
            ok = url is None or self._client.get(url).status_code == 200
        except httpx.HTTPError:
            ok = False
        took = time.monotonic() - w.since
        if ok:
            w.state = "running"
            self.say(f"{name} is back: ready {took:.1f}s after its restart")
            return True
        if took > READY_WITHIN and not w.slow:
            w.slow = True
            self.say(f"{name} runs but is not ready {READY_WITHIN:.0f}s after its restart; see {self._log(name)}")
        return False

    @contextlib.contextmanager
    def _infra_held(self, name: str) -> Iterator[None]:
        # Ctrl-C in the middle of `pg_ctl start` would kill pg_ctl and maybe leave a postmaster that
        # `down` does not know of yet: PostgreSQL's start (seconds) is not cut short. Kafka's start
        # stops its broker itself when interrupted.
        with held_signals() if name == "postgres" else contextlib.nullcontext():
            yield

    # --- processes ------------------------------------------------------------------------

    def _pid_of(self, name: str) -> int | None:
        return self.stack.process_pid(name)

    def _reap(self) -> None:
        """Reap the children no Popen object waits for (the postmaster, its backends, orphans).
        Not `waitpid(-1)`: that would take the exit status of a process a Popen object waits for."""
        owned = self.stack.owned_pids()
        for pid, _, state in _children():
            if state == "Z" and pid not in owned:
                with contextlib.suppress(ChildProcessError):
                    reaped, status = os.waitpid(pid, os.WNOHANG)
                    if reaped == pid:
                        self.reaped[pid] = os.waitstatus_to_exitcode(status)
        if len(self.reaped) > 1000:  # only the last ones can still be asked for
            for pid in list(self.reaped)[:-100]:
                del self.reaped[pid]

    def _leftovers(self, leader: int | None) -> None:
        """Kill what a stopped process left of its process group (it would hold its port): only our
        own children (orphans handed to us), never anything else that happens to reuse the id."""
        if leader is None:
            return
        for pid, pgrp, state in _children():
            if pgrp == leader and state != "Z":
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)

    def _log(self, name: str) -> Path:
        if name == "postgres":
            return self.stack.postgres.root / "postgres.log"
        return self.stack.logs / f"{name}.log"

    def _write(self) -> None:
        doc = {
            "pid": os.getpid(),
            "processes": {
                name: {k: v for k, v in asdict(w).items() if k not in PRIVATE} for name, w in self.watched.items()
            },
        }
        tmp = self.state_file.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(doc, indent=1))
        os.replace(tmp, self.state_file)


def become_subreaper() -> bool:
    """Orphaned descendants (PostgreSQL's postmaster once `pg_ctl` exits) become our children, so we
    reap them and learn how they ended; otherwise they go to init, which in some containers never
    reaps, and a killed postmaster stays a zombie that blocks PostgreSQL's start (its lock file
    names a pid that still "exists"). Linux only; elsewhere this does nothing."""
    if not sys.platform.startswith("linux"):
        return False
    pr_set_child_subreaper = 36
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(pr_set_child_subreaper, 1, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


def _children() -> list[tuple[int, int, str]]:
    """(pid, process group, state letter) of each child of this process, from /proc (none without)."""
    me = os.getpid()
    try:  # each thread's children, where the kernel lists them; else every process's parent
        candidates = {
            int(pid)
            for task in os.scandir(f"/proc/{me}/task")
            for pid in Path(task.path, "children").read_text().split()
        }
    except OSError:
        candidates = {int(e.name) for e in os.scandir("/proc") if e.name.isdigit()} if Path("/proc").is_dir() else set()
    found = []
    for pid in candidates:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == me:
            found.append((pid, int(fields[2]), fields[0]))
    return found


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]
