"""`make up` supervises what it starts: a process killed with `kill -9` is reaped and started
again with backoff (said in `up`'s output and counted in `make status`), Kafka and PostgreSQL
included; `make status` tells the truth about a killed process even before it is reaped; and
`make down` from another terminal ends the foreground `up` cleanly.

One `up` (PostgreSQL, Kafka, the sinks, the gateway and the catalogue) on ports of its own serves
the tests of this module; a test that ends it leaves the next one to start another.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from loket_stack.runner import PORT_OFFSETS, REPO, Stack, StackConfig
from tests.conftest import PORT_BASE

BASE = PORT_BASE + 1200  # beside the session's stack (+0) and test_stack_up's (+600)
DATA = REPO / ".data" / f"test-supervision-{BASE}"
ENV = {
    **os.environ,
    "LOKET_DATA_DIR": str(DATA),
    # one service is enough to see a service restarted; the infrastructure is all there
    "LOKET_STACK_SKIP": "booking,calendar,notifications",
    **{f"LOKET_PORT_{name.upper()}": str(BASE + offset) for name, offset in PORT_OFFSETS.items()},
}


class Up:
    """`python -m loket_stack up` in the background, its output collected line by line."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "loket_stack", "up"],
            cwd=REPO,
            env=ENV,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_line(self, pattern: str, timeout: float, after: int = 0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.lines[after:]:
                if re.search(pattern, line):
                    return line
            if self.process.poll() is not None and not self._reader.is_alive():
                break
            time.sleep(0.1)
        raise AssertionError(f"no line matching {pattern!r} within {timeout}s; `up` said:\n{self.output}")


def wait_for(what: str, check: object, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.2)
    raise AssertionError(f"{what} not within {timeout}s")


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "loket_stack", *args], cwd=REPO, env=ENV, capture_output=True, text=True, timeout=120
    )


def status() -> str:
    return cli("status").stdout


def status_line(name: str) -> str:
    out = status()
    for line in out.splitlines():
        if line.split()[:1] == [name]:
            return line
    raise AssertionError(f"`status` has no line for {name}:\n{out}")


def pid_in(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def state_of(pid: int) -> str | None:
    """The process's state letter (R, S, Z, ...), None when there is no such process."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


def ready(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


_current: list[Up] = []


@pytest.fixture
def up() -> Up:
    """The module's running `up`, started when there is none (yet, or any more)."""
    if _current and _current[0].process.poll() is None:
        return _current[0]
    _current.clear()
    Stack(StackConfig.on_ports_from(BASE, data=DATA)).down()
    shutil.rmtree(DATA, ignore_errors=True)
    started = Up()
    _current.append(started)
    started.wait_line(r"^Loket is up", timeout=150)
    return started


@pytest.fixture(scope="module", autouse=True)
def _stop_what_is_left() -> Iterator[None]:
    yield
    for started in _current:
        if started.process.poll() is None:
            started.process.send_signal(signal.SIGCONT)  # in case a test left it stopped
    Stack(StackConfig.on_ports_from(BASE, data=DATA)).down()
    for started in _current:
        try:
            started.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            started.process.kill()
    shutil.rmtree(DATA, ignore_errors=True)


def test_a_killed_service_is_reaped_restarted_with_backoff_and_counted(up: Up) -> None:
    pid_file = DATA / "run" / "catalogue.pid"
    old = pid_in(pid_file)
    assert old is not None and state_of(old) not in (None, "Z")
    mark = len(up.lines)
    os.kill(old, signal.SIGKILL)
    # reaped: no zombie left behind
    wait_for(f"the killed catalogue (pid {old}) reaped", lambda: state_of(old) is None, timeout=10)
    up.wait_line(r"catalogue.*SIGKILL.*restart", timeout=10, after=mark)
    wait_for(
        "catalogue started again and ready",
        lambda: pid_in(pid_file) not in (None, old) and ready(f"http://127.0.0.1:{BASE + 101}/readyz"),
        timeout=60,
    )
    line = status_line("catalogue")
    assert re.search(r"\brunning\b", line) and re.search(r"\brestarted 1 time\b", line), line
    assert "SIGKILL" in line, line
    # the others were left alone
    assert re.search(r"\brunning\b", status_line("gateway")) and "restarted" not in status_line("gateway")


def test_a_second_up_is_refused_while_one_supervises(up: Up) -> None:
    second = cli("up")
    assert second.returncode == 1 and "already up" in second.stdout, second.stdout + second.stderr
    assert up.process.poll() is None and re.search(r"\brunning\b", status_line("supervisor"))


def test_status_tells_the_truth_about_a_killed_process_not_yet_reaped(up: Up) -> None:
    pid_file = DATA / "run" / "gateway.pid"
    old = pid_in(pid_file)
    assert old is not None
    # Hold the supervisor still: the killed gateway stays a zombie, as under a runner that does not reap.
    up.process.send_signal(signal.SIGSTOP)
    try:
        os.kill(old, signal.SIGKILL)
        wait_for(f"gateway (pid {old}) a zombie", lambda: state_of(old) == "Z", timeout=10)
        assert re.search(r"\bstopped\b", status_line("gateway")), status()
    finally:
        up.process.send_signal(signal.SIGCONT)
    wait_for(
        "gateway started again and ready",
        lambda: pid_in(pid_file) not in (None, old) and ready(f"http://127.0.0.1:{BASE}/healthz"),
        timeout=60,
    )
    assert state_of(old) is None  # and then reaped
    assert re.search(r"\brunning\b.*\brestarted 1 time\b", status_line("gateway"))


def test_a_process_stopped_on_purpose_stays_stopped_until_started(up: Up) -> None:
    """How the README has one run a service by hand: `stop NAME`, and later `start NAME`."""
    mark = len(up.lines)
    assert cli("stop", "catalogue").returncode == 0
    up.wait_line(r"catalogue is held", timeout=10, after=mark)
    time.sleep(2 * 1.0 + 0.5)  # beyond the first backoff
    assert pid_in(DATA / "run" / "catalogue.pid") is None
    assert re.search(r"\bstopped\b.*\bheld\b", status_line("catalogue"))
    assert cli("start", "catalogue").returncode == 0
    wait_for("catalogue ready", lambda: ready(f"http://127.0.0.1:{BASE + 101}/readyz"), timeout=60)
    assert re.search(r"\brunning\b", status_line("catalogue"))


def test_kafka_and_postgres_killed_are_restarted(up: Up) -> None:
    kafka_pid_file = DATA / "kafka" / "kafka.pid"
    old_kafka = pid_in(kafka_pid_file)
    assert old_kafka is not None
    mark = len(up.lines)
    os.kill(old_kafka, signal.SIGKILL)
    up.wait_line(r"kafka.*SIGKILL.*restart", timeout=10, after=mark)
    wait_for(
        "Kafka started again",
        lambda: pid_in(kafka_pid_file) not in (None, old_kafka) and Stack(config()).kafka.is_ready(),
        timeout=90,
    )
    assert state_of(old_kafka) is None
    assert re.search(r"\brunning\b.*\brestarted 1 time\b", status_line("kafka"))

    postmaster_pid_file = DATA / "pg" / "data" / "postmaster.pid"
    old_pg = pid_in(postmaster_pid_file)
    assert old_pg is not None
    mark = len(up.lines)
    os.kill(old_pg, signal.SIGKILL)
    up.wait_line(r"postgres.*SIGKILL.*restart", timeout=10, after=mark)
    wait_for("PostgreSQL started again", lambda: pid_in(postmaster_pid_file) not in (None, old_pg), timeout=90)
    wait_for("PostgreSQL answers", lambda: _select_1(Stack(config()).postgres.dsn("loket_catalogue")), timeout=30)
    assert state_of(old_pg) is None
    assert re.search(r"\brunning\b.*\brestarted 1 time\b", status_line("postgres"))
    # the service still answers once its database and broker are back
    wait_for("catalogue ready", lambda: ready(f"http://127.0.0.1:{BASE + 101}/readyz"), timeout=60)


def test_down_from_another_terminal_ends_up_cleanly(up: Up) -> None:
    pids = {name: pid_in(DATA / "run" / f"{name}.pid") for name in ("gateway", "sinks", "catalogue")}
    mark = len(up.lines)
    down = cli("down")
    assert down.returncode == 0, down.stdout + down.stderr
    assert up.process.wait(timeout=30) == 0, up.output
    up._reader.join(timeout=5)
    said = "\n".join(up.lines[mark:])
    assert "Loket stopped." in said
    assert not re.search(r"unexpectedly|restart", said), up.output
    assert set(Stack(config()).status().values()) == {"stopped"}
    for name, pid in pids.items():
        assert pid is not None and state_of(pid) is None, f"{name} (pid {pid}) is left behind"


def config() -> StackConfig:
    return StackConfig.on_ports_from(BASE, data=DATA)


def _select_1(dsn: str) -> bool:
    async def select() -> bool:
        conn = await asyncpg.connect(dsn, timeout=2)
        try:
            return bool(await conn.fetchval("SELECT 1") == 1)
        finally:
            await conn.close()

    try:
        return asyncio.run(select())
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return False
