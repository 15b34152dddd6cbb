"""Start, stop and wipe the whole local stack: PostgreSQL, Kafka, SMTP + SMS sinks, the four
services, the token issuer, and the edge (nginx, `loket_stack.edge`) at one origin: the process
named `gateway`.

    python -m loket_stack up        # foreground; Ctrl-C stops everything
    python -m loket_stack down      # stops a stack started elsewhere
    python -m loket_stack reset     # stops it and wipes .data/
    python -m loket_stack status
    python -m loket_stack stop NAME # stops one process; `up` leaves it stopped until `start NAME`

Ports come from LOKET_PORT_* variables (see StackConfig); data lives in .data/ (or $LOKET_DATA_DIR).
Each process logs to .data/logs/<name>.log. `up` supervises what it starts (loket_stack.supervisor);
a process's pid is in .data/run/<name>.pid, the supervisor's view in .data/run/supervisor.json.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from loket_runtime import clock
from loket_stack import edge
from loket_stack.kafka import KafkaBroker, ensure_jars
from loket_stack.postgres import EmbeddedPostgres

REPO = Path(__file__).resolve().parents[4]
SERVICES = ("catalogue", "booking", "calendar", "notifications")
# Processes that run a part of a service on their own: name -> (service, port field, environment).
# The calendar's allocator gets a core of its own: the projections never slow decisions down.
WORKERS: dict[str, tuple[str, str, dict[str, str]]] = {
    # The calendar's main process publishes the outbox the allocator writes.
    "calendar-allocator": (
        "calendar",
        "calendar_allocator",
        {"LOKET_ROLES": "allocator", "LOKET_OUTBOX_RELAY": "false"},
    ),
}
# What a service's main process keeps doing when its workers run apart.
MAIN_ROLES = {"calendar": "projections"}
# The infrastructure, watched and restarted as the processes are (first: the rest needs it).
INFRA = ("postgres", "kafka")
# The front door: the edge (nginx; `gateway`, the name its port has always had) and the small
# service behind it that issues local tokens and serves the merged OpenAPI document.
FRONT = ("gateway", "issuer")
# LOKET_STACK_DOUBLE=booking,calendar-allocator starts a second instance of each, named `<name>-2`,
# this many ports above the first, in the same consumer groups (DESIGN.md: every instance is safe
# to double). The gateway still routes to the first; the second answers HTTP on its own port.
SECOND_SUFFIX = "-2"
SECOND_PORT_OFFSET = 100


# Every port of a stack (LOKET_PORT_<NAME>), and how far from the gateway's it lies when a whole
# stack is moved to other ports (`StackConfig.on_ports_from`).
PORT_OFFSETS = {
    "gateway": 0,
    "catalogue": 101,
    "booking": 102,
    "calendar": 103,
    "notifications": 104,
    "sms": 105,
    "calendar_allocator": 106,
    "issuer": 107,
    "smtp": 25,
    "postgres": 433,
    "kafka": 92,
    "kafka_controller": 93,
}


class StackError(RuntimeError):
    pass


@dataclass
class StackConfig:
    data: Path = field(default_factory=lambda: Path(os.environ.get("LOKET_DATA_DIR", REPO / ".data")))
    cache: Path = REPO / ".cache"
    gateway: int = 8000
    catalogue: int = 8101
    booking: int = 8102
    calendar: int = 8103
    notifications: int = 8104
    sms: int = 8105
    calendar_allocator: int = 8106
    issuer: int = 8107
    smtp: int = 8025
    postgres: int = 5433
    kafka: int = 9092
    kafka_controller: int = 9093
    seed_file: Path | None = REPO / "services/catalogue/seed/ghent.yaml"
    extra_env: dict[str, str] = field(default_factory=dict)
    # Client addresses (or CIDRs) the edge lets past its rate limits (deploy/edge/README.md).
    trusted_clients: tuple[str, ...] = ()

    @classmethod
    def from_env(cls, **overrides: object) -> StackConfig:
        config = cls(**overrides)  # type: ignore[arg-type]
        for name in PORT_OFFSETS:
            value = os.environ.get(f"LOKET_PORT_{name.upper()}")
            if value:
                setattr(config, name, int(value))
        trusted = os.environ.get("LOKET_EDGE_TRUSTED_CLIENTS", "")
        config.trusted_clients = tuple(filter(None, (c.strip() for c in trusted.split(","))))
        return config

    @classmethod
    def on_ports_from(cls, base: int, **overrides: object) -> StackConfig:
        """Every port at `base` + its offset: a stack for tests or benchmarks beside `make up`'s."""
        ports: dict[str, object] = {name: base + offset for name, offset in PORT_OFFSETS.items()}
        return cls(**(ports | overrides))  # type: ignore[arg-type]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.gateway}"

    def port_settings(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in PORT_OFFSETS}


class Stack:
    def __init__(self, config: StackConfig) -> None:
        self.config = config
        # A test clock given as a start instant becomes one offset now, which every process started
        # from here (and every restart) inherits: they agree on the time (loket_runtime.clock).
        clock.start_as_offset(os.environ)
        self.logs = config.data / "logs"
        self.run_dir = config.data / "run"
        # A service is started when its package has an entry point (`python -m loket_<name>`).
        skip = set(filter(None, os.environ.get("LOKET_STACK_SKIP", "").split(",")))
        self.services = [
            s for s in SERVICES if s not in skip and importlib.util.find_spec(f"loket_{s}.__main__") is not None
        ]
        self.workers = [w for w, (service, _, _) in WORKERS.items() if service in self.services and w not in skip]
        double = set(filter(None, os.environ.get("LOKET_STACK_DOUBLE", "").split(",")))
        self.seconds = [name + SECOND_SUFFIX for name in (*self.services, *self.workers) if name in double]
        # The processes this object started, kept so that they are reaped (no zombie) and their exit known.
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self.edge_conf = config.data / "edge" / "nginx.conf"
        self.postgres = EmbeddedPostgres(config.data / "pg", config.postgres)
        self.kafka = KafkaBroker(
            data_dir=config.data / "kafka",
            port=config.kafka,
            controller_port=config.kafka_controller,
            log_dir=self.logs,
            cache_dir=config.cache / "kafka",
        )

    # --- processes ------------------------------------------------------------------------

    def _pid_file(self, name: str) -> Path:
        return self.run_dir / f"{name}.pid"

    def _running_pid(self, name: str) -> int | None:
        """The pid of the process `name` if it runs: not ended (a zombie has), and still the program
        it was (a pid file outlives its process, and the pid may since name another)."""
        process = self._procs.get(name)
        running = process is not None and process.poll() is None  # poll() reaps it if it has ended
        try:
            pid = int(self._pid_file(name).read_text().strip() or 0)
        except (OSError, ValueError):
            return None
        if running and process is not None and pid == process.pid:
            # Our own child, not reaped: its pid is its own. (Its command line may not be readable yet:
            # just after exec, /proc/<pid>/cmdline can still be empty.)
            return pid
        if name == "gateway":  # nginx, known by its configuration file
            return pid if pid > 0 and _runs_with(pid, str(self.edge_conf)) else None
        first = name.removesuffix(SECOND_SUFFIX)
        module = "loket_stack." + name if name in ("issuer", "sinks") else "loket_" + WORKERS.get(first, (first,))[0]
        return pid if pid > 0 and _runs(pid, module) else None

    def process_pid(self, name: str) -> int | None:
        """The pid of any process of the stack (PostgreSQL's postmaster, Kafka's broker included)."""
        if name == "postgres":
            return self.postgres.pid()
        if name == "kafka":
            return self.kafka.pid
        return self._running_pid(name)

    def exit_code(self, name: str) -> int | None:
        """How a process this object started ended (negative: the signal), if it has and is known."""
        if name == "kafka":
            return self.kafka.returncode
        process = self._procs.get(name)
        return process.poll() if process is not None else None

    def owned_pids(self) -> set[int]:
        """The children that a Popen object here waits for (not to be reaped behind its back)."""
        pids = {p.pid for p in self._procs.values() if p.returncode is None}
        return pids | ({self.kafka.child_pid} if self.kafka.child_pid is not None else set())

    def _spawn(self, name: str, args: list[str], env: dict[str, str], port: int) -> None:
        if self._running_pid(name) is not None:
            return
        _require_free_port(port, name)
        with (self.logs / f"{name}.log").open("ab") as log, held_signals():
            # Ctrl-C between the start and the pid file would leave a process that `down` cannot find.
            process = subprocess.Popen(
                args,
                cwd=REPO,
                env={**os.environ, **env},
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
            self._procs[name] = process
            self._pid_file(name).write_text(str(process.pid))

    def commands(self) -> dict[str, tuple[list[str], dict[str, str], int]]:
        """name -> (command line, environment, port) of each process of the stack but the infrastructure.
        Writes the edge's configuration, which its command line names (`loket_stack.edge`)."""
        c = self.config
        python = sys.executable
        sinks = [python, "-m", "loket_stack.sinks", "--mail-dir", str(c.data / "mail")]
        sinks += ["--sms-file", str(c.data / "sms.jsonl"), "--smtp-port", str(c.smtp), "--sms-port", str(c.sms)]
        upstreams = [f"--upstream={s}=http://127.0.0.1:{getattr(c, s)}" for s in SERVICES]
        issuer = [python, "-m", "loket_stack.issuer", "--port", str(c.issuer)]
        issuer += ["--key-file", str(c.data / "auth" / "signing-key.pem"), *upstreams]
        built = REPO / "web" / "dist"
        edge.write_config(
            self.edge_conf.parent,
            listen=f"127.0.0.1:{c.gateway}",
            upstreams={name: f"127.0.0.1:{getattr(c, name)}" for name in edge.UPSTREAMS},
            web_root=built if built.is_dir() else REPO / "web",
            trusted_clients=c.trusted_clients,
        )
        commands = {
            "sinks": (sinks, {}, c.sms),
            "issuer": (issuer, {"LOKET_OIDC_ISSUER": f"{c.base_url}/api/v1/auth"}, c.issuer),
            "gateway": (edge.command(self.edge_conf), {}, c.gateway),
        }
        for service in self.services:
            commands[service] = ([python, "-m", f"loket_{service}"], self.service_env(service), getattr(c, service))
        for worker in self.workers:
            service, port_field, _ = WORKERS[worker]
            commands[worker] = ([python, "-m", f"loket_{service}"], self.worker_env(worker), getattr(c, port_field))
        for second in self.seconds:
            args, env, port = commands[second.removesuffix(SECOND_SUFFIX)]
            port += SECOND_PORT_OFFSET
            commands[second] = (args, {**env, "LOKET_HTTP_PORT": str(port)}, port)
        return commands

    def start_process(self, name: str) -> None:
        """Start one process of the stack again (without waiting for a service to be ready)."""
        if name == "postgres":
            self.postgres.start()
        elif name == "kafka":
            self.kafka.start(timeout=90)
        else:
            args, env, port = self.commands()[name]
            self._spawn(name, args, env, port)

    def ready_urls(self) -> dict[str, str]:
        c = self.config
        urls = {s: f"http://127.0.0.1:{getattr(c, s)}/readyz" for s in self.services}
        urls.update({w: f"http://127.0.0.1:{getattr(c, WORKERS[w][1])}/readyz" for w in self.workers})
        if self.seconds:
            commands = self.commands()
            urls.update({s: f"http://127.0.0.1:{commands[s][2]}/readyz" for s in self.seconds})
        urls["gateway"] = f"{c.base_url}/healthz"
        urls["issuer"] = f"http://127.0.0.1:{c.issuer}/healthz"
        urls["sinks"] = f"http://127.0.0.1:{c.sms}/healthz"
        return urls

    def service_env(self, service: str) -> dict[str, str]:
        c = self.config
        env = {
            "LOKET_SERVICE_NAME": service,
            "LOKET_DATABASE_URL": self.postgres.dsn(f"loket_{service}"),
            "LOKET_KAFKA_BOOTSTRAP": f"127.0.0.1:{c.kafka}",
            "LOKET_HTTP_PORT": str(getattr(c, service)),
            "LOKET_OIDC_ISSUER": f"{c.base_url}/api/v1/auth",
            "LOKET_OIDC_JWKS_URL": f"http://127.0.0.1:{c.issuer}/api/v1/auth/jwks",
            "LOKET_PUBLIC_BASE_URL": c.base_url,
            "LOKET_SMTP_HOST": "127.0.0.1",
            "LOKET_SMTP_PORT": str(c.smtp),
            "LOKET_SMS_URL": f"http://127.0.0.1:{c.sms}/sms",
            "LOKET_CATALOGUE_URL": f"http://127.0.0.1:{c.catalogue}",
            "LOKET_BOOKING_URL": f"http://127.0.0.1:{c.booking}",
            "LOKET_CALENDAR_URL": f"http://127.0.0.1:{c.calendar}",
            "PYTHONUNBUFFERED": "1",
        }
        if service == "catalogue" and c.seed_file is not None:
            env["LOKET_SEED_FILE"] = str(c.seed_file)
        if service in MAIN_ROLES and any(WORKERS[w][0] == service for w in self.workers):
            env["LOKET_ROLES"] = MAIN_ROLES[service]
        env.update(c.extra_env)
        return env

    def worker_env(self, worker: str) -> dict[str, str]:
        service, port_field, extra = WORKERS[worker]
        env = self.service_env(service)
        env.update({"LOKET_SERVICE_NAME": worker, "LOKET_HTTP_PORT": str(getattr(self.config, port_field)), **extra})
        env.update(self.config.extra_env)
        return env

    # --- up / down ------------------------------------------------------------------------

    def up(self, timeout: float = 180) -> dict[str, float]:
        """Start whatever is not running yet; return seconds spent per step."""
        timings = self.up_infra()
        timings.update(self.up_services(timeout))
        return timings

    def up_infra(self) -> dict[str, float]:
        """PostgreSQL with the services' databases, Kafka, and the registry's topics."""
        timings: dict[str, float] = {}
        c = self.config
        for folder in (self.logs, self.run_dir, c.data / "mail"):
            folder.mkdir(parents=True, exist_ok=True)
        t = time.monotonic()
        if self.postgres.running_port() is None:
            _require_free_port(c.postgres, "postgres")
        self.postgres.start()
        self.postgres.create_databases([f"loket_{s}" for s in SERVICES])
        timings["postgres"] = time.monotonic() - t

        t = time.monotonic()
        ensure_jars(c.cache / "kafka")
        timings["kafka_jars"] = time.monotonic() - t
        t = time.monotonic()
        self.kafka.start(timeout=90)
        timings["kafka"] = time.monotonic() - t

        t = time.monotonic()
        from loket_runtime.kafka import ensure_topics

        asyncio.run(ensure_topics(self.kafka.bootstrap))
        timings["topics"] = time.monotonic() - t
        return timings

    def up_services(self, timeout: float = 180) -> dict[str, float]:
        """The SMTP/SMS sinks, the issuer, the edge and the services; waits until each is ready."""
        t = time.monotonic()
        for name, (args, env, port) in self.commands().items():
            self._spawn(name, args, env, port)
        self.wait_ready(timeout)
        return {"services": time.monotonic() - t}

    def wait_ready(self, timeout: float) -> None:
        checks = self.ready_urls()
        deadline = time.monotonic() + timeout
        pending = dict(checks)
        with httpx.Client(timeout=2) as client:
            while pending:
                for name, url in list(pending.items()):
                    if self._running_pid(name) is None:
                        raise StackError(
                            f"{name} exited during start-up; see {self.logs / (name + '.log')}:\n"
                            + _tail(self.logs / f"{name}.log")
                        )
                    try:
                        if client.get(url).status_code == 200:
                            del pending[name]
                    except httpx.HTTPError:
                        pass
                if pending and time.monotonic() > deadline:
                    raise StackError(f"not ready after {timeout:.0f}s: {', '.join(pending)} (logs in {self.logs})")
                if pending:
                    time.sleep(0.2)

    def stop_process(self, name: str, timeout: float = 15) -> None:
        pid = self._running_pid(name)
        if pid is not None:
            with _suppress_lookup():
                os.killpg(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and self._running_pid(name) is not None and _alive(pid):
                time.sleep(0.1)
            if _alive(pid):
                with _suppress_lookup():
                    os.killpg(pid, signal.SIGKILL)
        self._pid_file(name).unlink(missing_ok=True)

    def down(self) -> None:
        # A supervising `up` elsewhere stops everything itself (and would restart what is stopped
        # behind its back); then whatever is left is stopped here.
        self.stop_supervisor()
        # Second instances too when this process was not told of them (`make down` from a shell).
        seconds = {*self.seconds, *(pid.stem for pid in self.run_dir.glob(f"*{SECOND_SUFFIX}.pid"))}
        for name in (*FRONT, *sorted(seconds), *WORKERS, *reversed(SERVICES), "sinks"):
            self.stop_process(name)
        self.kafka.stop()
        self.postgres.stop()

    def reset(self) -> None:
        self.down()
        shutil.rmtree(self.config.data, ignore_errors=True)

    # --- supervision --------------------------------------------------------------------

    @property
    def state_file(self) -> Path:
        return self.run_dir / "supervisor.json"

    def supervisor_state(self) -> dict[str, Any] | None:
        """What the supervising `up` wrote, if one runs for this data directory."""
        try:
            state = json.loads(self.state_file.read_text())
            pid = int(state["pid"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if pid == os.getpid() or _runs(pid, "loket_stack"):
            return dict(state)
        return None

    def supervisor_pid(self) -> int | None:
        state = self.supervisor_state()
        return int(state["pid"]) if state is not None else None

    def stop_supervisor(self, timeout: float = 120) -> None:
        """Ask a supervising `up` (not this process) to stop the stack and end, and wait for it."""
        pid = self.supervisor_pid()
        if pid is None or pid == os.getpid():
            return
        with _suppress_lookup():
            os.kill(pid, signal.SIGCONT)  # a stopped (Ctrl-Z) `up` could not act on SIGTERM
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.2)
        if _alive(pid):  # stuck: it must not restart what is stopped next
            with _suppress_lookup():
                os.kill(pid, signal.SIGKILL)

    def _held_file(self, name: str) -> Path:
        return self.run_dir / f"{name}.held"

    def is_held(self, name: str) -> bool:
        """Stopped on purpose (`python -m loket_stack stop NAME`): the supervisor leaves it stopped."""
        return self._held_file(name).exists()

    def hold(self, name: str) -> None:
        """Stop one process and keep the supervisor from starting it again (to run it by hand)."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._held_file(name).write_text("")
        if name == "postgres":
            self.postgres.stop()
        elif name == "kafka":
            self.kafka.stop()
        else:
            self.stop_process(name)

    def release(self, name: str) -> None:
        """Undo `hold`: the supervisor starts it again; without one, it is started here."""
        self._held_file(name).unlink(missing_ok=True)
        if self.supervisor_pid() is None and self.process_pid(name) is None:
            self.start_process(name)

    def release_all(self) -> None:
        for held in self.run_dir.glob("*.held"):
            held.unlink(missing_ok=True)

    # --- status ---------------------------------------------------------------------------

    def status(self) -> dict[str, str]:
        """name -> running | restarting (stopped; the supervisor starts it again) | stopped."""
        return {name: state for name, state, _ in self.report() if name != "supervisor"}

    def report(self) -> list[tuple[str, str, str]]:
        """(name, state, details) per process and for the supervisor: what `make status` prints."""
        supervisor = self.supervisor_state()
        known: dict[str, dict[str, Any]] = supervisor.get("processes", {}) if supervisor else {}
        rows = []
        for name in (*FRONT, *SERVICES, *WORKERS, *self.seconds, "sinks", *INFRA):
            pid = self.process_pid(name)
            seen = known.get(name, {})
            state = "running" if pid else ("restarting" if seen.get("state") == "restarting" else "stopped")
            details = [f"pid {pid}"] if pid else []
            if state == "restarting" and seen.get("next_try_at"):
                details.append(f"next try in {max(0.0, seen['next_try_at'] - time.time()):.0f}s")
            if pid and seen.get("state") == "starting" and seen.get("pid") == pid:
                details.append("not ready yet")
            restarts = int(seen.get("restarts") or 0)
            if restarts:
                details.append(f"restarted {restarts} time{'s' if restarts > 1 else ''}")
            if seen.get("last_exit"):
                at = time.strftime("%H:%M:%S", time.localtime(seen.get("last_exit_at") or 0))
                details.append(f"last stop: {seen['last_exit']} at {at}")
            if state == "restarting" and seen.get("last_error"):
                details.append(f"last try: {seen['last_error']}")
            if not pid and self.is_held(name):
                details.append(f"held: `python -m loket_stack start {name}` starts it again")
            if not pid and not seen and name not in (*INFRA, *FRONT, "sinks", *self.services, *self.workers):
                details.append("not part of this stack")
            rows.append((name, state, ", ".join(details)))
        if supervisor is not None:
            rows.append(("supervisor", "running", f"pid {supervisor['pid']} (`make up`): restarts what stops"))
        else:
            rows.append(("supervisor", "stopped", "nothing restarts a process that stops (`make up` does)"))
        return rows


def _alive(pid: int) -> bool:
    """The process exists and has not ended: a zombie (ended, not yet reaped by its parent) has."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, another user's
    if not _PROC:
        return True
    try:  # the name in /proc/<pid>/stat may hold spaces and parentheses: the state follows the last ")"
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _command_line(pid: int) -> list[str] | None:
    """The arguments of a running process (`_alive`), [] where they cannot be read (not Linux), None if it is gone."""
    if not _alive(pid):
        return None
    if not _PROC:
        return []
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return None


def _runs(pid: int, module: str) -> bool:
    """The process runs (`_alive`) and is `python -m <module>` still: a pid file outlives its process,
    and the pid may since name another. (Without /proc, not Linux, the program cannot be checked.)"""
    args = _command_line(pid)
    return args is not None and (not _PROC or any(args[i : i + 2] == ["-m", module] for i in range(len(args))))


def _runs_with(pid: int, argument: str) -> bool:
    """As `_runs`, for a program known by an argument: nginx writes its title over its arguments, so
    the argument is looked for within them."""
    args = _command_line(pid)
    return args is not None and (not _PROC or any(argument in arg for arg in args))


_PROC = Path("/proc/self/stat").exists()


@contextlib.contextmanager
def held_signals() -> Iterator[None]:
    """SIGINT and SIGTERM wait until the block is done, then act as they would have (a block that
    must not be cut in two). Only the main thread can set handlers; elsewhere it holds nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[int] = []

    def hold(signum: int, _frame: object) -> None:
        held.append(signum)

    previous = {int(s): signal.signal(s, hold) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        if held:
            handler = previous[held[0]]
            if callable(handler):
                handler(held[0], None)
            elif handler == signal.SIG_DFL:
                signal.raise_signal(held[0])


class _suppress_lookup:
    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: object, *_: object) -> bool:
        return exc_type in (ProcessLookupError, PermissionError)


def _require_free_port(port: int, name: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError as exc:
            raise StackError(
                f"port {port} for {name} is already in use; stop what uses it or set "
                f"LOKET_PORT_{name.upper()} to another port"
            ) from exc


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
