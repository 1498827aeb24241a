"""The machine's vLLM server slots: one server at a time by default, N side by side when the
tests ask for N, and an exclusive holder (a measurement) alone."""

from __future__ import annotations

import threading
import time

import pytest

from camel_vllm.testing.vllm_server import SERVER_SLOTS_ENV, machine_lock


def _holder(path: str, started: list[float], release: threading.Event, exclusive: bool = False) -> threading.Thread:
    def run() -> None:
        with machine_lock(path, exclusive=exclusive):
            started.append(time.monotonic())
            release.wait(10)
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def _wait_for(started: list[float], count: int, timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while len(started) < count and time.monotonic() < deadline:
        time.sleep(0.02)
    return len(started) >= count


@pytest.mark.parametrize("slots, side_by_side", [(None, 1), ("1", 1), ("2", 2), ("bad", 1)])
def test_slots_bound_the_servers_side_by_side(tmp_path, monkeypatch, slots, side_by_side) -> None:
    if slots is None:
        monkeypatch.delenv(SERVER_SLOTS_ENV, raising=False)
    else:
        monkeypatch.setenv(SERVER_SLOTS_ENV, slots)
    path, started, release = str(tmp_path / "lock"), [], threading.Event()
    threads = [_holder(path, started, release) for _ in range(side_by_side + 1)]
    assert _wait_for(started, side_by_side)
    time.sleep(0.5)
    assert len(started) == side_by_side  # one more waits for a slot
    release.set()
    assert _wait_for(started, side_by_side + 1)
    for thread in threads:
        thread.join(5)


def test_an_exclusive_holder_waits_for_every_slot_and_holds_them_all(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv(SERVER_SLOTS_ENV, "2")
    path = str(tmp_path / "lock")
    shared, first = [], threading.Event()
    _holder(path, shared, first)
    assert _wait_for(shared, 1)
    exclusive, second = [], threading.Event()
    _holder(path, exclusive, second, exclusive=True)
    time.sleep(0.5)
    assert exclusive == []  # a slot is still held
    first.set()
    assert _wait_for(exclusive, 1)
    late, third = [], threading.Event()
    _holder(path, late, third)
    time.sleep(0.5)
    assert late == []  # the exclusive holder has every slot
    second.set()
    assert _wait_for(late, 1)
    third.set()
