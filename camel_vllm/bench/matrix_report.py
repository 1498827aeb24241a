"""The robustness matrix as text tables and JSON: one table of EDP changes and one of latency per board.

Columns follow the policies that were run: the tested policy against default and against the
best static arm (with that arm), every other policy against default, and the verdicts; a policy
that was not run has no column. Every energy figure is emulated.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from dataclasses import dataclass
from typing import Any, Sequence

from camel_vllm.bench.matrix import ORACLE, ORACLE3, CellResult, MatrixPlan

#: A policy is behind a peer when its paired EDP change against it exceeds this many standard errors.
NO_WORSE_STDERRS = 2.0
#: ... or its SLO attainment is more than this share below the peer's (about the binomial error
#: of a share near 95 % over 3,000 requests, 0.4 %, with margin).
SLO_TOLERANCE = 0.01


@dataclass
class BoardResult:
    """One board's matrix: its plan (device and model profiles, engine limits), its arms and cells."""

    plan: MatrixPlan
    cells: list[CellResult]
    arms: int

    @property
    def device(self) -> str:
        return self.plan.setup.config.device_profile

    @property
    def model(self) -> str:
        return self.plan.setup.config.model_profile


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def board_heading(board: BoardResult) -> str:
    plan = board.plan
    engine = plan.setup.engine
    short = {c.requests for c in board.cells if c.requests < plan.requests}
    counted = (f"{_plural(plan.requests, 'request')}" if not short else
               f"{_plural(min(short), 'request')} (the trace holds fewer than --requests {plan.requests})")
    return (f"{board.device} / {board.model}, {counted} x {_plural(plan.seeds, 'seed')} per cell, "
            f"--max-num-seqs {engine.max_num_seqs}, {board.arms} (clock, cap) arms (EMULATED energy)")


def best_static_label(cell: CellResult) -> str:
    """The most frequent best static arm over the seeds; a tie goes to the earliest seed's (a
    set's order would change with the interpreter's string hashing)."""
    return Counter(cell.oracle_arms).most_common(1)[0][0] if cell.oracle_arms else "-"


def format_matrix(cells: Sequence[CellResult], policy: str = "camel", others: Sequence[str] | None = None) -> str:
    """The EDP table: one row per cell, ``policy`` against default and the best static arm, then
    each of ``others`` (default: every other policy in the cells) against default."""
    if others is None:
        seen = dict.fromkeys(name for c in cells for name in c.vs_default)
        others = [n for n in seen if n not in (policy, ORACLE, ORACLE3, "default")]
    has_oracle = any(ORACLE in c.vs_default for c in cells)
    has_triple = any(ORACLE3 in c.vs_default for c in cells)
    head = [f"{'trace':<34}", f"{'load':>5}", f"{'cap rps':>9}", f"{'req':>5}", f"{'default EDP':>13}",
            f"{policy + ' vs default':>22}"]
    if has_oracle:
        head += [f"{'vs best static':>17}", f"{'best static':>22}"]
    if has_triple:
        head += [f"{'vs best triple':>17}", f"{'triple vs static':>30}"]
    head += [f"{name + ' vs default':>{max(16, len(name) + 13)}}" for name in others]
    lines = ["".join(head) + "  verdict"]
    for c in cells:
        verdict = c.verdicts.get(policy, {})
        words = []
        if verdict.get("no_harm") is not None:
            words.append("no harm" if verdict["no_harm"] else "HARM")
        if verdict.get("close_to_oracle") is not None:
            words.append("close" if verdict["close_to_oracle"] else "FAR")
        if verdict.get("half_headroom") is not None:
            words.append("half" if verdict["half_headroom"] else "MISSED")
        beaten = peers_beaten(c, policy)
        if beaten:
            words.append("BEHIND " + "/".join(beaten))
        name = c.trace.rsplit("/", 1)[-1]
        row = [f"{name[:33]:<34}", f"{c.load:>5.2f}", f"{sum(c.capacity_rps) / len(c.capacity_rps):>9.3f}",
               f"{c.requests:>5}", f"{c.mean_edp_js.get('default', float('nan')):>13.1f}",
               f"{_pm(c.vs_default.get(policy)):>22}"]
        if has_oracle:
            og = c.vs_default.get(ORACLE)
            row += [f"{_pm(c.vs_oracle.get(policy)):>17}",
                    f"{(_pm(og) + ' ' + best_static_label(c)) if og else '-':>22}"]
        if has_triple:
            gain = c.vs_oracle.get(ORACLE3)
            arm = Counter(c.triple_arms).most_common(1)[0][0] if c.triple_arms else "-"
            row += [f"{_pm(c.vs_triple.get(policy)):>17}", f"{(_pm(gain) + ' ' + arm) if gain else '-':>30}"]
        row += [f"{_pm(c.vs_default.get(n)):>{max(16, len(n) + 13)}}" for n in others]
        lines.append("".join(row) + "  " + ", ".join(words))
    return "\n".join(lines)


def peers_beaten(cell: CellResult, policy: str) -> list[str]:
    """The peers ``policy``'s EDP is above beyond noise (more than two paired standard errors)
    in ``cell``; with an SLO, also those whose SLO attainment it falls below by more than a
    percentage point."""
    behind = []
    for peer, diff in cell.vs_peers.get(policy, {}).items():
        if diff["diff_pct"] > NO_WORSE_STDERRS * diff["stderr_pct"]:
            behind.append(peer)
    mine = cell.latency.get(policy, {}).get("slo_met")
    if mine is not None:
        for peer in cell.vs_peers.get(policy, {}):
            theirs = cell.latency.get(peer, {}).get("slo_met")
            if theirs is not None and mine < theirs - SLO_TOLERANCE and peer not in behind:
                behind.append(f"{peer}(SLO)")
    return behind


def format_latency(cells: Sequence[CellResult], policies: Sequence[str]) -> str:
    """The latency table: per cell and policy, TTFT p50/p99 (s) and TPOT p50/p99 (ms) over every
    seed's requests and, with an SLO, the share of requests that met it."""
    with_slo = any(c.latency.get(p, {}).get("slo_met") is not None for c in cells for p in policies)
    cols = []
    for p in policies:
        cols += [(p, "ttft", max(14, len(p) + 9)), (p, "tpot", max(14, len(p) + 10))]
        if with_slo:
            cols.append((p, "slo", max(9, len(p) + 5)))
    titles = {"ttft": "TTFT s", "tpot": "TPOT ms", "slo": "SLO"}
    head = f"{'trace':<34}{'load':>5}" + "".join(f"{p + ' ' + titles[k]:>{w}}" for p, k, w in cols)
    lines = [head + "   (p50/p99)"]
    for c in cells:
        row = f"{c.trace.rsplit('/', 1)[-1][:33]:<34}{c.load:>5.2f}"
        for p, k, w in cols:
            row += f"{_latency(c.latency.get(p), k):>{w}}"
        lines.append(row)
    return "\n".join(lines)


def _latency(lat: dict[str, Any] | None, kind: str) -> str:
    if not lat:
        return "-"
    if kind == "slo":
        met = lat.get("slo_met")
        return "-" if met is None else f"{100 * met:.1f}%"
    lo, hi = lat.get(f"{kind}_p50_s"), lat.get(f"{kind}_p99_s")
    if lo is None or hi is None:
        return "-"
    return f"{lo:.2f}/{hi:.2f}" if kind == "ttft" else f"{1e3 * lo:.0f}/{1e3 * hi:.0f}"


def _pm(diff: dict[str, Any] | None) -> str:
    if not diff:
        return "-"
    return f"{diff['diff_pct']:+.1f}±{diff['stderr_pct']:.1f}%"


def board_to_dict(board: BoardResult) -> dict[str, Any]:
    plan = board.plan
    cfg = plan.setup.config
    return {
        "device": cfg.device_profile, "model": cfg.model_profile, "arms": board.arms,
        "max_num_seqs": plan.setup.engine.max_num_seqs,
        "max_num_batched_tokens": plan.setup.engine.max_num_batched_tokens,
        "slo": None if cfg.slo is None else dataclasses.asdict(cfg.slo),
        "cells": [dataclasses.asdict(c) for c in board.cells],
    }


def matrix_to_dict(boards: Sequence[BoardResult], notes: Sequence[str] = ()) -> dict[str, Any]:
    plan = boards[0].plan
    return {
        "mode": "matrix", "emulated": True,
        "traces": list(plan.traces), "loads": list(plan.loads), "seeds": plan.seeds, "requests": plan.requests,
        "policies": [p.label for p in plan.policies],
        "load_definition": "fraction of the saturated throughput of the default arm on the same requests "
                           "(all queued at t = 0)",
        "units": {"mean_edp_js": "J*s", "capacity_rps": "req/s", "diff_pct": "%", "stderr_pct": "%",
                  "ttft_p50_s": "s", "ttft_p99_s": "s", "tpot_p50_s": "s", "tpot_p99_s": "s", "slo_met": "share"},
        "notes": list(notes), "boards": [board_to_dict(b) for b in boards],
    }
