"""``device: jtop``: power from jetson-stats for users who already run its service.

jetson-stats (``jtop``) is AGPL-3.0 and an optional extra (``pip install 'camel-vllm[jetson]'``);
the default Jetson backend reads sysfs directly. Facts (jetson-stats' source): the client talks to
``jtop.service`` over ``/run/jtop.sock`` and must match its version; ``jetson.power['rail'][NAME]``
gives ``volt`` (mV), ``curr`` (mA) and ``power`` (mW). Only ``power`` is used: ``avg`` is an
exponential smoother, not a time average, and is never integrated. jtop cannot set a GPU
frequency, so this device offers none (batch-only arms); the frequency in force is read
from the devfreq node when one is readable.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable, Sequence

from camel_vllm.core.config import ConfigError
from camel_vllm.core.events import IterationWork
from camel_vllm.devices.base import DeviceError, DeviceInfo, DevicePermissionError, EnergyReading
from camel_vllm.devices.declaration import DeviceDeclaration
from camel_vllm.devices.jetson.sysfs import DEFAULT_RAIL, find_gpu_devfreq, open_sysfs
from camel_vllm.devices.sampler import PowerSampler

logger = logging.getLogger("vllm.camel")

#: jtop reads the whole system every tick; intervals under about 0.5 s are impractical (jetson-stats' source).
MIN_JTOP_INTERVAL_S = 0.5


def _jtop_class() -> Any:
    try:
        from jtop import jtop
    except ImportError as err:
        raise DeviceError(
            "device 'jtop' needs jetson-stats (AGPL-3.0; pip install 'camel-vllm[jetson]') and its "
            "jtop.service running; or use device: jetson (reads sysfs directly)"
        ) from err
    return jtop


class JtopDevice:
    """Energy from jtop's per-rail ``power`` (mW), integrated; no frequency knob."""

    def __init__(
        self,
        *,
        rails: str = DEFAULT_RAIL,
        sample_hz: float | None = None,
        sysfs_root: str = "/",
        clock: Callable[[], float] = time.monotonic,
        client: Any = None,
    ) -> None:
        interval_s = max(MIN_JTOP_INTERVAL_S, 1.0 / sample_hz if sample_hz else MIN_JTOP_INTERVAL_S)
        if client is None:
            client = _jtop_class()(interval=interval_s)
        self._client = client
        try:
            self._client.start()
        except Exception as err:
            raise DeviceError(f"jtop: cannot reach jtop.service ({err}); is it running and the same version?") from err
        available = list(self._rail_table())
        if rails.strip().lower() == "all":
            self.rails = available
        else:
            self.rails = [r.strip() for r in rails.split(",") if r.strip()]
            missing = [r for r in self.rails if r not in available]
            if missing:
                self._client.close()
                raise ConfigError("rails", rails,
                                  f"jtop reports no rail {', '.join(missing)} (rails: {', '.join(available)})")
        self._access = open_sysfs(sysfs_root)
        self._node = find_gpu_devfreq(self._access)
        self.sampler = PowerSampler(self._read_power_w, interval_s, clock=clock, name="camel-jtop").start()
        self._closed = False

    def _rail_table(self) -> dict[str, Any]:
        power = self._client.power
        return dict(power.get("rail", {})) if isinstance(power, dict) else {}

    def _read_power_w(self) -> float:
        table = self._rail_table()
        try:
            return sum(float(table[name]["power"]) for name in self.rails) / 1000.0
        except (KeyError, TypeError) as err:
            raise OSError(f"jtop rail reading missing: {err}") from err

    # ------------------------------------------------------------------ protocol
    def info(self) -> DeviceInfo:
        return DeviceInfo(
            kind="jtop",
            name="jetson-stats",
            energy_source="measured",
            energy_method="jtop-power-integrated",
            rails=tuple(self.rails),
            can_set_frequency=False,
            read_only=True,
            extra={"license": "jetson-stats is AGPL-3.0", "interval_s": self.sampler.period_s},
        )

    def available_frequencies_hz(self) -> Sequence[float]:
        return ()

    def current_frequency_hz(self) -> float | None:
        if self._node is None:
            return None
        try:
            return float(self._access.read(self._node / "cur_freq"))
        except (OSError, ValueError):
            return None

    def set_frequency_hz(self, freq_hz: float) -> float:
        raise DevicePermissionError("jtop cannot set a GPU frequency; use device: jetson for the clock knob")

    def energy_j(self) -> float:
        return self.sampler.energy_j()

    def energy_reading(self) -> EnergyReading:
        return self.sampler.reading()

    def power_w(self) -> float | None:
        return self.sampler.power_w()

    def iteration_done(self, work: IterationWork, elapsed_s: float) -> float:
        return 0.0

    def restore(self) -> None:
        return None

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.sampler.close()
        try:
            self._client.close()
        except Exception as err:  # closing a client of a dead service must not mask the exit
            logger.debug("camel: closing jtop failed: %s", err)


DECLARATION = DeviceDeclaration(
    "jtop", "jetson-stats rail power (AGPL-3.0, optional extra): batch-only arms",
    lambda inputs: JtopDevice(rails=inputs.config.rails, sample_hz=inputs.config.sample_hz,
                              sysfs_root=inputs.config.sysfs_root), listing=3)
