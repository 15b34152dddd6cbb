"""py-spy on every Loket Python process while a storm runs, and a summary of where the time goes."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

TOOLS = Path(os.environ.get("BENCH_TOOLS_VENV", "/tmp/bench-tools"))


def py_spy() -> str | None:
    """py-spy from PATH, the baseline venv, or /tmp/bench-tools (installed there from PyPI if missing)."""
    for candidate in (shutil.which("py-spy"), "/tmp/baseline-venv/bin/py-spy", str(TOOLS / "bin" / "py-spy")):
        if candidate and Path(candidate).exists():
            return candidate
    try:
        python = shutil.which("python3.11") or sys.executable
        subprocess.run([python, "-m", "venv", str(TOOLS)], check=True)
        subprocess.run([str(TOOLS / "bin" / "pip"), "install", "-q", "py-spy"], check=True)
    except subprocess.CalledProcessError:
        return None
    return str(TOOLS / "bin" / "py-spy")


class Recorder:
    """`py-spy record --format raw` (collapsed stacks) on each pid until stop()."""

    def __init__(self, pids: dict[str, int], out_dir: Path, rate: int = 100) -> None:
        self.pids = pids
        self.out_dir = out_dir
        self.rate = rate
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self) -> None:
        exe = py_spy()
        if exe is None:
            raise RuntimeError("py-spy is not available")
        self.out_dir.mkdir(parents=True, exist_ok=True)
        for name, pid in self.pids.items():
            self.procs[name] = subprocess.Popen(
                [exe, "record", "--pid", str(pid), "--rate", str(self.rate), "--format", "raw", "--nonblocking",
                 "--output", str(self.out_dir / f"{name}.txt")],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            )  # fmt: skip

    def stop(self) -> None:
        for proc in self.procs.values():
            proc.send_signal(signal.SIGINT)
        for proc in self.procs.values():
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()


WRAPPERS = (
    ":<module>",
    ":run",
    ":_run",
    ":run_forever",
    ":_run_once",
    ":run_until_complete",
    ":serve",
    ":keep_running",
    ":asyncio_run",
    ":_main",
    ":main",
)
IDLE = ("select (selectors.py", "poll (selectors.py", "epoll", "_run_once (asyncio/base_events.py")


def frame_name(frame: str) -> str:
    """'func (path/to/file.py:123)' -> 'file.py:func' with a shortened path."""
    if " (" not in frame:
        return frame
    func, rest = frame.split(" (", 1)
    path = rest.rsplit(":", 1)[0].rstrip(")")
    for marker in ("site-packages/", "/src/", "lib/python3.11/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{path}:{func}"


def summarise(raw: Path, top: int = 15) -> dict[str, Any]:
    """Self and inclusive sample counts per function (file:function), idle (waiting in epoll) apart."""
    self_counts: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    total = idle = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        count = int(n)
        frames = stack.split(";")
        total += count
        leaf = frames[-1]
        if any(marker in leaf for marker in IDLE) or leaf.startswith("select ") or leaf.startswith("poll "):
            idle += count
            continue
        names = [frame_name(f) for f in frames if " (" in f]
        if names:
            self_counts[names[-1]] += count
        for name in set(names):
            incl[name] += count
    busy = total - idle

    def pct(c: int) -> float:
        return round(100 * c / busy, 1) if busy else 0.0

    return {
        "samples": total,
        "idle_samples": idle,
        "busy_pct_of_samples": round(100 * busy / total, 1) if total else 0.0,
        "top_self": [(k, pct(v)) for k, v in self_counts.most_common(top)],
        "top_inclusive": [
            (k, pct(v))
            for k, v in incl.most_common(top * 4)
            if not k.endswith(WRAPPERS) and not k.startswith(("<frozen runpy>", "uvicorn/", "asyncio/runners.py"))
        ][:top],
    }
