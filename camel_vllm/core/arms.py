"""The arm set: the product of the device's frequencies and the configured batch caps.

Arms are addressed by a stable index (the order of :attr:`ArmSet.arms`), so posteriors,
metrics and saved state line up across runs. Arms can be switched off at run time (a
frequency capped by the power mode, or every frequency when clocks cannot be written) and
the policies choose only among available arms.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Sequence

from camel_vllm.core.events import Arm

#: Camel's batch grid on AGX Orin: 4, 8, ..., 28 (arXiv 2508.09173).
CAMEL_BATCH_SIZES: tuple[int, ...] = (4, 8, 12, 16, 20, 24, 28)

#: Two frequencies closer than this (Hz) are the same clock step; the one tolerance for
#: every frequency comparison (a frequency in the config or a static arm against the device's
#: list, a read-back against the request). Absolute, because the question is always "which
#: step": steps are >= 100 MHz apart on Jetson devfreq and ~15 MHz apart in NVML's table,
#: while what must be absorbed is float MHz -> Hz conversion (users write 930.75 where
#: devfreq lists 930750000). A relative tolerance wide enough for the low Orin steps would
#: be 20 MHz at NVML's 1980 MHz, more than one step there.
FREQ_STEP_TOL_HZ = 0.5e6


def same_frequency(a_hz: float, b_hz: float) -> bool:
    """Whether ``a_hz`` and ``b_hz`` are the same clock step (within :data:`FREQ_STEP_TOL_HZ`)."""
    return abs(a_hz - b_hz) <= FREQ_STEP_TOL_HZ


@dataclass
class ArmSet:
    """An ordered, fixed list of arms with a mutable availability mask."""

    arms: tuple[Arm, ...]
    available: list[bool] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.arms:
            raise ValueError("an arm set needs at least one arm")
        if not self.available:
            self.available = [True] * len(self.arms)
        self._index = {arm: i for i, arm in enumerate(self.arms)}
        # The arms never change (only their availability): computed once, read per decision.
        self._frequencies_hz = tuple(sorted({a.freq_hz for a in self.arms}, key=lambda f: -1.0 if f is None else f))
        #: Whether any arm runs its prefill steps at another clock (the controller then sets the
        #: clock per step).
        self.follows_work = any(a.prefill_freq_hz is not None for a in self.arms)

    @classmethod
    def product(cls, freqs_hz: Sequence[float | None], batch_sizes: Iterable[int],
                prefill_freqs_hz: Sequence[float] = ()) -> "ArmSet":
        """Every (frequency, batch cap) pair, frequency-major, both ascending; then, for each
        clock in ``prefill_freqs_hz``, the same pairs with their prefill steps at that clock
        (pairs whose frequency is that clock already are not repeated). The plain pairs keep
        their indices whether or not prefill clocks are added."""
        sizes = sorted(set(int(b) for b in batch_sizes))
        freqs = sorted(set(freqs_hz), key=lambda f: -1.0 if f is None else f) or [None]
        arms = [Arm(freq_hz=f, max_batch=b) for f in freqs for b in sizes]
        for p in sorted(set(prefill_freqs_hz)):
            arms += [Arm(freq_hz=f, max_batch=b, prefill_freq_hz=p) for f in freqs if f is not None and f != p
                     for b in sizes]
        return cls(tuple(arms))

    def __len__(self) -> int:
        return len(self.arms)

    def __getitem__(self, index: int) -> Arm:
        return self.arms[index]

    def index(self, arm: Arm) -> int:
        return self._index[arm]

    @property
    def frequencies_hz(self) -> tuple[float | None, ...]:
        return self._frequencies_hz

    @property
    def batch_sizes(self) -> tuple[int, ...]:
        return tuple(sorted({a.max_batch for a in self.arms}))

    def available_indices(self) -> list[int]:
        return [i for i, ok in enumerate(self.available) if ok]

    def default_index(self) -> int:
        """Camel's baseline: the highest available frequency with the largest batch cap, every
        step at that clock."""
        candidates = self.available_indices() or list(range(len(self.arms)))
        return max(
            candidates,
            key=lambda i: (-1.0 if self.arms[i].freq_hz is None else self.arms[i].freq_hz, self.arms[i].max_batch,
                           self.arms[i].prefill_freq_hz is None),
        )

    def disable_frequency(self, freq_hz: float | None) -> list[int]:
        """Mark every arm at ``freq_hz`` unavailable; returns the indices switched off.

        The last available frequency is never switched off, so a choice always remains.
        """
        remaining = {self.arms[i].freq_hz for i in self.available_indices()} - {freq_hz}
        if not remaining:
            return []
        off = [i for i, a in enumerate(self.arms)
               if (a.freq_hz == freq_hz or a.prefill_freq_hz == freq_hz) and self.available[i]]
        for i in off:
            self.available[i] = False
        return off

    def restrict_to_batch_only(self, current_freq_hz: float | None) -> None:
        """Keep only the arms at one frequency: the clock is no longer ours to set.

        Used when a frequency write is refused (no permission) or in read-only mode: the
        policy goes on choosing batch caps, and the frequency label of those arms is kept
        so saved state still lines up.
        """
        freqs = [a.freq_hz for a in self.arms]
        keep = current_freq_hz if current_freq_hz in freqs else max(
            (f for f in freqs if f is not None), default=None
        )
        for i, a in enumerate(self.arms):
            self.available[i] = a.freq_hz == keep and a.prefill_freq_hz is None
