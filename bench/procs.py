"""Per-process CPU and memory while a scenario runs (psutil)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import psutil


def listening_pid(port: int) -> int | None:
    """The pid listening on 127.0.0.1:port (we run as the owner, so psutil sees it)."""
    for conn in psutil.net_connections(kind="tcp"):
        if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port and conn.pid:
            return conn.pid
    return None


def tree(pid: int) -> list[psutil.Process]:
    try:
        p = psutil.Process(pid)
        return [p, *p.children(recursive=True)]
    except psutil.Error:
        return []


def cpu_seconds(procs: list[psutil.Process]) -> float:
    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    return total


@dataclass
class Watch:
    """CPU seconds of groups of processes over a scenario, and the peak RSS of the single ones.

    groups: name -> root pid; `with_children` names are counted with their whole tree (PostgreSQL
    forks a backend per connection, so its tree is re-read at the end as well)."""

    groups: dict[str, int]
    with_children: set[str] = field(default_factory=set)
    interval: float = 0.5
    peak_rss_mb: dict[str, float] = field(default_factory=dict)
    cpu_s: dict[str, float] = field(default_factory=dict)
    wall_s: float = 0.0

    def _procs(self, name: str) -> list[psutil.Process]:
        pid = self.groups[name]
        if name in self.with_children:
            return tree(pid)
        try:
            return [psutil.Process(pid)]
        except psutil.Error:
            return []

    def __enter__(self) -> Watch:
        self._stop = threading.Event()
        self._start_cpu: dict[str, dict[int, float]] = {}
        for name in self.groups:
            self._start_cpu[name] = {p.pid: cpu_seconds([p]) for p in self._procs(name)}
        self._t0 = time.perf_counter()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            for name in self.groups:
                if name in self.with_children:
                    continue
                for p in self._procs(name):
                    try:
                        rss = p.memory_info().rss / 2**20
                    except psutil.Error:
                        continue
                    self.peak_rss_mb[name] = round(max(self.peak_rss_mb.get(name, 0.0), rss), 1)
            self._stop.wait(self.interval)

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        self.wall_s = time.perf_counter() - self._t0
        for name in self.groups:
            before = self._start_cpu[name]
            total = 0.0
            for p in self._procs(name):
                # a backend forked during the run started at 0 CPU seconds
                total += cpu_seconds([p]) - before.get(p.pid, 0.0)
            self.cpu_s[name] = round(total, 2)

    def summary(self) -> dict[str, object]:
        return {
            "wall_s": round(self.wall_s, 2),
            "cpu_s": self.cpu_s,
            "cpu_pct": {k: round(100 * v / self.wall_s) for k, v in self.cpu_s.items()} if self.wall_s else {},
            "peak_rss_mb": self.peak_rss_mb,
        }
