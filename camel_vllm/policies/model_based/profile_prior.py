"""A board-model prior from a device profile: the profile's modelled iterations fitted as if
the board had run them, widened to weigh as much as a few dozen real iterations
(``policy_params: {board_prior: profile}``)."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from camel_vllm.core.events import IterationWork
from camel_vllm.policies.model_based.board import SEGMENT_TOKENS, BoardModel

#: A profile-built prior is worth this many iterations of the board's own data.
PROFILE_PRIOR_ITERATIONS = 64.0


def profile_prior(model: Any, freqs_hz: Sequence[float | None], knots: tuple[float, float] = SEGMENT_TOKENS,
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(time mean, time var, energy mean, energy var) fitted to a profile's modelled iterations.

    ``model`` answers ``iteration_time_s(work, f)`` and ``iteration_power_w(work, f)`` (a
    :class:`~camel_vllm.devices.emulator.roofline.PerformanceModel`: the published roofline, or the
    calibration table ``benchmarks/profile_device.py`` measured on the board). Decode steps of
    1-64 requests and prefill chunks of 16-2048 tokens at every clock are fitted like real
    iterations; the fit's covariance is widened so the prior weighs PROFILE_PRIOR_ITERATIONS.
    """
    clocks = sorted({float(f) for f in freqs_hz if f is not None}) or [1.0]
    board = BoardModel(clocks, knots=knots)
    rows = 0
    for f in clocks:
        for n in (1, 2, 4, 8, 16, 28, 64):
            for ctx in (256, 2048):
                work = IterationWork({f"r{i}": 1 for i in range(n)}, 0, n, n * ctx)
                board.observe(f, work, model.iteration_time_s(work, f),
                              model.iteration_power_w(work, f) * model.iteration_time_s(work, f))
                rows += 1
        for chunk in (16, 64, 256, 1024, 2048):
            for n in (0, 8):
                tokens = {"p": chunk, **{f"r{i}": 1 for i in range(n)}}
                work = IterationWork(tokens, chunk, n, n * 1024)
                t = model.iteration_time_s(work, f)
                board.observe(f, work, t, model.iteration_power_w(work, f) * t)
                rows += 1
    board.fold()
    board.refresh_prior()
    widen = rows / PROFILE_PRIOR_ITERATIONS
    out = []
    for reg in (board.time, board.energy):
        out.extend([reg.mean.copy(), np.diag(reg.covariance()) * widen])
    return out[0], out[1], out[2], out[3]
