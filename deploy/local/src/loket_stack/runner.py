"""Start, stop and wipe the whole local stack: PostgreSQL, Kafka, SMTP + SMS sinks, the four
services and the gateway at one origin.

    python -m loket_stack up        # foreground; Ctrl-C stops everything
    python -m loket_stack down      # stops a stack started elsewhere
    python -m loket_stack reset     # stops it and wipes .data/
    python -m loket_stack status

Ports come from LOKET_PORT_* variables (see StackConfig); data lives in .data/ (or $LOKET_DATA_DIR).
Each process logs to .data/logs/<name>.log.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

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
    smtp: int = 8025
    postgres: int = 5433
    kafka: int = 9092
    kafka_controller: int = 9093
    seed_file: Path | None = REPO / "services/catalogue/seed/ghent.yaml"
    extra_env: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls, **overrides: object) -> StackConfig:
        config = cls(**overrides)  # type: ignore[arg-type]
        for name in PORT_OFFSETS:
            value = os.environ.get(f"LOKET_PORT_{name.upper()}")
            if value:
                setattr(config, name, int(value))
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
        self.logs = config.data / "logs"
        self.run_dir = config.data / "run"
        # A service is started when its package has an entry point (`python -m loket_<name>`).
        skip = set(filter(None, os.environ.get("LOKET_STACK_SKIP", "").split(",")))
        self.services = [
            s for s in SERVICES if s not in skip and importlib.util.find_spec(f"loket_{s}.__main__") is not None
        ]
        self.workers = [w for w, (service, _, _) in WORKERS.items() if service in self.services and w not in skip]
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
        pid_file = self._pid_file(name)
        if not pid_file.exists():
            return None
        pid = int(pid_file.read_text().strip() or 0)
        try:
            os.kill(pid, 0)
        except (ProcessLookupError, PermissionError):
            return None
        return pid

    def _spawn(self, name: str, args: list[str], env: dict[str, str], port: int) -> None:
        if self._running_pid(name) is not None:
            return
        _require_free_port(port, name)
        log = (self.logs / f"{name}.log").open("ab")
        process = subprocess.Popen(
            args,
            cwd=REPO,
            env={**os.environ, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        self._pid_file(name).write_text(str(process.pid))

    def service_env(self, service: str) -> dict[str, str]:
        c = self.config
        env = {
            "LOKET_SERVICE_NAME": service,
            "LOKET_DATABASE_URL": self.postgres.dsn(f"loket_{service}"),
            "LOKET_KAFKA_BOOTSTRAP": f"127.0.0.1:{c.kafka}",
            "LOKET_HTTP_PORT": str(getattr(c, service)),
            "LOKET_OIDC_ISSUER": f"{c.base_url}/api/v1/auth",
            "LOKET_OIDC_JWKS_URL": f"http://127.0.0.1:{c.gateway}/api/v1/auth/jwks",
            "LOKET_PUBLIC_BASE_URL": c.base_url,
            "LOKET_SMTP_HOST": "127.0.0.1",
            "LOKET_SMTP_PORT": str(c.smtp),
            "LOKET_SMS_URL": f"http://127.0.0.1:{c.sms}/sms",
            "LOKET_CATALOGUE_URL": f"http://127.0.0.1:{c.catalogue}",
            "LOKET_BOOKING_URL": f"http://127.0.0.1:{c.booking}",
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
        """The SMTP/SMS sinks, the gateway and the services; waits until each is ready."""
        c = self.config
        t = time.monotonic()
        python = sys.executable
        self._spawn(
            "sinks",
            [
                python,
                "-m",
                "loket_stack.sinks",
                "--mail-dir",
                str(c.data / "mail"),
                "--sms-file",
                str(c.data / "sms.jsonl"),
                "--smtp-port",
                str(c.smtp),
                "--sms-port",
                str(c.sms),
            ],
            {},
            c.sms,
        )
        upstreams = [f"--upstream={s}=http://127.0.0.1:{getattr(c, s)}" for s in SERVICES]
        web_dir = REPO / "web" / "dist"
        web_args = ["--web-dir", str(web_dir if web_dir.is_dir() else REPO / "web")] if (REPO / "web").is_dir() else []
        self._spawn(
            "gateway",
            [
                python,
                "-m",
                "loket_stack.gateway",
                "--port",
                str(c.gateway),
                "--key-file",
                str(c.data / "auth" / "signing-key.pem"),
                *upstreams,
                *web_args,
            ],
            {"LOKET_OIDC_ISSUER": f"{c.base_url}/api/v1/auth"},
            c.gateway,
        )
        for service in self.services:
            self._spawn(service, [python, "-m", f"loket_{service}"], self.service_env(service), getattr(c, service))
        for worker in self.workers:
            service, port_field, _ = WORKERS[worker]
            self._spawn(worker, [python, "-m", f"loket_{service}"], self.worker_env(worker), getattr(c, port_field))
        self.wait_ready(timeout)
        return {"services": time.monotonic() - t}

    def wait_ready(self, timeout: float) -> None:
        c = self.config
        checks = {s: f"http://127.0.0.1:{getattr(c, s)}/readyz" for s in self.services}
        checks.update({w: f"http://127.0.0.1:{getattr(c, WORKERS[w][1])}/readyz" for w in self.workers})
        checks["gateway"] = f"{c.base_url}/healthz"
        checks["sinks"] = f"http://127.0.0.1:{c.sms}/healthz"
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
        for name in ("gateway", *WORKERS, *reversed(SERVICES), "sinks"):
            self.stop_process(name)
        self.kafka.stop()
        self.postgres.stop()

    def reset(self) -> None:
        self.down()
        shutil.rmtree(self.config.data, ignore_errors=True)

    def status(self) -> dict[str, str]:
        status = {
            name: ("running" if self._running_pid(name) else "stopped")
            for name in ("gateway", *SERVICES, *WORKERS, "sinks")
        }
        status["kafka"] = "running" if self.kafka.is_running() else "stopped"
        status["postgres"] = "running" if self.postgres.running_port() else "stopped"
        return status


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie child of ours counts as gone
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


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
