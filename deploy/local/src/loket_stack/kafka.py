"""A real single-node Apache Kafka broker (KRaft, combined broker+controller) without Docker.

Stdlib only. The broker's jars come from Maven Central through ``deploy/local/kafka/pom.xml``
(resolved once into ``<cache_dir>/lib``); the broker runs as ``java -cp '<lib>/*' kafka.Kafka``.

    from loket_stack.kafka import KafkaBroker
    broker = KafkaBroker(data_dir, port=9092, controller_port=9093,
                         log_dir=log_dir, cache_dir=repo / ".cache" / "kafka")
    broker.start()          # launches, or adopts a broker already running from data_dir
    broker.bootstrap        # "127.0.0.1:9092"
    broker.stop()

Manual use:
    python deploy/local/src/loket_stack/kafka.py start|stop|status \
        [--data DIR] [--port 9092] [--controller-port 9093] [--log-dir DIR] [--cache-dir DIR]

Files kept in ``data_dir``: ``server.properties``, ``log4j2.xml``, ``cluster.id``,
``kafka.pid``, and the broker's own storage under ``kraft/``. The broker's output (log4j2 at
INFO, plus anything the JVM prints) goes to ``<log_dir>/kafka.log``.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

__all__ = [
    "POM",
    "KafkaBroker",
    "KafkaError",
    "PortInUseError",
    "ensure_jars",
]

#: deploy/local/kafka/pom.xml (this file is deploy/local/src/loket_stack/kafka.py).
POM = Path(__file__).resolve().parents[2] / "kafka" / "pom.xml"

_MARKER = ".pom.sha256"
_NODE_ID = 1


class KafkaError(RuntimeError):
    """The broker could not be set up, started or stopped."""


class PortInUseError(KafkaError):
    """A port the broker needs is taken by some other process.

    ``port`` is the number, ``setting`` the KafkaBroker argument that chose it
    (``"port"`` or ``"controller_port"``), so a caller can name its own setting instead.
    """

    def __init__(self, port: int, setting: str, message: str):
        super().__init__(message)
        self.port = port
        self.setting = setting


# --------------------------------------------------------------------------- jars


def _pom_hash(pom: Path) -> str:
    return hashlib.sha256(pom.read_bytes()).hexdigest()


def _which(tool: str, what: str) -> str:
    if tool == "java" and os.environ.get("JAVA_HOME"):
        candidate = Path(os.environ["JAVA_HOME"]) / "bin" / "java"
        if os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which(tool)
    if not found:
        raise KafkaError(
            f"`{tool}` was not found on PATH; it is needed {what}. "
            "Install a Java 17+ JDK and Maven 3.8+ (Debian: apt-get install openjdk-17-jdk-headless maven)."
        )
    return found


def ensure_jars(cache_dir: Path, pom: Path = POM) -> Path:
    """Resolve the broker's runtime classpath into ``<cache_dir>/lib`` and return that dir.

    Runs ``mvn -q -f <pom> dependency:copy-dependencies -DoutputDirectory=<cache_dir>/lib``
    unless the dir already holds jars and a marker with the pom's sha256. Safe to call from
    several processes at once (a lock file serialises the download).
    """
    cache_dir = Path(cache_dir).resolve()
    lib = cache_dir / "lib"
    digest = _pom_hash(pom)

    def up_to_date() -> bool:
        marker = lib / _MARKER
        return marker.is_file() and marker.read_text().strip() == digest and any(lib.glob("*.jar"))

    if up_to_date():
        return lib
    cache_dir.mkdir(parents=True, exist_ok=True)
    with open(cache_dir / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if up_to_date():  # another process did it while we waited
            return lib
        mvn = _which("mvn", "to download the Kafka broker's jars from Maven Central")
        _which("java", "to run Maven and the Kafka broker")
        tmp = cache_dir / f"lib.tmp{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        cmd = [
            mvn,
            "-q",
            "-B",
            "-f",
            str(pom),
            "dependency:copy-dependencies",
            f"-DoutputDirectory={tmp}",
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
        if proc.returncode != 0 or not any(tmp.glob("*.jar")):
            shutil.rmtree(tmp, ignore_errors=True)
            out = (proc.stdout + proc.stderr).strip().splitlines()[-30:]
            raise KafkaError(
                f"resolving the Kafka jars failed (exit {proc.returncode}): {' '.join(cmd)}\n" + "\n".join(out)
            )
        (tmp / _MARKER).write_text(digest + "\n")
        shutil.rmtree(lib, ignore_errors=True)  # never mix jars of two versions
        os.replace(tmp, lib)
    return lib


# --------------------------------------------------------------------------- process helpers


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (exited, not yet reaped) counts as dead
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def _port_taken(port: int) -> bool:
    """True if something listens on 127.0.0.1:<port> or the port cannot be bound there."""
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
        return True
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the JVM does
        s.bind(("127.0.0.1", port))
        return False
    except OSError:
        return True
    finally:
        s.close()


def _tail(path: Path, lines: int = 40) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 64 * 1024))
            text = f.read().decode(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


# --------------------------------------------------------------------------- readiness probe
# Kafka wire protocol, just enough to ask "is broker <node id> alive in the cluster metadata?"
# ApiVersions v0 (always supported) picks a Metadata version in 4..8 (non-flexible encoding).


def _request(sock: socket.socket, api_key: int, version: int, corr: int, body: bytes) -> bytes:
    client = b"loket-probe"
    header = struct.pack(">hhih", api_key, version, corr, len(client)) + client
    payload = header + body
    sock.sendall(struct.pack(">i", len(payload)) + payload)
    size = struct.unpack(">i", _recv(sock, 4))[0]
    data = _recv(sock, size)
    if struct.unpack(">i", data[:4])[0] != corr:
        raise OSError("correlation id mismatch")
    return data[4:]


def _recv(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise OSError("connection closed")
        buf += chunk
    return buf


def _probe(port: int, node_id: int = _NODE_ID, timeout: float = 2.0) -> bool:
    """True once the broker answers Metadata and lists itself as an alive (unfenced) broker."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            resp = _request(sock, 18, 0, 1, b"")  # ApiVersions v0
            error, count = struct.unpack(">hi", resp[:6])
            if error != 0:
                return False
            versions = {}
            for i in range(count):
                key, lo, hi = struct.unpack(">hhh", resp[6 + 6 * i : 12 + 6 * i])
                versions[key] = (lo, hi)
            lo, hi = versions.get(3, (0, -1))
            usable = [v for v in range(4, 9) if lo <= v <= hi]
            if not usable:
                return True  # cannot ask in a form we encode; ApiVersions answered, good enough
            v = max(usable)
            body = struct.pack(">i?", 0, False)  # no topics, no auto-creation
            if v >= 8:
                body += struct.pack(">??", False, False)
            resp = _request(sock, 3, v, 2, body)
            pos = 4  # throttle_time_ms
            (n,) = struct.unpack_from(">i", resp, pos)
            pos += 4
            for _ in range(n):
                (nid,) = struct.unpack_from(">i", resp, pos)
                pos += 4
                (hl,) = struct.unpack_from(">h", resp, pos)
                pos += 2 + hl + 4  # host, port
                (rl,) = struct.unpack_from(">h", resp, pos)
                pos += 2 + max(rl, 0)  # rack (nullable)
                if nid == node_id:
                    return True
            return False
    except (OSError, struct.error):
        return False


# --------------------------------------------------------------------------- broker

_LOG4J2_XML = """<?xml version="1.0" encoding="UTF-8"?>
<!-- Written by loket_stack.kafka; rewritten on every start. -->
<!-- shutdownHook="disable": else Log4j stops while Kafka's own shutdown hook still logs. -->
<Configuration status="WARN" shutdownHook="disable">
  <Appenders>
    <Console name="STDOUT" target="SYSTEM_OUT">
      <PatternLayout pattern="[%d] %p %m (%c)%n"/>
    </Console>
  </Appenders>
  <Loggers>
    <Root level="INFO"><AppenderRef ref="STDOUT"/></Root>
    <Logger name="kafka.request.logger" level="WARN"/>
    <Logger name="kafka.network.RequestChannel$" level="WARN"/>
    <Logger name="org.apache.kafka.common.config.AbstractConfig" level="WARN"/>
    <Logger name="org.apache.kafka.common.utils.AppInfoParser" level="WARN"/>
  </Loggers>
</Configuration>
"""


class KafkaBroker:
    """One Kafka 4.x broker+controller process (KRaft combined mode) on 127.0.0.1.

    ``start()`` launches it, or adopts the broker already running from the same ``data_dir``
    (found through ``data_dir/kafka.pid``); ``stop()`` stops whichever it is.
    """

    def __init__(
        self,
        data_dir: Path,
        port: int,
        controller_port: int,
        log_dir: Path,
        cache_dir: Path,
        heap: str = "512m",
    ):
        self.data_dir = Path(data_dir).resolve()
        self.port = int(port)
        self.controller_port = int(controller_port)
        self.log_dir = Path(log_dir).resolve()
        self.cache_dir = Path(cache_dir).resolve()
        self.heap = heap
        self._proc: subprocess.Popen | None = None
        self._pid: int | None = None
        #: True when start() found the broker already running and adopted it.
        self.adopted = False
        #: Seconds from launch (or adoption) until the broker answered; None before start().
        self.startup_seconds: float | None = None

    # -- paths and derived values

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def properties_file(self) -> Path:
        return self.data_dir / "server.properties"

    @property
    def pid_file(self) -> Path:
        return self.data_dir / "kafka.pid"

    @property
    def log_file(self) -> Path:
        return self.log_dir / "kafka.log"

    @property
    def storage_dir(self) -> Path:
        return self.data_dir / "kraft"

    @property
    def pid(self) -> int | None:
        """Pid of the running broker (launched or adopted), else None."""
        if self._proc is not None and self._proc.poll() is None:  # even before _pid is set
            return self._proc.pid
        if self._pid is not None and self._is_ours(self._pid):
            return self._pid
        pid = self._read_pid()
        return pid if pid is not None and self._is_ours(pid) else None

    def is_running(self) -> bool:
        return self.pid is not None

    @property
    def child_pid(self) -> int | None:
        """Pid of the broker this object launched while its Popen has not reaped it."""
        return self._proc.pid if self._proc is not None and self._proc.returncode is None else None

    @property
    def returncode(self) -> int | None:
        """How the broker this object launched ended (negative: the signal); None while it runs."""
        return self._proc.poll() if self._proc is not None else None

    def is_ready(self) -> bool:
        """The broker answers on its port and lists itself as alive."""
        return _probe(self.port)

    def server_properties(self) -> str:
        p = self.port
        c = self.controller_port
        props = {
            "process.roles": "broker,controller",
            "node.id": _NODE_ID,
            "controller.quorum.bootstrap.servers": f"127.0.0.1:{c}",
            "listeners": f"PLAINTEXT://127.0.0.1:{p},CONTROLLER://127.0.0.1:{c}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{p}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": self.storage_dir,
            # topics exist only through the project's topic registry
            "auto.create.topics.enable": "false",
            "num.partitions": 1,
            "default.replication.factor": 1,
            # single node: every internal topic has one replica
            "offsets.topic.replication.factor": 1,
            "offsets.topic.num.partitions": 5,
            "transaction.state.log.replication.factor": 1,
            "transaction.state.log.min.isr": 1,
            "transaction.state.log.num.partitions": 5,
            "share.coordinator.state.topic.replication.factor": 1,
            "share.coordinator.state.topic.min.isr": 1,
            "share.coordinator.state.topic.num.partitions": 5,
            "group.initial.rebalance.delay.ms": 0,
            # small machine (2 cores): fewer threads, smaller compaction buffer
            "num.network.threads": 2,
            "num.io.threads": 4,
            "background.threads": 4,
            "log.cleaner.dedupe.buffer.size": 32 * 1024 * 1024,
        }
        lines = ["# Written by loket_stack.kafka (deploy/local/src); rewritten on every start."]
        lines += [f"{k}={v}" for k, v in props.items()]
        return "\n".join(lines) + "\n"

    # -- lifecycle

    def start(self, timeout: float = 60) -> bool:
        """Start the broker and wait until it answers. Returns True if a new process was
        launched, False if a broker already running from this data_dir was adopted."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with open(self.data_dir / ".start.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # two runners starting at once: one launches
            return self._start_locked(timeout)

    def _start_locked(self, timeout: float) -> bool:
        wanted = self.server_properties()

        pid = self._read_pid()
        if pid is not None and self._is_ours(pid):
            current = self.properties_file.read_text() if self.properties_file.exists() else ""
            if current != wanted:
                raise KafkaError(
                    f"a Kafka broker (pid {pid}) is already running from {self.data_dir} with "
                    f"other settings (see {self.properties_file}); stop it first "
                    f"(python {Path(__file__)} stop --data {self.data_dir})"
                )
            self._pid, self._proc, self.adopted = pid, None, True
            self._wait_ready(time.monotonic(), timeout)
            return False
        self.pid_file.unlink(missing_ok=True)  # stale

        for port, setting in ((self.port, "port"), (self.controller_port, "controller_port")):
            if _port_taken(port):
                flag = "--" + setting.replace("_", "-")
                raise PortInUseError(
                    port,
                    setting,
                    f"port {port} on 127.0.0.1 is already in use by another process, so the "
                    f"local Kafka broker cannot listen there; stop that process or choose "
                    f"another Kafka {setting} (KafkaBroker({setting}=...), CLI {flag}).",
                )

        lib = ensure_jars(self.cache_dir)
        java = _which("java", "to run the Kafka broker")
        self.properties_file.write_text(wanted)
        log4j2 = self.data_dir / "log4j2.xml"
        log4j2.write_text(_LOG4J2_XML)
        jvm = [
            java,
            f"-Xmx{self.heap}",
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-XX:+ExplicitGCInvokesConcurrent",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={log4j2}",
            f"-Dkafka.logs.dir={self.log_dir}",
            "-cp",
            f"{lib}/*",
        ]
        self._format_storage(jvm)

        self._rotate_log()
        with open(self.log_file, "ab") as log:
            log.write(f"\n===== loket_stack.kafka: starting broker {time.ctime()} =====\n".encode())
            log.flush()
            t0 = time.monotonic()
            self._proc = subprocess.Popen(
                [*jvm, "kafka.Kafka", str(self.properties_file)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.data_dir,
                start_new_session=True,  # outlives the caller; Ctrl-C in a runner does not hit it
            )
        self._pid, self.adopted = self._proc.pid, False
        self.pid_file.write_text(f"{self._pid}\n")
        try:
            self._wait_ready(t0, timeout)
        except BaseException:
            self.stop(timeout=10)
            raise
        return True

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM (controlled shutdown), then SIGKILL after ``timeout`` seconds."""
        pid = self.pid
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            if not self._wait_exit(pid, timeout):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                if not self._wait_exit(pid, 10):
                    raise KafkaError(f"Kafka broker pid {pid} did not die after SIGKILL")
        if self._proc is not None:
            with contextlib.suppress(Exception):
                self._proc.wait(timeout=1)
        self._proc = self._pid = None
        self.pid_file.unlink(missing_ok=True)

    def __enter__(self) -> KafkaBroker:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- internals

    def _rotate_log(self, max_bytes: int = 16 * 1024 * 1024) -> None:
        """kafka.log is appended to across starts; keep one old copy once it gets big."""
        with contextlib.suppress(OSError):
            if self.log_file.stat().st_size > max_bytes:
                os.replace(self.log_file, self.log_file.with_name("kafka.log.1"))

    def _read_pid(self) -> int | None:
        try:
            return int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None

    def _is_ours(self, pid: int) -> bool:
        if self._proc is not None and self._proc.pid == pid:
            return self._proc.poll() is None
        if not _alive(pid):
            return False
        cmd = _cmdline(pid)
        return "kafka.Kafka" in cmd and str(self.properties_file) in cmd

    def _wait_exit(self, pid: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.pid == pid:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self._proc.wait(timeout=0.2)
                    return True
            elif not _alive(pid):
                return True
            else:
                time.sleep(0.2)
        return not _alive(pid)

    def _wait_ready(self, t0: float, timeout: float) -> None:
        deadline = t0 + timeout
        while True:
            if _probe(self.port):
                self.startup_seconds = time.monotonic() - t0
                return
            if not self._is_ours(self._pid or -1):
                code = self._proc.poll() if self._proc is not None else None
                raise KafkaError(
                    f"the Kafka broker exited (code {code}) before it was ready; "
                    f"last lines of {self.log_file}:\n{_tail(self.log_file)}"
                )
            if time.monotonic() > deadline:
                raise KafkaError(
                    f"the Kafka broker (pid {self._pid}) did not answer on {self.bootstrap} "
                    f"within {timeout:.0f}s; last lines of {self.log_file}:\n{_tail(self.log_file)}"
                )
            time.sleep(0.25)

    def _format_storage(self, jvm: list[str]) -> None:
        """kafka-storage.sh random-uuid / format --standalone, once per data dir."""
        if (self.storage_dir / "meta.properties").exists():
            return
        id_file = self.data_dir / "cluster.id"
        cluster_id = id_file.read_text().strip() if id_file.exists() else ""
        if not cluster_id:
            out = self._tool(jvm, ["random-uuid"])
            found = re.findall(r"^[A-Za-z0-9_-]{22}$", out, re.M)
            if not found:
                raise KafkaError(f"kafka.tools.StorageTool random-uuid printed no id:\n{out}")
            cluster_id = found[-1]
            id_file.write_text(cluster_id + "\n")
        self._tool(
            jvm,
            ["format", "--standalone", "-t", cluster_id, "-c", str(self.properties_file)],
        )

    def _tool(self, jvm: list[str], args: list[str]) -> str:
        cmd = [*jvm, "kafka.tools.StorageTool", *args]
        proc = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
        out = proc.stdout + proc.stderr
        with open(self.log_file, "a") as log:
            log.write(f"\n===== loket_stack.kafka: StorageTool {' '.join(args)} =====\n{out}")
        if proc.returncode != 0:
            raise KafkaError(
                f"kafka.tools.StorageTool {' '.join(args)} failed (exit {proc.returncode}):\n"
                + "\n".join(out.strip().splitlines()[-30:])
            )
        return out


# --------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    repo = Path(__file__).resolve().parents[4]
    parser = argparse.ArgumentParser(description="Run a local single-node Kafka broker (KRaft).")
    parser.add_argument("command", choices=["start", "stop", "status"])
    parser.add_argument("--data", type=Path, default=repo / ".cache" / "kafka" / "node")
    parser.add_argument("--port", type=int, default=9092)
    parser.add_argument("--controller-port", type=int, default=9093)
    parser.add_argument("--log-dir", type=Path, help="default: the data dir")
    parser.add_argument("--cache-dir", type=Path, default=repo / ".cache" / "kafka")
    parser.add_argument("--heap", default="512m")
    parser.add_argument("--timeout", type=float, default=60)
    a = parser.parse_args(argv)
    broker = KafkaBroker(a.data, a.port, a.controller_port, a.log_dir or a.data, a.cache_dir, a.heap)
    try:
        if a.command == "start":
            launched = broker.start(timeout=a.timeout)
            how = "started" if launched else "already running"
            print(
                f"kafka {how}: pid {broker.pid}, bootstrap {broker.bootstrap}, "
                f"ready in {broker.startup_seconds:.1f}s, log {broker.log_file}"
            )
        elif a.command == "stop":
            pid = broker.pid
            broker.stop()
            print(f"kafka stopped (pid {pid})" if pid else "kafka was not running")
        else:
            pid = broker.pid
            if pid is None:
                print("kafka not running")
                return 1
            print(f"kafka running: pid {pid}, bootstrap {broker.bootstrap}, ready={broker.is_ready()}")
    except KafkaError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
