"""Runs ../shared/baseline/loadgen.py unchanged except for two things that leave its timing untouched.

- The residents' e-mail domain: loadgen.py writes `person-<seed>-<i>@example.test`; Loket's booking
  service validates addresses with email-validator, which refuses the special-use `.test` domain
  (422). The request bodies, which loadgen builds before its clock starts, get `example.org`.
- Where each resident books from: Loket's edge limits bookings per client address (a burst of 5,
  then one every 10 s: deploy/edge/README.md), and every load here comes from one machine. So
  booking i is sent from the loopback address 127.0.0.2 + i // K (`--per-address K`, default 5, the
  edge's burst; 0 sends everything from 127.0.0.1 as loadgen does), over connections of that
  address alone: the limits stay on and each simulated resident stays within them. Reads (the
  free slots before and after a run) go as loadgen sends them.

Run with the baseline venv's python exactly like loadgen.py. Both systems get the same shim.
"""

import ipaddress
import sys
from pathlib import Path

import aiohttp

sys.dont_write_bytecode = True  # keep ../shared/baseline clean
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "shared" / "baseline"))

import loadgen  # noqa: E402

FIRST_ADDRESS = ipaddress.IPv4Address("127.0.0.2")  # 127.0.0.1 is the machine's own
# Each run (its --seed) sends from a /16 of its own: the residents of one scenario are new clients to
# the edge in the next, as they would be (a resident's budget does not refill in the minute between).
ADDRESSES_PER_RUN = 65536
per_address = 5

_bodies, _session, _book = loadgen.bodies, loadgen.session, loadgen.book
_resident_of: dict[bytes, int] = {}  # body -> index of the booking


def bodies(a, slots, n):  # type: ignore[no-untyped-def]
    made = [b.replace(b"@example.test", b"@example.org") for b in _bodies(a, slots, n)]
    _resident_of.update((body, i) for i, body in enumerate(made))
    return made


class Residents:
    """loadgen's session (reads go through it), and for each address its own session, closed once
    the bookings sent from it are answered."""

    def __init__(self, limit):  # type: ignore[no-untyped-def]
        self.shared = _session(limit)
        self.by_address = {}  # address index -> [session, bookings not yet answered]

    async def __aenter__(self):  # type: ignore[no-untyped-def]
        await self.shared.__aenter__()
        return self

    async def __aexit__(self, *exc):  # type: ignore[no-untyped-def]
        for session, _ in self.by_address.values():
            await session.close()
        return await self.shared.__aexit__(*exc)

    def get(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        return self.shared.get(*args, **kwargs)

    def _session_for(self, n):  # type: ignore[no-untyped-def]
        if n not in self.by_address:
            total = len(_resident_of)
            connector = aiohttp.TCPConnector(limit=per_address, local_addr=(str(FIRST_ADDRESS + n), 0))
            session = aiohttp.ClientSession(
                connector=connector, cookie_jar=aiohttp.DummyCookieJar(), timeout=aiohttp.ClientTimeout(total=60)
            )
            self.by_address[n] = [session, min(per_address, total - n * per_address)]
        return self.by_address[n]

    async def book(self, url, body):  # type: ignore[no-untyped-def]
        if per_address <= 0:
            return await _book(self.shared, url, body)
        n = _resident_of[body] // per_address
        entry = self._session_for(n)
        try:
            return await _book(entry[0], url, body)
        finally:
            entry[1] -= 1
            if entry[1] <= 0:
                await self.by_address.pop(n)[0].close()


async def book(s, url, body):  # type: ignore[no-untyped-def]
    return await s.book(url, body)


loadgen.bodies = bodies
loadgen.session = Residents
loadgen.book = book

if __name__ == "__main__":
    if "--seed" in sys.argv:
        FIRST_ADDRESS += ADDRESSES_PER_RUN * (int(sys.argv[sys.argv.index("--seed") + 1]) % 250)
    if "--per-address" in sys.argv:
        at = sys.argv.index("--per-address")
        per_address = int(sys.argv[at + 1])
        del sys.argv[at : at + 2]
    loadgen.main()
