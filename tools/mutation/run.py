"""`make mutation`: mutation testing of the pure domain modules against their service's unit tests.

cosmic-ray makes the mutants: its operators, one session per module in .cache/mutation/ (open one
with `cr-report` or `cr-html`). A sample of each module's mutants, drawn with a fixed seed, is run
against tests/unit/<service>; the score per module is printed, and every survivor with the reason
it changes nothing a user can observe (tools/mutation/equivalent.toml), or marked UNEXPLAINED.
Exit status 1 when a module scores under the threshold or a survivor is unexplained.

Mutants are applied to copies of the tree in a temporary directory, never to the working tree.
Each mutant's tests run in a process forked from a worker that has already imported pytest and
the libraries (which is most of a test run's time); the domain modules and the tests themselves
are imported afresh by every run. Settings: tools/mutation/cosmic-ray.toml.
"""

from __future__ import annotations

import argparse
import ast
import difflib
import importlib
import json
import multiprocessing as mp
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cosmic_ray.commands
import cosmic_ray.modules
import cosmic_ray.plugins
from cosmic_ray.mutating import use_mutation
from cosmic_ray.work_db import WorkDB, use_db
from cosmic_ray.work_item import TestOutcome, WorkerOutcome, WorkResult

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
CONFIG = HERE / "cosmic-ray.toml"
EQUIVALENT = HERE / "equivalent.toml"
SESSIONS = REPO / ".cache" / "mutation"
OURS = ("loket_booking", "loket_calendar", "loket_catalogue", "loket_notifications", "tests", "conftest")


@dataclass(frozen=True)
class Mutant:
    module: str  # path from the repository root
    job_id: str
    operator: str
    occurrence: int
    line: int

    @property
    def service(self) -> str:
        return Path(self.module).parts[1]


@dataclass(frozen=True)
class Outcome:
    mutant: Mutant
    killed: bool
    how: str  # "tests failed", "timeout", "survived", ...
    diff: str
    output: str
    seconds: float  # the mutant's test runs took


# --- the sessions and the sample --------------------------------------------------------------


def domain_modules(config: dict[str, Any], only: str | None) -> list[str]:
    paths = cosmic_ray.modules.find_modules([Path(p) for p in config["module-path"]])  # from the root
    paths = cosmic_ray.modules.filter_paths(paths, config.get("excluded-modules", ()))
    found = sorted(str(p) for p in paths)
    return [m for m in found if only is None or only in m]


def annotation_spans(source: str) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """Where the type annotations are, as (line, column) spans, in a module that never evaluates them
    (`from __future__ import annotations`): a mutant there changes no instruction that runs."""
    tree = ast.parse(source)
    postponed = any(
        isinstance(n, ast.ImportFrom) and n.module == "__future__" and any(a.name == "annotations" for a in n.names)
        for n in tree.body
    )
    if not postponed:
        return []
    lines = source.splitlines()

    def at(line: int, byte_col: int) -> tuple[int, int]:  # ast counts UTF-8 bytes, cosmic-ray characters
        return line, len(lines[line - 1].encode()[:byte_col].decode())

    spans = []
    for node in ast.walk(tree):
        if isinstance(node, ast.arg | ast.AnnAssign):
            found = node.annotation
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            found = node.returns
        else:
            continue
        if found is not None and found.end_lineno is not None and found.end_col_offset is not None:
            spans.append((at(found.lineno, found.col_offset), at(found.end_lineno, found.end_col_offset)))
    return spans


@dataclass(frozen=True)
class Sample:
    mutants: int  # what cosmic-ray makes of the module
    not_counted: int  # in annotations, or of an excluded operator
    chosen: list[Mutant]


def sample(module: str, config: dict[str, Any], seed: int, per_module: int | None, sessions: Path) -> Sample:
    """Init the module's session and mark all but the sample skipped."""
    excluded = tuple(config.get("filters", {}).get("operators-filter", {}).get("exclude-operators", ()))
    spans = annotation_spans(Path(module).read_text())
    with use_db(str(session_of(module, sessions)), WorkDB.Mode.create) as db:
        cosmic_ray.commands.init([Path(module)], db, config.get("operators", {}))
        items = sorted(db.work_items, key=lambda w: (w.mutations[0].operator_name, w.mutations[0].occurrence))
        eligible = [
            w
            for w in items
            if not any(w.mutations[0].operator_name.startswith(e) for e in excluded)
            and not any(a <= tuple(w.mutations[0].start_pos) < b for a, b in spans)
        ]
        rng = random.Random(f"{seed}/{module}")
        chosen = eligible if per_module is None else rng.sample(eligible, min(per_module, len(eligible)))
        chosen_ids = {w.job_id for w in chosen}
        skipped = WorkResult(output="not in the sample", worker_outcome=WorkerOutcome.SKIPPED)
        db.set_multiple_results([w.job_id for w in items if w.job_id not in chosen_ids], skipped)
    mutants = [
        Mutant(module, w.job_id, w.mutations[0].operator_name, w.mutations[0].occurrence, w.mutations[0].start_pos[0])
        for w in chosen
    ]
    return Sample(len(items), len(items) - len(eligible), sorted(mutants, key=lambda m: (m.line, m.operator)))


def session_of(module: str, sessions: Path) -> Path:
    return sessions / (module.replace("/", "_").removesuffix(".py") + ".sqlite")


def record(outcomes: list[Outcome], sessions: Path) -> None:
    """The results into the run's sessions, which then replace those of the previous run."""
    by_module: dict[str, list[Outcome]] = {}
    for o in outcomes:
        by_module.setdefault(o.mutant.module, []).append(o)
    for module, done in by_module.items():
        with use_db(str(session_of(module, sessions)), WorkDB.Mode.open) as db:
            for o in done:
                test = TestOutcome.KILLED if o.killed else TestOutcome.SURVIVED
                db.set_result(
                    o.mutant.job_id,
                    WorkResult(worker_outcome=WorkerOutcome.NORMAL, test_outcome=test, output=o.output, diff=o.diff),
                )


# --- the workers ------------------------------------------------------------------------------


CODE = ["services", "contracts/src", "libs/runtime/src", "deploy/local/src", "pyproject.toml"]


def copy_tree(dest: Path, at: str | None) -> None:
    """What a unit test run reads: the services, the contracts and the runtime, the tests (the unit
    tests and the modules of tests/ they import) and the pytest settings; as they are in the working
    tree, or as they were at commit `at` (to see the score then)."""
    dest.mkdir(parents=True)
    if at is not None:
        archive = subprocess.run(["git", "archive", at, *CODE, "tests"], cwd=REPO, capture_output=True, check=True)
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
        return
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "node_modules", ".venv", ".hypothesis")
    for name in [*CODE, "tests/unit", *(str(p.relative_to(REPO)) for p in (REPO / "tests").glob("*.py"))]:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, dest / name, ignore=ignore)
        else:
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, dest / name)


class FileTimes:
    """A pytest plugin: the seconds each test file takes (later runs try the quick ones first), and the
    file of the first test that failed (it is tried first on the module's next mutant)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.failed: str | None = None

    def pytest_runtest_logreport(self, report: Any) -> None:
        path = report.nodeid.split("::")[0]
        self.seconds[path] = self.seconds.get(path, 0.0) + report.duration
        if report.failed and self.failed is None:
            self.failed = path


def run_tests(
    tests: list[str], timeout: float, log: Path, baseline: Path | None = None
) -> tuple[int | None, float, str | None]:
    """Run the tests in a forked child: (exit code, or None on a timeout; seconds; the file of the first
    failed test). A baseline run also writes what it imported and how long each test file took into
    `baseline` (JSON)."""
    found = log.with_suffix(".failed")
    found.unlink(missing_ok=True)
    began = time.monotonic()
    pid = os.fork()
    if pid == 0:  # the child: its imports of our modules die with it
        code = 3
        try:
            fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            import pytest
            from hypothesis import settings

            settings.load_profile("mutation")
            # Only the unmutated baseline leaves compiled files behind, for the modules no mutant touches
            # (a mutated module's source is newer than its .pyc, so it is compiled afresh).
            sys.dont_write_bytecode = baseline is None
            times = FileTimes()
            args = ["-x", "-q", "-p", "no:cacheprovider", "--no-header", *tests]
            code = int(pytest.main(args, plugins=[times]))
            if times.failed is not None:
                found.write_text(times.failed)
            if baseline is not None:
                baseline.write_text(json.dumps({"modules": sorted(sys.modules), "seconds": times.seconds}))
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    deadline = began + timeout
    try:
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                failed = found.read_text() if found.exists() else None
                return os.waitstatus_to_exitcode(status), time.monotonic() - began, failed
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                return None, time.monotonic() - began, None
            time.sleep(0.005)
    except BaseException:  # the worker is stopped: so is the test run (a mutant may loop forever)
        os.kill(pid, signal.SIGKILL)
        raise


@dataclass(frozen=True)
class Suite:
    files: list[str]  # the service's unit test files, quickest first: a mutant is mostly killed early
    timeout: float


def worker(tree: Path, services: list[str], tasks: Any, results: Any) -> None:
    try:
        work(tree, services, tasks, results)
    except KeyboardInterrupt:  # stopped by the main process or Ctrl-C: the test run was killed already
        pass


def work(tree: Path, services: list[str], tasks: Any, results: Any) -> None:
    os.chdir(tree)
    sys.dont_write_bytecode = True  # see run_tests
    for src in [*(tree / c for c in CODE if c.endswith("/src")), *sorted(tree.glob("services/*/src"))]:
        sys.path.insert(0, str(src))
    from hypothesis import settings

    # The same examples on every run, and none carried from one mutant's run to the next.
    settings.register_profile("mutation", derandomize=True, database=None, print_blob=False)
    suites: dict[str, Suite] = {}
    imported: set[str] = set()
    for service in services:
        log, found = tree / f"baseline-{service}.log", tree / f"baseline-{service}.json"
        code, seconds, _ = run_tests([f"tests/unit/{service}"], 600, log, found)
        if code != 0:
            results.put(("baseline-failed", service, log.read_text()[-4000:]))
            return
        baseline = json.loads(found.read_text())
        files = sorted(baseline["seconds"], key=lambda f: baseline["seconds"][f])
        suites[service] = Suite(files, max(20.0, 6 * seconds))
        imported |= set(baseline["modules"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in sorted(imported):  # what every run imports anyway, once, but none of our own modules
            if name.split(".")[0] not in OURS and name != "__main__":
                try:
                    importlib.import_module(name)
                except Exception:  # a module that imports only inside pytest is imported there
                    continue
    results.put(("ready", str(tree), {s: suite.timeout for s, suite in suites.items()}))
    killers: dict[str, dict[str, int]] = {}  # per module: how many of its mutants each test file killed
    while (mutant := tasks.get()) is not None:
        results.put(("done", test_mutant(mutant, tree, suites[mutant.service], killers.setdefault(mutant.module, {}))))


def test_mutant(mutant: Mutant, tree: Path, suite: Suite, killers: dict[str, int]) -> Outcome:
    """Apply the mutant and run the service's tests against it: first the test file that killed most
    of this module's mutants so far, on its own (most mutants die there, without collecting the
    rest), then, if it passes, every other file."""
    operator = cosmic_ray.plugins.get_operator(mutant.operator)()
    log = tree / "mutant.log"
    ranked = sorted(suite.files, key=lambda f: -killers.get(f, 0))  # stable: quickest first among equals
    stages = [ranked[:1], ranked[1:]] if killers.get(ranked[0]) and len(ranked) > 1 else [ranked]
    began = time.monotonic()
    with use_mutation(Path(mutant.module), operator, mutant.occurrence) as (original, mutated):
        if mutated is None:
            return Outcome(mutant, False, "no mutation made", "", "", 0.0)
        for files in stages:
            code, _, failed = run_tests(files, suite.timeout, log)
            if code != 0:
                break
    seconds = time.monotonic() - began
    if failed is not None:
        killers[failed] = killers.get(failed, 0) + 1
    diff = "".join(
        difflib.unified_diff(original.splitlines(True), mutated.splitlines(True), mutant.module, mutant.module, n=0)
    )
    output = log.read_text(errors="replace")[-3000:] if log.exists() else ""
    if code is None:
        return Outcome(mutant, True, "timeout", diff, output, seconds)
    return Outcome(mutant, code != 0, "survived" if code == 0 else f"tests failed ({code})", diff, output, seconds)


# --- the report -------------------------------------------------------------------------------


def changed_lines(diff: str) -> tuple[str, str]:
    """The lines a mutant removes and adds, each side joined into one line without its indentation."""

    def side(sign: str) -> str:
        lines = (line[1:].strip() for line in diff.splitlines() if line[:1] == sign and line[:3] != sign * 3)
        return " ".join(line for line in lines if line)

    return side("-"), side("+")


def load_equivalents() -> list[dict[str, str]]:
    return list(tomllib.loads(EQUIVALENT.read_text()).get("equivalent", [])) if EQUIVALENT.exists() else []


def why_equivalent(outcome: Outcome, equivalents: list[dict[str, str]]) -> str | None:
    before, after = changed_lines(outcome.diff)
    for entry in equivalents:
        if entry["module"] == short(outcome.mutant.module) and (entry["before"], entry["after"]) == (before, after):
            return entry["reason"]
    return None


def short(module: str) -> str:
    parts = Path(module).parts  # services/<service>/src/<package>/domain/<file>
    return f"{parts[1]}/{'/'.join(parts[4:])}"


def report(samples: dict[str, Sample], outcomes: list[Outcome], threshold: float, seconds: float) -> bool:
    """Per module the share of the sampled mutants killed, and the score the threshold applies to:
    killed of those sampled that are not equivalent (a survivor explained in equivalent.toml changes
    nothing a test could see); then every survivor with why it changes nothing a user can observe."""
    equivalents = load_equivalents()
    reasons = {o.mutant.job_id: why_equivalent(o, equivalents) for o in outcomes if not o.killed}
    ok = True
    print(
        f"\n{'module':<36}{'mutants':>8}{'counted':>8}{'sampled':>8}{'killed':>7}{'survived':>9}"
        f"{'equivalent':>11}{'killed %':>9}{'score':>8}{'s/mutant':>9}"
    )
    rows = [
        (short(m), s.mutants, s.mutants - s.not_counted, [o for o in outcomes if o.mutant.module == m])
        for m, s in samples.items()
    ]
    rows.append(("all", sum(r[1] for r in rows), sum(r[2] for r in rows), outcomes))
    for name, mutants, counted, done in rows:
        killed = sum(o.killed for o in done)
        explained = sum(reasons.get(o.mutant.job_id) is not None for o in done)
        share = f"{100.0 * killed / len(done):.1f}%" if done else "-"
        score = f"{100.0 * killed / (len(done) - explained):.1f}%" if len(done) > explained else "-"
        pace = f"{sum(o.seconds for o in done) / len(done):.1f}" if done else "-"
        low = len(done) > explained and 100.0 * killed / (len(done) - explained) < threshold
        ok &= not low
        flag = f"  under {threshold:g} %" if low else ""
        print(
            f"{name:<36}{mutants:>8}{counted:>8}{len(done):>8}{killed:>7}{len(done) - killed:>9}"
            f"{explained:>11}{share:>9}{score:>8}{pace:>9}{flag}"
        )
    print("(counted: all but the mutants inside type annotations, which these modules never evaluate, and")
    print(" those of the operators excluded in tools/mutation/cosmic-ray.toml; score: killed of the sampled")
    print(" mutants that are not equivalent, which must reach the threshold in every module)")
    survivors = sorted((o for o in outcomes if not o.killed), key=lambda o: (o.mutant.module, o.mutant.line))
    if survivors:
        print("\nSurvivors, each with why it changes nothing a user can observe (tools/mutation/equivalent.toml):")
    unexplained = 0
    for o in survivors:
        reason = reasons[o.mutant.job_id]
        before, after = changed_lines(o.diff)
        print(f"\n  {short(o.mutant.module)}:{o.mutant.line}  {o.mutant.operator}")
        print(f"    - {before}\n    + {after}")
        if reason is None:
            unexplained += 1
            print("    UNEXPLAINED: a test should kill it, or tools/mutation/equivalent.toml say why it cannot")
        else:
            print(f"    equivalent: {reason}")
    print(f"\n{len(outcomes)} mutants run in {seconds / 60:.1f} min; {unexplained} survivors unexplained.")
    return ok and unexplained == 0


# --- main -------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    raw = tomllib.loads(CONFIG.read_text())["cosmic-ray"]
    own = raw.get("loket", {})
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=own.get("seed", 13))
    parser.add_argument("--per-module", type=int, default=own.get("per-module", 80), help="sample size per module")
    parser.add_argument("--all", action="store_true", help="every mutant, no sample")
    parser.add_argument("--workers", type=int, default=own.get("workers", 2))
    parser.add_argument("--module", help="only modules whose path contains this, e.g. notifications/domain/sms")
    parser.add_argument("--at", metavar="COMMIT", help="the code and the unit tests as they were at a commit")
    args = parser.parse_args(argv)
    threshold = float(own.get("threshold", 90.0))

    began = time.monotonic()
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # stopped: the workers and copies go too
    with tempfile.TemporaryDirectory(prefix="loket-mutation-") as tmp:
        trees = [Path(tmp) / f"tree-{n}" for n in range(args.workers)]
        copy_tree(trees[0], args.at)
        for tree in trees[1:]:
            shutil.copytree(trees[0], tree)
        os.chdir(trees[0])  # cosmic-ray's sessions name modules by their path from here, as in every copy
        sessions = Path(tmp) / "sessions"
        sessions.mkdir()
        modules = domain_modules(raw, args.module)
        samples = {m: sample(m, raw, args.seed, None if args.all else args.per_module, sessions) for m in modules}
        mutants = [m for s in samples.values() for m in s.chosen]
        size = "every mutant" if args.all else f"up to {args.per_module} mutants per module"
        code = f" of the code at {args.at}" if args.at else ""
        print(
            f"cosmic-ray {cosmic_ray_version()}: {len(mutants)} mutants{code} in {len(modules)} domain modules "
            f"({size}, seed {args.seed}), {args.workers} workers",
            flush=True,
        )
        outcomes = run_all(mutants, trees, began)
        os.chdir(REPO)
        if outcomes is None:
            return 2
        ok = report(samples, outcomes, threshold, time.monotonic() - began)
        record(outcomes, sessions)
        SESSIONS.mkdir(parents=True, exist_ok=True)
        for session in sessions.iterdir():
            shutil.copy2(session, SESSIONS / session.name)
    return 0 if ok else 1


def run_all(mutants: list[Mutant], trees: list[Path], began: float) -> list[Outcome] | None:
    """Every mutant's outcome, from a worker on each copy of the tree; None if a baseline fails."""
    services = sorted({m.service for m in mutants})
    ctx = mp.get_context("fork")
    tasks: Any = ctx.Queue()
    results: Any = ctx.Queue()
    outcomes: list[Outcome] = []
    procs = [ctx.Process(target=worker, args=(tree, services, tasks, results), daemon=True) for tree in trees]
    for p in procs:
        p.start()
    try:
        slowest: dict[str, float] = {}
        for _ in procs:
            kind, *rest = results.get()
            if kind == "baseline-failed":
                print(f"The unit tests of {rest[0]} fail without any mutant:\n{rest[1]}", file=sys.stderr)
                return None
            slowest = rest[1]
        # The slowest service's mutants first, so that the workers finish together.
        for m in sorted(mutants, key=lambda m: -slowest[m.service]):
            tasks.put(m)
        for _ in procs:
            tasks.put(None)
        while len(outcomes) < len(mutants):
            kind, outcome = results.get()
            outcomes.append(outcome)
            if len(outcomes) % 100 == 0:
                elapsed = time.monotonic() - began
                print(f"  {len(outcomes)}/{len(mutants)} after {elapsed / 60:.1f} min", file=sys.stderr, flush=True)
        for p in procs:
            p.join(30)  # each stops after its last mutant
    finally:
        for p in procs:
            p.join(1)
            if p.is_alive():
                p.terminate()
                p.join(10)
            if p.is_alive():
                p.kill()
                p.join()
    return outcomes


def cosmic_ray_version() -> str:
    from importlib.metadata import version

    return version("cosmic-ray")


if __name__ == "__main__":
    sys.exit(main())
