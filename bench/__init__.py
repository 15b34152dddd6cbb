"""Loket benchmarks side by side with the one-transaction baseline (../shared/baseline).

Run `uv run python -m bench --help`; see bench/README.md.
"""

from __future__ import annotations

from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
BASELINE_DIR = (REPO.parent / "shared" / "baseline").resolve()
RESULTS = BENCH / "results"
