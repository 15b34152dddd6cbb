"""Runs ../shared/baseline/loadgen.py unchanged except for the residents' e-mail domain.

loadgen.py writes `person-<seed>-<i>@example.test`; Loket's booking service validates addresses with
email-validator, which refuses the special-use `.test` domain (422). This shim, run with the baseline
venv's python exactly like loadgen.py, rewrites the domain to `example.org` in the request bodies,
which loadgen builds before its clock starts, so timing is untouched. Both systems get the same shim.
"""

import sys
from pathlib import Path

sys.dont_write_bytecode = True  # keep ../shared/baseline clean
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "shared" / "baseline"))

import loadgen  # noqa: E402

_bodies = loadgen.bodies


def bodies(a, slots, n):  # type: ignore[no-untyped-def]
    return [b.replace(b"@example.test", b"@example.org") for b in _bodies(a, slots, n)]


loadgen.bodies = bodies

if __name__ == "__main__":
    loadgen.main()
