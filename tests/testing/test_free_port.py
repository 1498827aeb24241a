"""The port a test server is started on: free when picked, and never one the kernel hands to a
socket bound to port 0 (an exporter with metrics_port 0 in a parallel test) meanwhile."""

from __future__ import annotations

import socket

from camel_vllm.testing.vllm_server import _ephemeral_low, free_port


def test_a_free_port_is_bindable_and_below_the_ephemeral_range() -> None:
    low = _ephemeral_low()
    ports = {free_port() for _ in range(20)}
    assert all(1024 <= p < low for p in ports)
    for port in ports:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))


def test_ports_bound_to_zero_meanwhile_never_take_it() -> None:
    """What CI once lost a server to: the picked port handed to someone binding port 0."""
    port = free_port()
    held = []
    try:
        for _ in range(200):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            held.append(sock)
            assert sock.getsockname()[1] != port
    finally:
        for sock in held:
            sock.close()
