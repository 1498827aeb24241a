"""Show the GPU device camel-vllm finds: kind, frequencies, rails, power, energy, permissions.

Nothing is written to the device unless ``--test-switch`` is given: then one frequency switch
is made and timed (write -> read-back, and -> settled power), and the frequency is restored.
Emulated figures are labelled ``emulated``. ``--json PATH`` writes the report as JSON to PATH
(``-``: standard output); the bare ``--json`` of earlier versions still prints it, with a notice.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

from camel_vllm.cli import checks
from camel_vllm.cli.deprecated import notice
from camel_vllm.core.config import CamelConfig, ConfigError
from camel_vllm.devices.registry import device_kinds
from camel_vllm.devices.base import Device, DeviceError

#: ``--json`` given without a path (the old switch): standard output, after a deprecation notice.
BARE_JSON = ""
PROG = "camel-vllm probe"

#: Power is "settled" when this many consecutive readings stay within SETTLE_REL of each other.
SETTLE_READINGS = 3
SETTLE_REL = 0.03
SETTLE_TIMEOUT_S = 2.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", choices=device_kinds(), default="auto", help="backend to probe (default: auto)")
    parser.add_argument("--json", nargs="?", const=BARE_JSON, default=None, metavar="PATH",
                        help="write the report as one JSON object to PATH (-: standard output)")
    parser.add_argument("--test-switch", action="store_true",
                        help="switch the frequency once, time it, and restore (writes the clock)")
    parser.add_argument("--sysfs-root", default="/", help="root of the sysfs tree (tests, containers)")
    parser.add_argument("--rails", default="VDD_GPU_SOC", help="VDD_GPU_SOC (default), all, or a comma list")
    parser.add_argument("--device-profile", default="orin-agx-32gb", help="emulated: device profile name or file")
    parser.add_argument("--model-profile", default="llama-3.2-1b", help="emulated: model profile name or file")
    parser.add_argument("--window-s", type=float, default=0.5, help="seconds over which the energy counter is read")


def run(args: argparse.Namespace) -> int:
    from camel_vllm.devices.registry import make_device

    try:
        config = CamelConfig(
            device=args.device, read_only=not args.test_switch, sysfs_root=args.sysfs_root, rails=args.rails,
            device_profile=args.device_profile, model_profile=args.model_profile,
        )
        config.validate()
        checks.number("--window-s", args.window_s, minimum=0.0)
        if args.json == BARE_JSON:
            notice(PROG, "--json without a path", "--json - (standard output) or --json PATH")
            args.json = "-"
        if args.json not in (None, "-"):
            checks.output_file("--json", args.json, make_folder=True)
        device = make_device(config)
    except (ConfigError, DeviceError) as err:
        print(f"{PROG}: {err}", file=sys.stderr)
        return 2
    try:
        report = probe(device, window_s=args.window_s)
        if args.test_switch:
            report["switch_test"] = test_switch(device)
    finally:
        device.close()
    if args.json in (None, "-"):
        print(json.dumps(report, indent=2) if args.json else format_report(report))
        return 0
    checks.make_parent(args.json)
    with open(args.json, "w", encoding="utf-8") as fh:
        json.dump(report, fh, indent=2)
        fh.write("\n")
    print(format_report(report))
    print(f"wrote {args.json}")
    return 0


def probe(device: Device, *, window_s: float = 0.5) -> dict[str, Any]:
    """Read everything the device offers (no writes)."""
    info = device.info()
    energy_0_j = device.energy_j()
    time.sleep(max(0.0, window_s))
    energy_1_j = device.energy_j()
    freqs = list(device.available_frequencies_hz())
    current = device.current_frequency_hz()
    power = device.power_w()
    return {
        "kind": info.kind,
        "name": info.name,
        "emulated": info.emulated,
        "energy_source": info.energy_source,
        "energy_method": info.energy_method,
        "profile": info.profile,
        "rails": list(info.rails),
        "frequencies_mhz": [f / 1e6 for f in freqs],
        "current_frequency_mhz": None if current is None else current / 1e6,
        "power_w": power,
        "energy_j": energy_1_j,
        "mean_power_over_window_w": (energy_1_j - energy_0_j) / window_s if window_s > 0 else None,
        "permissions": permissions(device),
        "extra": {k: v for k, v in info.extra.items() if _jsonable(v)},
    }


def permissions(device: Device) -> dict[str, Any]:
    """Whether this process could write the clock (checked without writing)."""
    kind = device.info().kind
    result: dict[str, Any] = {"euid": os.geteuid() if hasattr(os, "geteuid") else None}
    if kind == "jetson":
        problem = device.clock_write_problem()  # type: ignore[attr-defined]
        result["can_write_frequency"] = problem is None
        if problem is not None:
            result["problem"] = problem
        result["how"] = "root, or the udev rule in docs/devices.md"
    elif kind == "nvml":
        result["can_write_frequency"] = (os.geteuid() == 0) if hasattr(os, "geteuid") else None
        result["how"] = "root or CAP_SYS_ADMIN (NVML locked clocks); --test-switch tries it"
    elif kind == "emulated":
        result["can_write_frequency"] = True
    else:
        result["can_write_frequency"] = False
    return result


def test_switch(device: Device) -> dict[str, Any]:
    """Switch once and restore: write -> read-back time, and time until power settles."""
    freqs = sorted(device.available_frequencies_hz())
    if len(freqs) < 2:
        return {"error": "fewer than two frequencies: nothing to switch"}
    before = device.current_frequency_hz()
    target = freqs[0] if before is not None and before >= freqs[-1] else freqs[-1]
    try:
        start = time.perf_counter()
        applied = device.set_frequency_hz(target)
        readback_s = time.perf_counter() - start
        settled_s = _time_to_settled_power(device, start)
    except DeviceError as err:
        return {"error": str(err)}
    finally:
        try:
            device.restore()
        except DeviceError as err:
            return {"error": f"restore failed: {err}"}
    after = device.current_frequency_hz()
    return {
        "requested_mhz": target / 1e6,
        "applied_mhz": applied / 1e6,
        "write_to_readback_s": readback_s,
        "write_to_settled_power_s": settled_s,
        "restored_mhz": None if after is None else after / 1e6,
        "emulated": device.info().emulated,
    }


def _time_to_settled_power(device: Device, start: float) -> float | None:
    readings: list[float] = []
    while time.perf_counter() - start < SETTLE_TIMEOUT_S:
        power = device.power_w()
        if power is None:
            return None
        readings.append(power)
        last = readings[-SETTLE_READINGS:]
        if len(last) == SETTLE_READINGS and max(last) - min(last) <= SETTLE_REL * max(last):
            return time.perf_counter() - start
        time.sleep(0.01)
    return None


def format_report(report: dict[str, Any]) -> str:
    label = " (emulated)" if report["emulated"] else ""
    freqs = ", ".join(f"{f:g}" for f in report["frequencies_mhz"]) or "none"
    power = "n/a" if report["power_w"] is None else f"{report['power_w']:.2f} W{label}"
    current = report["current_frequency_mhz"]
    lines = [
        f"device:      {report['kind']}{label}  {report['name']}",
        f"energy:      {report['energy_source']} ({report['energy_method']}), "
        f"counter {report['energy_j']:.3f} J{label}",
        f"rails:       {', '.join(report['rails']) or 'none'}",
        f"frequencies: {freqs} MHz",
        f"current:     {'n/a' if current is None else f'{current:g} MHz'}",
        f"power now:   {power}",
        f"can write:   {report['permissions'].get('can_write_frequency')}"
        + (f" ({report['permissions']['how']})" if report["permissions"].get("how") else ""),
    ]
    switch = report.get("switch_test")
    if switch:
        if "error" in switch:
            lines.append(f"switch test: {switch['error']}")
        else:
            settled = switch["write_to_settled_power_s"]
            lines.append(
                f"switch test: {switch['requested_mhz']:g} MHz -> read back {switch['applied_mhz']:g} MHz in "
                f"{switch['write_to_readback_s'] * 1e3:.2f} ms; power settled "
                f"{'never' if settled is None else f'after {settled * 1e3:.1f} ms'}; restored to "
                f"{switch['restored_mhz']} MHz{label}"
            )
    return "\n".join(lines)


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value)
        return True
    except (TypeError, ValueError):
        return False
