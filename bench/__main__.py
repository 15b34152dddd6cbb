"""Loket benchmarks, side by side with the one-transaction baseline (../shared/baseline).

  uv run python -m bench                                  # everything, full length (make bench)
  uv run python -m bench --quick                          # shorter runs
  uv run python -m bench --scenarios storm,hot --quick    # a subset
  uv run python -m bench --scenarios profile              # py-spy on every service during a storm

Scenarios: storm, hot, steady, allocator, availability, agenda_under_flood, rebuild; profile and notifications (not in
the default set).
Writes bench/results/<UTC date-time>.json and refreshes the figures in bench/README.md (--no-readme to skip).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import time
import traceback
from typing import Any

import psutil

from bench import RESULTS, calendar_figs, notifications_figs, report
from bench.baseline import LOCATION as BASE_LOCATION
from bench.baseline import PRODUCT as BASE_PRODUCT
from bench.baseline import Baseline, loadgen
from bench.loket import PORT_BASE, PRODUCT, PYTHON_PROCS, Loket, check_agenda, reservations_check, wait_drained
from bench.procs import Watch, listening_pid

DEFAULT = "storm,hot,steady,allocator,availability,agenda_under_flood,rebuild"
CAPACITY = 5  # desks per bench location, all serving bench-card


def log(msg: str) -> None:
    print(f"[bench {dt.datetime.now(dt.UTC):%H:%M:%S}] {msg}", file=sys.stderr, flush=True)


def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "load_avg_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def tree_state() -> dict[str, Any]:
    """The commit measured, and the files other developers had changed but not committed yet."""
    import subprocess

    from bench import REPO

    def git(*args: str) -> str:
        out = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True)
        return out.stdout.rstrip()  # keep the leading blank of " M path"

    return {
        "commit": git("rev-parse", "--short", "HEAD").strip(),
        "uncommitted": [
            line[3:] for line in git("status", "--short", "services", "libs", "contracts", "deploy").splitlines()
        ],
    }


def busy_elsewhere(exclude: set[int]) -> float:
    """CPU % (100 = one core) used by processes that are not ours over one second: the contention."""
    procs = []
    for p in psutil.process_iter():
        try:
            if p.pid in exclude:
                continue
            p.cpu_percent(None)
            procs.append(p)
        except psutil.Error:
            pass
    time.sleep(1)
    total = 0.0
    for p in procs:
        try:
            total += p.cpu_percent(None)
        except psutil.Error:
            pass
    return round(total)


class Bench:
    def __init__(self, a: argparse.Namespace) -> None:
        self.a = a
        self.baseline = Baseline(port=a.baseline_port) if not a.no_baseline else None
        extra = dict(kv.split("=", 1) for kv in a.env)
        self.loket = Loket(extra_env=extra)
        self.results: dict[str, Any] = {
            "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "mode": "quick" if a.quick else "full",
            "scenarios": a.scenarios,
            "machine": machine(),
            "tree": tree_state(),
            "loket_extra_env": extra,
            "notes": [],
            "runs": {},
        }
        self.dirty = False
        self.seed = 100  # distinct residents across scenarios (one active booking per person and product)

    # --- helpers -----------------------------------------------------------------------------

    def loket_groups(self) -> tuple[dict[str, int], set[str]]:
        groups = dict(self.loket.pids())
        for name, port in (("postgres", self.loket.config.postgres), ("kafka", self.loket.config.kafka)):
            pid = listening_pid(port)
            if pid:
                groups[name] = pid
        return groups, {"postgres", "gateway"}  # nginx's workers are the edge's children

    def baseline_groups(self) -> tuple[dict[str, int], set[str]]:
        assert self.baseline is not None and self.baseline.proc is not None
        groups = {"uvicorn": self.baseline.proc.pid}
        pid = listening_pid(self.baseline.pg_port)
        if pid:
            groups["postgres"] = pid
        return groups, {"uvicorn", "postgres"}

    def contention(self) -> float:
        ours = {os.getpid()}
        for groups, _ in [self.loket_groups()] + (
            [self.baseline_groups()] if self.baseline and self.baseline.proc else []
        ):
            for pid in groups.values():
                ours.add(pid)
                try:
                    ours |= {c.pid for c in psutil.Process(pid).children(recursive=True)}
                except psutil.Error:
                    pass
        return busy_elsewhere(ours)

    def run_pair(self, name: str, mode: str, args: list[str], capacity_check: int) -> None:
        """The same loadgen run against the baseline and against Loket (fresh data for each)."""
        self.seed += 1
        seed = ["--seed", str(self.seed)]
        entry: dict[str, Any] = {"contention_cpu_pct_before": self.contention()}
        if self.baseline:
            self.baseline.seed()
            groups, kids = self.baseline_groups()
            log(f"{name}: baseline")
            with Watch(groups, with_children=kids) as w:
                r = loadgen(mode, self.baseline.url, BASE_PRODUCT, BASE_LOCATION, *args, *seed, "--label", "baseline")
            r["processes"] = w.summary()
            r["db_check"] = self.baseline.oversold_from_db()
            entry["baseline"] = r
        self.fresh_if_dirty()
        location = self.loket.take_location()
        groups, kids = self.loket_groups()
        log(f"{name}: loket at {location}")
        with Watch(groups, with_children=kids) as w:
            r = loadgen(mode, self.loket.url, PRODUCT, location, *args, *seed, "--label", "loket")
        r["processes"] = w.summary()
        r["location"] = location
        log(f"{name}: waiting until every consumer has caught up")
        r["pipeline_after_last_answer"] = drained = wait_drained(self.loket, self.a.drain_timeout)
        self.dirty = not drained["drained"]
        log(f"{name}: reading the agenda of {location}")
        r["agenda_check"] = check_agenda(self.loket, location, int(r["ok_201"]), capacity_check, timeout=10)
        r["reservations_check"] = reservations_check(self.loket, location, capacity_check)
        entry["loket"] = r
        if "baseline" in entry and entry["baseline"]["rps"]:
            entry["ratio_rps_loket_to_baseline"] = round(r["rps"] / entry["baseline"]["rps"], 2)
        entry["contention_cpu_pct_after"] = self.contention()
        self.results["runs"][name] = entry
        self.save()

    def save(self) -> None:
        RESULTS.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(self.results, indent=1, default=str) + "\n")

    def fresh_if_dirty(self) -> None:
        """A run that left a backlog would slow the next one down: start that one on a fresh stack."""
        if self.dirty:
            log("the last run left a backlog: restarting Loket on fresh data")
            self.results.setdefault("restarts_s", []).append(self.loket.reset())
            self.dirty = False

    # --- scenarios ---------------------------------------------------------------------------

    def storm(self) -> None:
        args = ["--requests", "5000", "--concurrency", "200", "--slots", "100", "--capacity", str(CAPACITY)]
        self.run_pair("storm", "storm", args, CAPACITY)

    def hot(self) -> None:
        args = ["--requests", "5000", "--concurrency", "200", "--slots", "1", "--capacity", str(CAPACITY)]
        self.run_pair("hot", "storm", args, CAPACITY)

    def steady(self) -> None:
        for rate in self.a.rates:
            args = ["--rate", str(rate), "--duration", str(self.a.duration)]
            self.run_pair(f"steady_{rate}", "steady", args, CAPACITY)

    def allocator(self) -> None:
        """Every request gets a desk (no alternatives to compute)."""
        self.fresh_if_dirty()
        n_fill = 3360  # every place of a location's 60 days, and some more: quick or not
        log(f"allocator: {n_fill} requests, every one gets a desk")
        fill = calendar_figs.allocator(self.loket, n_fill, None, "fill", timeout=self.a.allocator_timeout)
        self.results["runs"]["allocator_fill"] = fill
        self.dirty = not fill["complete"]
        self.save()

    def allocator_storm(self) -> None:
        """A storm's mix: 500 places on 100 starts, the rest rejected with alternatives."""
        self.fresh_if_dirty()
        # Long enough for several of the allocator's batches (up to 2,000), so "steady" means it.
        n_storm = 20_000 if not self.a.quick else 10_000
        log(f"allocator: {n_storm} requests on 100 starts (500 places), the rest rejections with alternatives")
        storm = calendar_figs.allocator(self.loket, n_storm, 100, "storm", timeout=self.a.allocator_timeout)
        self.results["runs"]["allocator_storm"] = storm
        self.dirty = not storm["complete"]
        self.save()

    def availability(self) -> None:
        self.fresh_if_dirty()
        # thousands per second once answers are kept: fewer requests would leave p99 to a handful of them
        n = 20_000 if not self.a.quick else 5_000
        log(f"availability: {n} requests, 50 concurrent, residence-card, all locations, 60 days")
        self.results["runs"]["availability"] = calendar_figs.availability(self.loket, 50, n)
        self.save()

    def agenda_under_flood(self) -> None:
        self.fresh_if_dirty()
        log("agenda under flood: the staff agenda alone, then while 40 clients read 92 days of availability")
        self.results["runs"]["agenda_under_flood"] = calendar_figs.agenda_under_flood(self.loket)
        self.save()

    def rebuild(self) -> None:
        self.fresh_if_dirty()
        log("rebuild of the agenda projection")
        self.results["runs"]["rebuild"] = calendar_figs.rebuild(self.loket)
        self.save()

    def notifications(self) -> None:
        """A storm's decisions worked off by notifications started afresh: messages/s into the SMTP sink."""
        self.fresh_if_dirty()
        n = 5_000 if not self.a.quick else 2_000
        self.seed += 1
        log(f"notifications: {n} bookings with notifications stopped, then the backlog into the SMTP sink")
        run = notifications_figs.notifications(self.loket, n, self.seed)
        self.results["runs"]["notifications"] = run
        self.dirty = not run["complete"]
        self.save()

    def profile(self) -> None:
        from bench.profiling import Recorder, summarise

        location = self.loket.take_location()
        pids = {k: v for k, v in self.loket.pids().items() if k in PYTHON_PROCS and k != "sinks"}
        out_dir = RESULTS / f"profile-{self.stamp}"
        rec = Recorder(pids, out_dir)
        self.seed += 1
        self.fresh_if_dirty()
        log(f"profile: py-spy on {sorted(pids)}, storm at {location}")
        rec.start()
        time.sleep(1)
        groups, kids = self.loket_groups()
        try:
            with Watch(groups, with_children=kids) as w:
                r = loadgen(
                    "storm", self.loket.url, PRODUCT, location, "--requests", "5000", "--concurrency", "200",
                    "--slots", "100", "--capacity", str(CAPACITY), "--seed", str(self.seed),
                    "--label", "loket-profiled",
                )  # fmt: skip
                # the pipeline keeps working after the last answer (projections, notifications): 3 s more
                time.sleep(3)
        finally:
            rec.stop()
        r["processes"] = w.summary()
        summary = {}
        for name in pids:
            raw = out_dir / f"{name}.txt"
            if raw.exists():
                summary[name] = summarise(raw)
                summary[name]["cpu_s_during_run"] = w.cpu_s.get(name)
        self.results["runs"]["profile"] = {"storm_under_py_spy": r, "services": summary, "raw_dir": str(out_dir)}
        self.dirty = True
        self.save()

    def profile_availability(self) -> None:
        """py-spy on the calendar while 50 clients read availability (through the edge, nginx: not Python)."""
        from bench.profiling import Recorder, summarise

        self.fresh_if_dirty()
        pids = {k: v for k, v in self.loket.pids().items() if k == "calendar"}
        out_dir = RESULTS / f"profile-availability-{self.stamp}"
        rec = Recorder(pids, out_dir)
        log(f"profile: py-spy on {sorted(pids)} during availability reads")
        rec.start()
        time.sleep(1)
        try:
            with Watch(pids) as w:
                r = calendar_figs.availability_once(self.loket, 50, 200 if self.a.quick else 500)
        finally:
            rec.stop()
        summary = {}
        for name in pids:
            raw = out_dir / f"{name}.txt"
            if raw.exists():
                summary[name] = summarise(raw)
                summary[name]["cpu_s_during_run"] = w.cpu_s.get(name)
        self.results["runs"]["profile_availability"] = {"run": r, "services": summary, "raw_dir": str(out_dir)}
        self.save()

    # --- the whole run -------------------------------------------------------------------------

    def run(self) -> int:
        self.stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H%M")
        # Two benchmarks on other ports (LOKET_BENCH_PORT_BASE) may start in the same minute.
        ports = "" if PORT_BASE == 23000 else f"-p{PORT_BASE}"
        self.path = RESULTS / f"{self.stamp}{'-quick' if self.a.quick else ''}{ports}.json"
        wanted = self.a.scenarios
        pair = any(s in wanted for s in ("storm", "hot", "steady"))
        rc = 0
        try:
            if self.baseline and pair:
                log("starting the baseline (its own PostgreSQL, uvicorn)")
                self.baseline.start()
                self.results["baseline"] = {
                    "url": self.baseline.url,
                    "dsn": self.baseline.dsn,
                    "note": self.baseline.note,
                }
            log("starting Loket's stack (fresh .data/bench)")
            t = time.perf_counter()
            self.loket.up(fresh=not self.a.keep_data)
            self.results["loket"] = {
                "url": self.loket.url,
                "start_s": round(time.perf_counter() - t, 1),
                "start_timings": self.loket.start_timings,
                "services": sorted(self.loket.pids()),
            }
            self.results["notes"] += self.loket.notes
            self.results["contention_cpu_pct_idle"] = self.contention()
            # the allocator's fill leaves events for the rebuild and reservations for availability;
            # its storm variant may leave a backlog, so it comes after them
            order = (
                "storm",
                "hot",
                "steady",
                "allocator",
                "rebuild",
                "availability",
                "agenda_under_flood",
                "allocator_storm",
                "notifications",
                "profile",
                "profile_availability",
            )
            for name in order:
                if name == "allocator_storm" and "allocator" in wanted:
                    pass
                elif name not in wanted:
                    continue
                try:
                    getattr(self, name)()
                except Exception as exc:  # one failed scenario must not lose the others
                    log(f"{name} failed: {exc!r}")
                    traceback.print_exc()
                    self.results["runs"][f"{name}_error"] = repr(exc)
                    rc = 1
        finally:
            self.results["finished"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
            self.results["machine"]["load_avg_at_end"] = [round(x, 2) for x in os.getloadavg()]
            self.save()
            if not self.a.keep_up:
                log("stopping everything")
                self.loket.down()
                if self.baseline:
                    self.baseline.stop()
        log(f"results in {self.path}")
        try:
            report.write(self.results, self.path, update_readme=not self.a.no_readme)
        except Exception:
            traceback.print_exc()
            rc = 1
        return rc


def main() -> int:
    import signal

    def stop(*_: object) -> None:
        raise KeyboardInterrupt  # clean up (stack down, baseline stop) on SIGTERM too

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even when started in the background
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--scenarios", default=DEFAULT, help=f"comma-separated subset (default {DEFAULT}; also: profile, notifications)"
    )
    p.add_argument("--quick", action="store_true", help="steady runs of 10 s, smaller allocator/availability runs")
    p.add_argument("--rates", default="100,200,400", help="steady rates, req/s")
    p.add_argument("--duration", type=float, help="steady seconds (default 30, quick 10)")
    p.add_argument("--no-baseline", action="store_true", help="Loket only")
    p.add_argument("--baseline-port", type=int, default=8090)
    p.add_argument(
        "--env", action="append", default=[], help="KEY=VALUE for Loket's services (e.g. LOKET_KAFKA_LINGER_MS=5)"
    )
    p.add_argument(
        "--drain-timeout", type=float, default=60,
        help="seconds to wait for Loket's consumers to catch up after a run; past that, the next run starts afresh",
    )  # fmt: skip
    p.add_argument("--allocator-timeout", type=float, help="seconds to follow the allocator (default 300, quick 120)")
    p.add_argument("--keep-up", action="store_true", help="leave both systems running at the end")
    p.add_argument("--keep-data", action="store_true", help="do not wipe .data/bench before starting")
    p.add_argument("--no-readme", action="store_true", help="do not refresh the figures in bench/README.md")
    a = p.parse_args()
    a.scenarios = [s.strip() for s in a.scenarios.split(",") if s.strip()]
    a.rates = [int(r) for r in a.rates.split(",")]
    a.duration = a.duration or (10 if a.quick else 30)
    a.allocator_timeout = a.allocator_timeout or (120 if a.quick else 300)
    return Bench(a).run()


if __name__ == "__main__":
    sys.exit(main())
