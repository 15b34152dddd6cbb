"""The local stack's runner: a port already taken stops the start with a message naming the setting."""

from __future__ import annotations

import socket

import pytest

from loket_stack.runner import StackConfig, StackError, _require_free_port


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
