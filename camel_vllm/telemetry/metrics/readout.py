"""Reads taken at scrape time: device energy, power and clock; and the labels of the series.

These run on the metrics thread, never on the engine's iteration path (the policy's beliefs
are not read here: the controller copies them on the engine thread,
:mod:`camel_vllm.control.snapshots`). A device backend's
read methods (``energy_j``, ``power_w``, ``current_frequency_hz``) must therefore be safe to
call from a second thread (sysfs and NVML reads are; the emulator guards its state).
A failed read drops that sample from the scrape and counts ``camel_device_errors_total
{kind="read"}``; it never breaks the endpoint.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Callable

from camel_vllm.control.controller import Controller
from camel_vllm.core.events import Arm, format_mhz
from camel_vllm.policies.base import ModelReadout
from camel_vllm.telemetry.metrics.schema import POOLED_CONTEXT

logger = logging.getLogger("vllm.camel")

def arm_labels(arm: Arm) -> tuple[str, str]:
    """``(freq_mhz, max_batch)`` label values: ``("930.75", "8")``, ``("auto", "8")``."""
    return format_mhz(arm.freq_hz), str(arm.max_batch)


def context_label(context_id: int | None) -> str:
    """The ``context`` label value: the context id, or ``"all"`` for a pooled estimate."""
    return POOLED_CONTEXT if context_id is None else str(context_id)


@dataclass(frozen=True)
class DeviceReadout:
    """One reading of the device. ``None`` where the device has no such sensor or it failed."""

    energy_j: float | None
    power_w: float | None
    current_freq_hz: float | None


class ControllerReader:
    """Reads a controller's device; keeps the energy counter monotonic.

    ``on_error(kind)`` is called once per failed read (the exporter counts it).
    """

    def __init__(self, controller: Controller, on_error: Callable[[str], None]) -> None:
        self.controller = controller
        self._on_error = on_error
        self._lock = threading.Lock()
        self._energy_max_j = 0.0

    def read_device(self) -> DeviceReadout:
        """Device energy since it was opened (never decreasing), power and clock now."""
        device = self.controller.device
        energy_j = self._call(device.energy_j)
        power_w = self._call(device.power_w)
        freq_hz = self._call(device.current_frequency_hz)
        with self._lock:
            if energy_j is not None:
                # A counter that went backwards (sensor reset, wrap) must not show as a
                # negative increase to Prometheus: report the highest value seen.
                self._energy_max_j = max(self._energy_max_j, energy_j)
                energy_j = self._energy_max_j
        return DeviceReadout(energy_j=energy_j, power_w=power_w, current_freq_hz=freq_hz)

    def _call(self, read: Callable[[], float | None]) -> float | None:
        try:
            value = read()
        except Exception as err:  # a sensor hiccup must not break the scrape
            logger.debug("camel: metrics read %s failed: %s", getattr(read, "__name__", read), err)
            self._on_error("read")
            return None
        return None if value is None else float(value)


def model_samples(readout: ModelReadout | None) -> list[tuple[str, list[str], float]]:
    """(family name, label values, value) of every model series in ``readout`` (none for None)."""
    from camel_vllm.telemetry.metrics import schema as s

    if readout is None:
        return []
    out = [(s.MODEL_CORRECTION.name, [kind], float(v)) for kind, v in sorted(readout.corrections.items())]
    for freq_hz, time_f, energy_f in readout.clock_corrections:
        mhz = format_mhz(freq_hz)
        out += [(s.MODEL_CLOCK_CORRECTION.name, [mhz, "time"], time_f),
                (s.MODEL_CLOCK_CORRECTION.name, [mhz, "energy"], energy_f)]
    out += [(s.MODEL_ERROR.name, [kind], float(v)) for kind, v in sorted(readout.errors.items())]
    out += [(s.MODEL_ITERATIONS.name, [kind], float(v)) for kind, v in sorted(readout.iterations.items())]
    out.append((s.MODEL_EXPLORATIONS.name, [], float(readout.exploratory_decisions)))
    return out
