"""`make chaos`: the whole stack under a steady booking load while its parts fail, then the promise
checked: nothing lost, nothing doubled (docs/reliability.md says what and why).

    uv run python -m tools.chaos [--rate 2] [--outage-seconds 60] [--faults kafka,postgres] [--no-docs]

It starts its own stack (`python -m loket_stack up`, supervised, ports from LOKET_CHAOS_PORT_BASE,
default 24000, data in .data/chaos-<base>/) with two instances of booking, calendar and the
allocator; kills each part in turn with SIGKILL, puts a record of about 1 MiB on every topic, and
holds booking down for a simulated half hour; then checks every accepted booking, the desk-times,
the confirmations, the consumer groups and the dead letters. It prints the table, writes it into
docs/reliability.md (unless --no-docs), the figures into .data/chaos-<base>/result.json, and exits
with status 1 on any violation. Loopback only; 6 to 13 minutes on a 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter
from datetime import UTC, datetime

import httpx

from tools.chaos import checks, faults, report
from tools.chaos.faults import Chaos
from tools.chaos.load import Load
from tools.chaos.stack import ChaosStack

WARM_UP_SECONDS = 20.0
FINAL_DECISIONS_WITHIN = 120.0  # seconds for the last requests to be decided once the load stops
MAIL_WITHIN = 90.0  # seconds for the last confirmations to reach the mail sink


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=2.0, help="bookings per second, open loop (default 2)")
    parser.add_argument("--outage-seconds", type=float, default=60.0, help="the simulated half hour, in seconds")
    parser.add_argument("--no-docs", action="store_true", help="do not write the table into docs/reliability.md")
    parser.add_argument(
        "--faults",
        default=",".join(faults.ALL),
        help=f"the faults to cause, in this order (default: all of {','.join(faults.ALL)}); a run with"
        " fewer is not written into docs/reliability.md",
    )
    args = parser.parse_args()
    chosen = [name for name in args.faults.split(",") if name]
    if unknown := set(chosen) - set(faults.ALL):
        parser.error(f"unknown faults {sorted(unknown)}; choose among {','.join(faults.ALL)}")
    port_base = int(os.environ.get("LOKET_CHAOS_PORT_BASE", "24000"))
    time_scale = faults.OUTAGE_SIMULATED_SECONDS / args.outage_seconds

    began, started_at = time.monotonic(), datetime.now(UTC)
    load_before = os.getloadavg()
    stack = ChaosStack(port_base, time_scale)
    load = Load([stack.config.base_url, stack.second_url("booking")], args.rate)
    try:
        up_seconds = stack.start()
        print(f"[chaos] stack up in {up_seconds:.0f} s on ports {port_base}+ ({stack.data})", flush=True)
        chaos = Chaos(stack, load, checks.ops_client(stack.live))
        load.start()
        time.sleep(WARM_UP_SECONDS)
        for name in chosen:
            faults.cause(chaos, name, args.outage_seconds)
        load.stop()
        chaos.say(f"load stopped: {len(load.bookings)} bookings accepted; answers {dict(load.answers)}")
        figures = final_checks(chaos)
    finally:
        load.stop()
        stack.stop()
    figures.update(
        started=started_at.isoformat(timespec="seconds"),
        minutes=round((time.monotonic() - began) / 60, 1),
        machine=report.machine(load_before, os.getloadavg()),
        rate_per_second=args.rate,
        outage_seconds=args.outage_seconds,
        answers=dict(load.answers),
        gave_up=load.gave_up,
        restarts=stack.restarts_said(),
    )
    (stack.data / "result.json").write_text(json.dumps(figures, indent=1, default=str))
    text = report.tables(figures)
    print(text, flush=True)
    if not args.no_docs and chosen == list(faults.ALL):
        report.write_into_docs(text)
    return 0 if figures["ok"] else 1


def final_checks(chaos: Chaos) -> dict[str, object]:
    """The promise, checked once the load has stopped and the stack has caught up."""
    live, load = chaos.stack.live, chaos.load
    chaos.say("checking every accepted booking, the desk-times, the confirmations and the dead letters")
    states = checks.booking_states(live, load.bookings, FINAL_DECISIONS_WITHIN)
    lost = {b: s.get("status") for b, s in states.items() if s.get("status") not in checks.DECIDED}
    missing, duplicated, replaced = checks.untold(chaos.stack.mail_dir, states, MAIL_WITHIN)
    stored_letters, stored_parked, invisible = checks.invisible_letters(live, chaos.ops, timeout=30)
    ops = checks.ops_client(live)  # a fresh token: the run may outlast the first one
    failed = checks.failed_notifications(ops)
    converged = checks.converge(ops, time.monotonic(), faults.CONVERGE_WITHIN).lag_zero_s
    figures: dict[str, object] = {
        "accepted": len(load.bookings),
        "statuses": dict(sorted(Counter(str(s.get("status")) for s in states.values()).items())),
        "lost": lost,
        "double_booked_reservations": checks.overlapping_reservations(live),
        "double_booked_on_agendas": checks.overlapping_on_agendas(live, checks.booked_days(load.bookings)),
        "agenda_days": len(checks.booked_days(load.bookings)),
        "confirmed": sum(1 for s in states.values() if checks.ever_confirmed(s)),
        "missing_confirmations": missing,
        "duplicate_confirmations": duplicated,
        "confirmations_replaced": replaced,
        "failed_notifications": [f"{n.get('booking_id')} {n.get('kind')}: {n.get('last_error')}" for n in failed],
        "dead_letters": stored_letters,
        "parked": stored_parked,
        "invisible_letters": invisible,
        "converged_at_end_s": converged,
        "faults": [{**o.__dict__, "ok": o.ok} for o in chaos.outcomes],
    }
    figures["ok"] = (
        not lost
        and figures["double_booked_reservations"] == 0
        and figures["double_booked_on_agendas"] == 0
        and not missing
        and not duplicated
        and not failed
        and not invisible
        and converged is not None
        and all(o.ok for o in chaos.outcomes)
    )
    return figures


if __name__ == "__main__":
    try:
        sys.exit(main())
    except httpx.HTTPError as exc:
        print(f"[chaos] the run could not go on: {exc!r}", file=sys.stderr)
        sys.exit(2)
