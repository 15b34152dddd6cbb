"""Issue 15, part 5: the web app sends an Idempotency-Key with every POST and, when the network
fails or a service answers 502/503/504, repeats it with the same key (before: no key on most
POSTs, a new key per click on the booking form, and no repeat at all). `web/js/api.js` runs in
Node against a fake `fetch`."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

WEB = Path(__file__).resolve().parents[3] / "web" / "js"

SCRIPT = """
const api = await import(process.argv[1]);
api.retrySchedule.firstDelayMs = 1; api.retrySchedule.maxDelayMs = 5;
const seen = [];
let answers = [];
globalThis.fetch = async (path, init) => {
  seen.push({ path, method: init.method, key: init.headers["Idempotency-Key"] ?? null });
  const next = answers.shift();
  if (next === "offline") throw new TypeError("Failed to fetch");
  const [status, retryAfter] = next;
  const headers = new Headers({ "content-type": status < 400 ? "application/json" : "application/problem+json" });
  if (retryAfter) headers.set("retry-after", String(retryAfter));
  return new Response(JSON.stringify({ status }), { status, headers });
};
const out = {};
async function run(name, list, call) {
  seen.length = 0; answers = list;
  let result;
  try { result = (await call()).status; } catch (exc) { result = `error ${exc.status}`; }
  out[name] = { result, calls: [...seen] };
}
await run("booking", [[503, 0.001], "offline", [502], [201]], () =>
  api.api("/api/v1/bookings", { method: "POST", body: { a: 1 }, headers: { "Idempotency-Key": "mine" } }));
await run("any-post", [[503], [200]], () => api.api("/api/v1/waitlist", { method: "POST", body: {} }));
await run("gives-up", [[503], [503], [503], [503], [503]], () => api.api("/x", { method: "POST", body: {} }));
await run("not-retried", [[409], [201]], () => api.api("/y", { method: "POST", body: {} }));
await run("get", [[200]], () => api.api("/z"));
console.log(JSON.stringify(out));
"""


@pytest.fixture(scope="module")
def runs() -> dict[str, dict[str, object]]:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    done = subprocess.run(
        [node, "--input-type=module", "-e", SCRIPT, (WEB / "api.js").as_uri()],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_a_post_is_repeated_with_the_same_key_after_503_offline_and_502(runs: dict[str, dict[str, object]]) -> None:
    run = runs["booking"]
    assert run["result"] == 201
    assert [c["key"] for c in run["calls"]] == ["mine"] * 4  # type: ignore[attr-defined]


def test_every_post_gets_a_key_kept_across_its_repeats(runs: dict[str, dict[str, object]]) -> None:
    calls = runs["any-post"]["calls"]
    keys = {c["key"] for c in calls}  # type: ignore[attr-defined]
    assert runs["any-post"]["result"] == 200 and len(calls) == 2 and len(keys) == 1 and None not in keys  # type: ignore[arg-type]


def test_repeats_are_bounded_and_only_for_outages(runs: dict[str, dict[str, object]]) -> None:
    assert runs["gives-up"]["result"] == "error 503" and len(runs["gives-up"]["calls"]) == 4  # type: ignore[arg-type]
    assert runs["not-retried"]["result"] == "error 409" and len(runs["not-retried"]["calls"]) == 1  # type: ignore[arg-type]
    assert runs["get"]["calls"][0]["key"] is None  # type: ignore[index]


def test_the_booking_form_keeps_its_key_until_answered() -> None:
    source = (WEB / "resident.js").read_text()
    assert '"Idempotency-Key": keyFor(booking)' in source and "pendingBooking = null" in source
