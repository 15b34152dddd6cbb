"""The local stack's status tells the truth about processes that have ended, and the supervisor's
pieces: its backoff, how it names an exit, a block that Ctrl-C does not cut in two."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from loket_stack.runner import Stack, StackConfig, held_signals
from loket_stack.supervisor import Supervisor, backoff, describe_exit


@pytest.fixture
def zombie() -> Iterator[int]:
    """A child that has ended and that nobody reaps (yet): it still "exists" for kill(pid, 0)."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    os.kill(child.pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while Path(f"/proc/{child.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
        assert time.monotonic() < deadline
        time.sleep(0.01)
    yield child.pid
    child.wait()


@pytest.fixture
def stack(tmp_path: Path) -> Stack:
    stack = Stack(StackConfig.on_ports_from(29000, data=tmp_path))
    stack.run_dir.mkdir(parents=True)
    return stack


def test_a_killed_process_not_yet_reaped_is_stopped(stack: Stack, zombie: int) -> None:
    (stack.run_dir / "booking.pid").write_text(str(zombie))
    assert stack.status()["booking"] == "stopped"


def test_a_pid_file_naming_another_program_is_stopped(stack: Stack) -> None:
    (stack.run_dir / "gateway.pid").write_text(str(os.getpid()))  # alive, but pytest, not the gateway
    assert stack.status()["gateway"] == "stopped"


def test_a_killed_postmaster_not_yet_reaped_is_stopped(stack: Stack, zombie: int) -> None:
    stack.postgres.data.mkdir(parents=True)
    lock = [str(zombie), str(stack.postgres.data), "1700000000", str(stack.config.postgres), "", "127.0.0.1"]
    (stack.postgres.data / "postmaster.pid").write_text("\n".join(lock) + "\n")
    assert stack.status()["postgres"] == "stopped"


def test_without_a_supervisor_status_says_so(stack: Stack) -> None:
    rows = {name: (state, details) for name, state, details in stack.report()}
    assert rows["supervisor"][0] == "stopped"
    (stack.run_dir / "supervisor.json").write_text(f'{{"pid": {os.getppid()}, "processes": {{}}}}')
    assert stack.supervisor_pid() is None  # alive, but not `python -m loket_stack up`


def test_backoff_doubles_up_to_half_a_minute() -> None:
    assert [backoff(n) for n in range(1, 8)] == [1, 2, 4, 8, 16, 30, 30]


def test_exits_are_named() -> None:
    assert describe_exit(-9) == "killed by SIGKILL"
    assert describe_exit(1) == "exited with code 1"
    assert describe_exit(None) == "ended"


def test_ctrl_c_waits_for_the_end_of_a_held_block() -> None:
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    done = []
    try:
        with pytest.raises(KeyboardInterrupt):
            with held_signals():
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(0.05)  # the handler runs here, and only holds the signal
                done.append(True)
        assert done == [True]
    finally:
        signal.signal(signal.SIGTERM, previous)


class Sleepers(Stack):
    """A stack of two plain processes (no Kafka, no PostgreSQL): the supervisor's loop alone."""

    def commands(self) -> dict[str, tuple[list[str], dict[str, str], int]]:
        sleep = [sys.executable, "-c", "import time; time.sleep(60)"]
        return {"sinks": (sleep, {}, 0), "gateway": (sleep, {}, 0)}

    def ready_urls(self) -> dict[str, str]:
        return {}


@pytest.fixture
def sleepers(tmp_path: Path) -> Iterator[Sleepers]:
    stack = Sleepers(StackConfig.on_ports_from(29000, data=tmp_path))
    stack.logs.mkdir(parents=True)
    stack.run_dir.mkdir(parents=True)
    for name, (args, env, port) in stack.commands().items():
        stack._spawn(name, args, env, port)
    yield stack
    for name in ("sinks", "gateway"):
        stack.stop_process(name, timeout=2)


def supervise(stack: Stack, said: list[str]) -> Supervisor:
    supervisor = Supervisor(stack, say=said.append)
    supervisor.names = ["sinks", "gateway"]
    return supervisor


def tick_until(supervisor: Supervisor, done: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, "not in time"
        supervisor.tick()
        time.sleep(0.05)


def test_a_killed_process_is_reaped_named_and_restarted(sleepers: Sleepers, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("loket_stack.supervisor.FIRST_DELAY", 0.2)
    said: list[str] = []
    supervisor = supervise(sleepers, said)
    old = sleepers.process_pid("sinks")
    assert old is not None
    os.kill(old, signal.SIGKILL)  # before the supervisor even looks: it is still named
    supervisor.adopt()
    tick_until(supervisor, lambda: supervisor.watched["sinks"].restarts == 1)
    assert not Path(f"/proc/{old}").exists()  # reaped
    new = sleepers.process_pid("sinks")
    assert new not in (None, old)
    assert any("sinks stopped unexpectedly (killed by SIGKILL)" in line for line in said), said
    rows = {name: details for name, _, details in sleepers.report()}
    assert "restarted 1 time" in rows["sinks"] and "killed by SIGKILL" in rows["sinks"]
    assert supervisor.watched["gateway"].restarts == 0
    supervisor.close()


def test_restarts_back_off(sleepers: Sleepers, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("loket_stack.supervisor.FIRST_DELAY", 0.1)
    said: list[str] = []
    supervisor = supervise(sleepers, said)
    supervisor.adopt()
    delays = []
    for restarts in (1, 2, 3):
        pid = sleepers.process_pid("gateway")
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        tick_until(supervisor, lambda: supervisor.watched["gateway"].state == "restarting")
        delays.append(supervisor.watched["gateway"].due - time.monotonic())
        tick_until(supervisor, lambda n=restarts: supervisor.watched["gateway"].restarts == n)  # type: ignore[misc]
    assert delays[0] < delays[1] < delays[2], delays
    supervisor.close()


def test_a_held_process_is_not_restarted_until_released(sleepers: Sleepers) -> None:
    said: list[str] = []
    supervisor = supervise(sleepers, said)
    supervisor.adopt()
    sleepers.hold("sinks")
    tick_until(supervisor, lambda: supervisor.watched["sinks"].state == "held")
    for _ in range(5):
        supervisor.tick()
    assert sleepers.process_pid("sinks") is None
    assert sleepers.status()["sinks"] == "stopped"
    sleepers.release("sinks")  # the supervisor (this process) starts it
    tick_until(supervisor, lambda: sleepers.process_pid("sinks") is not None)
    supervisor.close()
