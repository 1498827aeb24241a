"""``voltana``: VoltanaLLM's per-iteration clock rule (arXiv 2509.04827), rebuilt as a peer.

Rebuilt from the authors' public code (Supercomputing-System-AI-Lab/VoltanaLLM,
``python/sglang/srt/managers/freq_manager.py``, ``FreqManager.get_f_target``, commit 2741732):
the top clock while requests wait; otherwise the lowest clock whose predicted step latency for
the batch at hand keeps the SLO; the top clock when no prediction is available. Its demo runs a
decode instance with a 50 ms SLO plus a 35 % margin over the clocks {1005, 1410} MHz of an A100
(``voltana-llm-scripts/demo/d_server.sh``).

Where the rebuild differs: VoltanaLLM disaggregates prefill and decode onto separate instances
and predicts latency from tables profiled offline per (clock, batch, tokens); here one engine
serves both, the step latency comes from camel's online board model (the same regression camel
learns, so both policies know the board equally), decode steps are held to ``tpot_slo_s`` and
prefill steps to ``ttft_slo_s`` (default: the top clock, as its prefill instance has its own
TTFT budget), the clocks are the arm set's, and the batch cap is vLLM's own (the largest arm):
VoltanaLLM does not set it. Its RPS/TPS thresholds (off in the demo) are left out.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from camel_vllm.core.arms import ArmSet
from camel_vllm.core.events import Arm, Context, EngineSnapshot, IterationWork, is_prefill_step
from camel_vllm.policies.base import ArmEstimate, Policy
from camel_vllm.policies.decision import DecisionInput
from camel_vllm.policies.declaration import BuildInputs, Cadence, Param, PolicyDeclaration, seconds_or_none
from camel_vllm.policies.model_based.board import BoardModel, segment_knots, work_terms

#: VoltanaLLM's demo SLO: 50 ms with a 35 % margin (voltana-llm-scripts/demo/d_server.sh).
DEMO_TPOT_SLO_S = 0.050 * 1.35
#: Iterations between refits of the step-latency model (a fold and a solve).
REFIT_ITERATIONS = 64
#: Iterations the model sees (at the top clock) before the rule uses it.
WARMUP_ITERATIONS = 64


class VoltanaPolicy(Policy):
    """Top clock while requests wait, else the lowest clock that keeps the step within the SLO."""

    name = "voltana"
    board: BoardModel  # its step-time model, always

    def __init__(self, arms: ArmSet, *, tpot_slo_s: float = DEMO_TPOT_SLO_S, ttft_slo_s: float | None = None) -> None:
        self.arms = arms
        self.tpot_slo_s = float(tpot_slo_s)
        self.ttft_slo_s = None if ttft_slo_s is None else float(ttft_slo_s)
        plain = [i for i, a in enumerate(arms.arms) if a.prefill_freq_hz is None]
        self._arm = max(plain, key=lambda i: (arms[i].freq_hz or 0.0, arms[i].max_batch))
        self.board = BoardModel([a.freq_hz for a in arms.arms], knots=segment_knots(max(arms.batch_sizes)))
        self._clocks = self.board.clocks_hz
        self._top = float(self._clocks[-1])
        self._coef: np.ndarray | None = None  # (clocks, 5) seconds per work term, posterior mean
        self._since_fit = 0
        self.pulls = np.zeros(len(arms))

    def select(self, decision: DecisionInput) -> int:
        available = decision.available
        choice = self._arm if self._arm in available else max(available, key=lambda i: (
            self.arms[i].freq_hz or 0.0, self.arms[i].max_batch))
        self.pulls[choice] += 1
        return choice

    def step_frequency(self, work: IterationWork, arm: Arm, snapshot: EngineSnapshot | None = None) -> float | None:
        """The rule (module docstring); the arm's clock set is the clocks that may be chosen."""
        if self._coef is None or (snapshot is not None and snapshot.num_waiting > 0):
            return self._top
        slo = self.ttft_slo_s if is_prefill_step(work) else self.tpot_slo_s
        if slo is None:
            return self._top
        terms = np.array(work_terms(work.num_prefill_tokens, work.num_decode_tokens, work.context_tokens,
                                    self.board.knots))
        times = self._coef @ terms
        ok = np.flatnonzero(times <= slo)
        return float(self._clocks[ok[0]]) if ok.size else self._top

    def observe_iteration(self, arm_index: int, work: IterationWork, duration_s: float,
                          energy_j: float | None = None, *, freq_hz: float | None = None,
                          switched: bool = False) -> None:
        if not switched:
            self.board.observe(self._top if freq_hz is None else freq_hz, work, duration_s, energy_j)
        self._since_fit += 1
        if self._since_fit >= REFIT_ITERATIONS and self.board.iterations + len(self.board._buffer) >= WARMUP_ITERATIONS:
            self._since_fit = 0
            self.board.fold()
            if self.board.ready:
                self.board.prepare()
                coef = self.board.mean_coefficients().time_s
                # a lower clock is never predicted faster than the top clock doing the same work
                self._coef = np.maximum(coef, coef[-1])

    def observe(self, arm_index: int, context: Context, cost: float, weight: float = 1.0) -> None:
        return None

    def estimates(self) -> list[ArmEstimate]:
        return []

    def state_dict(self) -> dict[str, Any]:
        return {"kind": "voltana"}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if state.get("kind") != "voltana":
            raise ValueError(f"state kind {state.get('kind')!r} is not voltana")


def _build(inputs: BuildInputs) -> Policy:
    """Its TPOT SLO from ``tpot_slo_s``, else the config's ``slo`` when its metric is tpot, else
    VoltanaLLM's demo SLO; prefill steps at the top clock unless a TTFT SLO is given."""
    config, params = inputs.config, inputs.params
    tpot, ttft = params["tpot_slo_s"], params["ttft_slo_s"]
    if tpot is None:
        tpot = config.slo.threshold_s if config.slo is not None and config.slo.metric == "tpot" else DEMO_TPOT_SLO_S
    if ttft is None and config.slo is not None and config.slo.metric == "ttft":
        ttft = config.slo.threshold_s
    return VoltanaPolicy(inputs.arms, tpot_slo_s=float(tpot), ttft_slo_s=ttft)


DECLARATION = PolicyDeclaration(
    "voltana", "VoltanaLLM's per-iteration clock rule (arXiv 2509.04827), rebuilt: a peer", _build,
    params=(Param("tpot_slo_s", None, seconds_or_none,
                  "decode steps' latency SLO (default: slo when tpot, else 67.5 ms)"),
            Param("ttft_slo_s", None, seconds_or_none, "prefill steps' latency SLO (default: slo when ttft, else "
                                                       "the top clock)")),
    cadence=Cadence(chooses_step_clock=True), listing=11,
)
