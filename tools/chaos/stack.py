"""The chaos run's own stack: `python -m loket_stack up` (the runner and its supervisor, as `make up`)
on ports and a data folder of its own, with a second instance of booking, calendar and the
calendar's allocator, and the notifications retry policy on a compressed time scale.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from loket_stack.runner import PORT_OFFSETS, REPO, SECOND_PORT_OFFSET, SECOND_SUFFIX, Stack, StackConfig
from tests.conftest import RunningStack, wait_for_seed

DOUBLED = ("booking", "calendar", "calendar-allocator")
# The notifications retry policy's real figures (entrypoints/app.py): 5 s doubling up to 600 s.
RETRY_BASE_SECONDS = 5.0
RETRY_MAX_SECONDS = 600.0


class ChaosStack:
    """The whole stack under `up`'s supervisor; `live` gives the same handles the tests use.

    `time_scale` divides the notifications retry policy (base and cap): an outage of N seconds here
    leaves messages in the state (attempts, next try) that N x time_scale seconds would leave them in.
    """

    def __init__(self, port_base: int, time_scale: float) -> None:
        self.data = REPO / ".data" / f"chaos-{port_base}"
        self.env = {
            **os.environ,
            "LOKET_DATA_DIR": str(self.data),
            "LOKET_STACK_DOUBLE": ",".join(DOUBLED),
            # The load comes from 127.0.0.1 at a few bookings a second: past the edge's per-client
            # budget for residents, so, as in the tests' stack, it may pass the rate limits.
            "LOKET_EDGE_TRUSTED_CLIENTS": "127.0.0.1",
            "LOKET_RETRY_BASE_SECONDS": f"{RETRY_BASE_SECONDS / time_scale:.3f}",
            "LOKET_RETRY_MAX_SECONDS": f"{RETRY_MAX_SECONDS / time_scale:.3f}",
            **{f"LOKET_PORT_{name.upper()}": str(port_base + offset) for name, offset in PORT_OFFSETS.items()},
        }
        os.environ["LOKET_STACK_DOUBLE"] = self.env["LOKET_STACK_DOUBLE"]  # this process's Stack knows them too
        self.config = StackConfig.on_ports_from(port_base, data=self.data, trusted_clients=("127.0.0.1",))
        self.stack = Stack(self.config)
        self.live = RunningStack(self.stack, self.config)
        self.up_process: subprocess.Popen[str] | None = None
        self.lines: list[str] = []

    # --- the supervised stack ---------------------------------------------------------------

    def start(self, timeout: float = 300) -> float:
        """A fresh stack (data wiped), up and seeded; returns the seconds it took."""
        began = time.monotonic()
        self.stack.down()
        shutil.rmtree(self.data, ignore_errors=True)
        self.up_process = subprocess.Popen(
            [sys.executable, "-m", "loket_stack", "up"],
            cwd=REPO,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # Ctrl-C on `make chaos` reaches the run, which stops the stack itself
        )
        threading.Thread(target=self._read_output, daemon=True).start()
        deadline = time.monotonic() + timeout
        while not any(line.startswith("Loket is up") for line in self.lines):
            if self.up_process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the chaos stack did not start:\n" + "\n".join(self.lines[-40:]))
            time.sleep(0.5)
        wait_for_seed(self.config.base_url, timeout=120)
        return time.monotonic() - began

    def _read_output(self) -> None:
        assert self.up_process is not None and self.up_process.stdout is not None
        self.data.mkdir(parents=True, exist_ok=True)
        with (self.data / "up.log").open("a") as log:
            for line in self.up_process.stdout:
                self.lines.append(line.rstrip("\n"))
                log.write(line)
                log.flush()

    def stop(self) -> None:
        """`make down` for this stack: the supervising `up` stops everything and ends."""
        self.stack.down()
        if self.up_process is not None:
            try:
                self.up_process.wait(timeout=120)
            except subprocess.TimeoutExpired:
                os.killpg(self.up_process.pid, signal.SIGKILL)

    # --- faults -----------------------------------------------------------------------------

    def kill(self, name: str) -> int:
        """`kill -9` of one process (PostgreSQL: its postmaster; Kafka: its broker); returns its pid."""
        pid = self.stack.process_pid(name)
        if pid is None:
            raise RuntimeError(f"{name} does not run; nothing to kill")
        os.kill(pid, signal.SIGKILL)
        return pid

    def wait_back(self, name: str, old_pid: int, timeout: float = 180) -> float:
        """Seconds until the supervisor has `name` running (and ready) again under another pid."""
        began = time.monotonic()
        while time.monotonic() - began < timeout:
            state = (self.stack.supervisor_state() or {}).get("processes", {}).get(name, {})
            if state.get("state") == "running" and state.get("pid") not in (None, old_pid):
                return time.monotonic() - began
            time.sleep(0.2)
        raise RuntimeError(f"{name} not back {timeout:.0f} s after it was killed:\n" + "\n".join(self.lines[-20:]))

    def hold(self, name: str) -> None:
        """`python -m loket_stack stop NAME`: stopped, and the supervisor leaves it so."""
        self._cli("stop", name)

    def release(self, name: str) -> None:
        """`python -m loket_stack start NAME`: the supervisor starts it again."""
        self._cli("start", name)

    def _cli(self, *args: str) -> None:
        subprocess.run([sys.executable, "-m", "loket_stack", *args], cwd=REPO, env=self.env, check=True, timeout=120)

    def restarts_said(self) -> list[str]:
        """What the supervisor said about processes that stopped and came back."""
        return [line for line in self.lines if re.search(r"stopped unexpectedly|is back|restarted \(pid", line)]

    # --- where things are -------------------------------------------------------------------

    def second_url(self, service: str) -> str:
        """The HTTP API of a service's second instance (the gateway routes to the first)."""
        return f"http://127.0.0.1:{getattr(self.config, service) + SECOND_PORT_OFFSET}"

    @property
    def mail_dir(self) -> Path:
        return self.live.mail_dir

    @staticmethod
    def second(name: str) -> str:
        return name + SECOND_SUFFIX
