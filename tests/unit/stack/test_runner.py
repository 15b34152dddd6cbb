"""The local stack's runner: a port already taken stops the start with a message naming the setting;
LOKET_STACK_DOUBLE starts a second instance of a process on a port of its own."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from loket_stack.runner import SECOND_PORT_OFFSET, Stack, StackConfig, StackError, _require_free_port


def test_a_taken_port_names_the_variable_to_change() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        with pytest.raises(StackError, match=rf"port {port} for gateway is already in use.*LOKET_PORT_GATEWAY"):
            _require_free_port(port, "gateway")


def test_ports_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOKET_PORT_GATEWAY", "9100")
    monkeypatch.setenv("LOKET_PORT_KAFKA", "9192")
    config = StackConfig.from_env()
    assert config.gateway == 9100
    assert config.kafka == 9192
    assert config.base_url == "http://127.0.0.1:9100"
    assert config.booking == 8102  # untouched defaults stay


def test_a_doubled_process_gets_a_second_instance_on_its_own_port(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("LOKET_STACK_DOUBLE", "booking,calendar-allocator")
    stack = Stack(StackConfig.on_ports_from(29000, data=tmp_path))
    assert stack.seconds == ["booking-2", "calendar-allocator-2"]
    commands = stack.commands()
    for second, first in (("booking-2", "booking"), ("calendar-allocator-2", "calendar-allocator")):
        args, env, port = commands[second]
        first_args, first_env, first_port = commands[first]
        assert args == first_args and port == first_port + SECOND_PORT_OFFSET
        # the same service in the same groups; only the port differs (the instance id is made at start)
        assert {k: v for k, v in env.items() if k != "LOKET_HTTP_PORT"} == {
            k: v for k, v in first_env.items() if k != "LOKET_HTTP_PORT"
        }
        assert env["LOKET_HTTP_PORT"] == str(port)
        assert stack.ready_urls()[second] == f"http://127.0.0.1:{port}/readyz"
    assert "calendar-2" not in commands
