"""Tables (markdown) and plots (PNG) from a results JSON; refreshes the figures block of bench/README.md.

uv run python -m bench.report bench/results/<file>.json     # redo the report of an earlier run
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from bench import BENCH

START, END = "<!-- figures:start -->", "<!-- figures:end -->"
PAIRS = ("storm", "hot", "steady_100", "steady_200", "steady_400")


def _lat(r: dict[str, Any]) -> str:
    lat = r.get("latency_ms", {})
    return " / ".join(f"{lat.get(k, '-')}" for k in ("p50", "p95", "p99", "max"))


def _status(r: dict[str, Any]) -> str:
    other = r.get("other") or {}
    return f"{r.get('ok_201', 0)} / {r.get('conflict_409', 0)} / {sum(other.values()) if other else 0}" + (
        f" ({', '.join(f'{k}: {v}' for k, v in other.items())})" if other else ""
    )


def _rss(r: dict[str, Any]) -> str:
    rss = r.get("processes", {}).get("peak_rss_mb", {})
    return ", ".join(f"{k} {v:.0f}" for k, v in sorted(rss.items()) if k not in ("kafka",))


def _cpu(r: dict[str, Any]) -> str:
    cpu = r.get("processes", {}).get("cpu_pct", {})
    return ", ".join(f"{k} {v}" for k, v in sorted(cpu.items(), key=lambda kv: -kv[1]))


def tables(res: dict[str, Any]) -> str:
    runs = res.get("runs", {})
    m = res.get("machine", {})
    out = [
        f"Run of {res.get('started')} ({res.get('mode')} mode) on {m.get('cores')} × {m.get('cpu')}, "
        f"{m.get('memory_gib')} GiB; load average {m.get('load_avg_at_start')} at start, "
        f"{m.get('load_avg_at_end')} at the end. CPU used by other people's processes while idle: "
        f"{res.get('contention_cpu_pct_idle', '?')}% (100 = one core)."
    ]
    if res.get("notes"):
        out.append("Notes: " + "; ".join(res["notes"]))
    rows = [p for p in PAIRS if p in runs] + sorted(k for k in runs if k.startswith("steady_") and k not in PAIRS)
    if rows:
        out += [
            "",
            "| scenario | system | req/s | ratio | p50 / p95 / p99 / max ms | 201 / 409 / other | oversold "
            "| client CPU % | other load % |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for name in rows:
            e = runs[name]
            for system in ("baseline", "loket"):
                r = e.get(system)
                if not r:
                    continue
                if system == "loket":
                    chk = r.get("agenda_check", {})
                    res_chk = r.get("reservations_check", {})
                    over = (
                        f"agenda: {chk.get('oversold')} ({chk.get('active')} active, double-booked desk-times "
                        f"{chk.get('double_booked_desk_times')}); reservations table: {res_chk.get('oversold')} "
                        f"({res_chk.get('reservations')}, double {res_chk.get('double_booked_desk_times')})"
                    )
                    ratio = f"{e.get('ratio_rps_loket_to_baseline', '-')}×"
                else:
                    chk = r.get("db_check", {})
                    over = f"{chk.get('oversold')} ({chk.get('bookings')} in DB)"
                    ratio = ""
                out.append(
                    f"| {name} | {system} | {r['rps']} | {ratio} | {_lat(r)} | {_status(r)} | {over} | "
                    f"{r.get('client_cpu_pct')} | {e.get('contention_cpu_pct_before', '?')} |"
                )
        out += ["", "CPU by process during each run (% of one core) and peak RSS (MB) of Loket's Python processes:", ""]
        out += [
            "| scenario | system | CPU % by process | CPU ms per request, all processes | peak RSS MB "
            "| consumers caught up after the last answer |",
            "|---|---|---|---|---|---|",
        ]
        for name in rows:
            for system in ("baseline", "loket"):
                r = runs[name].get(system)
                if r:
                    drain = r.get("pipeline_after_last_answer", {})
                    caught = (
                        ""
                        if system == "baseline"
                        else f"{drain.get('drain_s')} s"
                        + ("" if drain.get("drained") else f" NOT drained: {drain.get('lag')}")
                    )
                    rss = _rss(r) if system == "loket" else ""
                    per = 1000 * sum(r.get("processes", {}).get("cpu_s", {}).values()) / max(1, r.get("requests", 1))
                    out.append(f"| {name} | {system} | {_cpu(r)} | {per:.1f} | {rss} | {caught} |")
    alloc = [runs[k] for k in ("allocator_fill", "allocator_storm") if k in runs]
    if alloc:
        out += [
            "",
            "| allocator run | requests | reserved / rejected | decisions/s steady | after ready | incl. start-up "
            "| allocator CPU % | projections CPU % | postgres CPU % | in batches / wall s |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for a in alloc:
            # "calendar" is the allocator's process; "calendar-projections" the calendar beside it
            # (absent in runs from before the allocator had a process of its own).
            cpu = a.get("processes", {}).get("cpu_pct", {})
            out.append(
                f"| {a['label']} ({a['distinct_starts']} starts) | {a['requests']} | {a['reserved']} / {a['rejected']} "
                f"| {a['decisions_per_s_steady']} | {a['decisions_per_s_after_ready']} "
                f"| {a['decisions_per_s_including_startup']} | {cpu.get('calendar')} "
                f"| {cpu.get('calendar-projections', '')} | {cpu.get('postgres')} "
                f"| {a.get('seconds_in_batches', '')} / {a.get('drain_s_after_ready')} |"
            )
    if "availability" in runs:
        out += [
            "",
            "| availability (residence-card, all locations, 60 days) | req/s | p50 / p95 / p99 / max ms | status "
            "| slots (or days) in answer | bytes read per answer | client CPU % | gateway / calendar CPU % |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for how, r in runs["availability"].items():
            cpu = r.get("processes", {}).get("cpu_pct", {})
            listed = r["slots_in_answer"] if "slots_in_answer" in r else f"{r.get('days_in_answer')} days"
            out.append(
                f"| {how}, 50 concurrent | {r['rps']} | {_lat(r)} | {r['status']} | {listed} "
                f"| {r.get('bytes_read_per_answer', r.get('answer_bytes'))} | {r['client_cpu_pct']} "
                f"| {cpu.get('gateway')} / {cpu.get('calendar')} |"
            )
    if "agenda_under_flood" in runs:
        r = runs["agenda_under_flood"]
        flood, agenda, cpu = r["flood"], r["agenda"], r.get("processes", {}).get("cpu_pct", {})
        out += [
            "",
            f"| staff agenda ({agenda['location']}, {agenda['date']}, {agenda['appointments']} appointments), "
            "one client, through the gateway | p50 / p95 / p99 / max ms | status |",
            "|---|---|---|",
            f"| alone | {_lat(r['agenda_alone'])} | {r['agenda_alone']['status']} |",
            f"| while {flood['clients']} clients read 92 days of availability ({flood['rps']} req/s, p99 "
            f"{flood['latency_ms'].get('p99')} ms; gateway / calendar CPU "
            f"{cpu.get('gateway')} / {cpu.get('calendar')} %) "
            f"| {_lat(r['agenda_during_flood'])} | {r['agenda_during_flood']['status']} |",
        ]
    if "rebuild" in runs:
        r = runs["rebuild"]
        if "skipped" in r:
            out += ["", f"Rebuild: skipped, {r['skipped']} ({r['events_in_topics']} events in the topics)."]
        else:
            out += [
                "",
                f"Rebuild of the agenda projection: {r['events']} events in {r['wall_s']} s = "
                f"**{r['events_per_s']} events/s** (counted by {r['events_counted_by']}; HTTP {r['status']}).",
            ]
    for key, title in (("profile", "the storm"), ("profile_availability", "availability reads")):
        prof = runs.get(key)
        if not prof:
            continue
        raw = f"results/{Path(prof['raw_dir']).name}/"
        out += ["", f"py-spy during {title} (% of each process's busy samples; raw stacks in `{raw}`):", ""]
        out += ["| process | CPU s | top self | top inclusive (our code) |", "|---|---|---|---|"]
        for name, sm in prof["services"].items():
            self_top = "; ".join(f"{k} {v}%" for k, v in sm["top_self"][:4])
            plumbing = ("PartitionBatchConsumer.run", "_process_with_retry", "_process_batch", "keep_running")
            ours = [(k, v) for k, v in sm["top_inclusive"] if k.startswith("loket_") and not k.endswith(plumbing)][:5]
            incl = "; ".join(f"{k} {v}%" for k, v in ours)
            out.append(f"| {name} | {sm.get('cpu_s_during_run')} | {self_top} | {incl} |")
    return "\n".join(out)


def plots(res: dict[str, Any], png: Path) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    runs = res.get("runs", {})
    names = [n for n in runs if isinstance(runs[n], dict) and ("loket" in runs[n] or "baseline" in runs[n])]
    if not names:
        return None
    keys = ("p50", "p95", "p99", "max")
    fig, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names), 4.2), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        for i, (system, color) in enumerate((("baseline", "#888888"), ("loket", "#1f77b4"))):
            r = runs[name].get(system)
            if not r:
                continue
            vals = [max(r["latency_ms"].get(k, 0), 0.1) for k in keys]
            ax.bar([x + i * 0.4 for x in range(4)], vals, width=0.4, color=color, label=f"{system} ({r['rps']} req/s)")
        ax.set_yscale("log")
        ax.set_xticks([x + 0.2 for x in range(4)], keys)
        ax.set_title(name)
        ax.set_ylabel("latency, ms (log)")
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=1, frameon=False)
    fig.suptitle(f"Latency percentiles, Loket vs baseline ({res.get('started')}, {res.get('mode')})", fontsize=9)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)
    return png


def write(res: dict[str, Any], path: Path, update_readme: bool = True) -> None:
    md = tables(res)
    png = plots(res, path.with_suffix(".png"))
    if png:
        md += f"\n\n![latency percentiles](results/{png.name})"
    path.with_suffix(".md").write_text(md + "\n")
    print(md)
    readme = BENCH / "README.md"
    if update_readme and readme.exists():
        text = readme.read_text()
        if START in text and END in text:
            head, rest = text.split(START, 1)
            _, tail = rest.split(END, 1)
            readme.write_text(f"{head}{START}\n{md}\n{END}{tail}")


if __name__ == "__main__":
    p = Path(sys.argv[1])
    write(json.loads(p.read_text()), p, update_readme="--readme" in sys.argv)
