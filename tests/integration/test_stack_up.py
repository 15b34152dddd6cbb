"""`make up` (`python -m loket_stack up`) in the foreground: it says when it is up, and SIGTERM
(what a process manager or `kill` sends) stops every process it started, as Ctrl-C does, even
when a second signal follows at once."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

from loket_stack.runner import PORT_OFFSETS, REPO, Stack, StackConfig
from tests.conftest import PORT_BASE

BASE = PORT_BASE + 600  # beside the test session's own stack


def test_sigterm_stops_what_up_started() -> None:
    data = REPO / ".data" / f"test-up-{BASE}"
    shutil.rmtree(data, ignore_errors=True)
    env = {
        **os.environ,
        "LOKET_DATA_DIR": str(data),
        # the infrastructure, the sinks and the gateway: enough to see every kind of process stop
        "LOKET_STACK_SKIP": "catalogue,booking,calendar,notifications",
        **{f"LOKET_PORT_{name.upper()}": str(BASE + offset) for name, offset in PORT_OFFSETS.items()},
    }
    up = subprocess.Popen(
        [sys.executable, "-m", "loket_stack", "up"], cwd=REPO, env=env, stdout=subprocess.PIPE, text=True
    )
    stack = Stack(StackConfig.on_ports_from(BASE, data=data))
    try:
        assert up.stdout is not None
        for line in up.stdout:
            if line.startswith("Loket is up"):
                break
        else:
            raise AssertionError(f"up ended without starting (exit {up.wait()})")
        assert stack.status()["gateway"] == "running" and stack.status()["kafka"] == "running"
        time.sleep(1.5)  # into the loop that watches the processes
        up.send_signal(signal.SIGTERM)
        time.sleep(0.05)
        up.send_signal(signal.SIGTERM)  # impatience: must neither hang nor cut the stopping short
        out, _ = up.communicate(timeout=60)
        assert up.returncode == 0
        assert "Loket stopped." in out
        assert set(stack.status().values()) == {"stopped"}
    finally:
        if up.poll() is None:
            up.kill()
        stack.down()
        shutil.rmtree(data, ignore_errors=True)
