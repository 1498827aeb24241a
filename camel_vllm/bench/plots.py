"""The four ``bench sim --plot-dir`` figures (matplotlib, Agg backend; PNG). All energy is emulated.

- ``edp_over_time.png``: each policy's per-request EDP, rolling mean over 50 requests,
  against finish time;
- ``arm_choices.png``: for each policy, decisions per arm per time bin (heatmap); not written
  when only ``oracle`` ran;
- ``regret.png``: cumulative EDP regret against the oracle arm, request by request (the
  same requests, so the difference is the policy's alone); written only when ``oracle`` ran
  with another policy;
- ``energy_latency.png``: mean energy per request vs mean latency of every static arm,
  the oracle's and each policy's most chosen arm marked, each policy's own point too.

:func:`write_plots` says which it wrote and why it left any out.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from camel_vllm.bench.sim import BenchOutput

ROLLING_REQUESTS = 50
TIME_BINS = 60


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _by_finish(run):
    return sorted(run.records, key=lambda r: r.finish_s)


def _rolling(values, window):
    out, acc = [], 0.0
    for i, v in enumerate(values):
        acc += v
        if i >= window:
            acc -= values[i - window]
        out.append(acc / min(i + 1, window))
    return out


def plot_edp_over_time(out: "BenchOutput", path: str) -> str:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9, 4.5))
    for name, run in out.runs.items():
        recs = _by_finish(run)
        ax.plot([r.finish_s for r in recs], _rolling([r.edp_js for r in recs], ROLLING_REQUESTS), label=name, lw=1.2)
    ax.set_yscale("log")
    ax.set_xlabel("simulated time (s)")
    ax.set_ylabel(f"request EDP, J*s (rolling mean of {ROLLING_REQUESTS}; emulated)")
    ax.set_title(f"EDP over time: {out.result.trace}")
    ax.legend(fontsize=8)
    return _save(plt, fig, path)


def _save(plt: Any, fig: Any, path: str) -> str:
    """Lay out, write the PNG and free the figure; returns ``path``."""
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_arm_choices(out: "BenchOutput", path: str) -> str:
    import numpy as np

    plt = _pyplot()
    names = [n for n in out.runs if n != "oracle"]
    labels = [a.label for a in out.arms.arms]
    end_s = max((r.end_s for r in out.runs.values()), default=1.0) or 1.0
    fig, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names) + 1, 6), sharey=True, squeeze=False)
    for ax, name in zip(axes[0], names, strict=False):
        grid = np.zeros((len(labels), TIME_BINS))
        for t, arm in out.runs[name].decisions:
            grid[arm, min(TIME_BINS - 1, int(t / end_s * TIME_BINS))] += 1
        ax.imshow(grid, aspect="auto", origin="lower", cmap="viridis", extent=(0, end_s, -0.5, len(labels) - 0.5),
                  interpolation="nearest")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("simulated time (s)")
    axes[0][0].set_yticks(range(len(labels)))
    axes[0][0].set_yticklabels(labels, fontsize=5)
    axes[0][0].set_ylabel("arm (MHz/batch)")
    fig.suptitle("arm choices over time (decisions per bin)")
    return _save(plt, fig, path)


def plot_regret(out: "BenchOutput", path: str) -> str:
    """Raises ValueError without an oracle run (nothing to measure regret against)."""
    oracle = out.runs.get("oracle")
    if oracle is None:
        raise ValueError("regret needs the oracle run (--policies ...,oracle)")
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9, 4.5))
    ref = {r.request_id: r.edp_js for r in oracle.records}
    for name, run in out.runs.items():
        if name == "oracle":
            continue
        recs = sorted(run.records, key=lambda r: r.arrival_s)
        acc, ys = 0.0, []
        for r in recs:
            acc += r.edp_js - ref.get(r.request_id, r.edp_js)
            ys.append(acc)
        ax.plot(range(1, len(ys) + 1), ys, label=name, lw=1.2)
    ax.axhline(0.0, color="k", lw=0.6)
    ax.legend(fontsize=8)
    ax.set_xlabel("request (arrival order)")
    ax.set_ylabel("cumulative EDP regret vs oracle, J*s (emulated)")
    ax.set_title("cumulative regret against the best static arm")
    return _save(plt, fig, path)


def plot_energy_latency(out: "BenchOutput", path: str) -> str:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 6))

    def point(run):
        n = max(1, len(run.records))
        return run.energy_j / n, sum(r.latency_s for r in run.records) / n

    if out.static_runs:
        xs, ys = zip(*(point(r)[::-1] for r in out.static_runs.values()), strict=False)
        ax.scatter(xs, ys, s=14, c="lightgray", edgecolors="gray", label="static arms")
    markers = "os^vDP*Xh<>"
    for i, (name, run) in enumerate(out.runs.items()):
        e, lat = point(run)
        ax.scatter([lat], [e], s=70, marker=markers[i % len(markers)], label=name, zorder=3)
    ax.set_xscale("log")
    ax.set_xlabel("mean latency per request (s, log scale)")
    ax.set_ylabel("device energy per request, idle included (J, emulated)")
    ax.set_title("energy vs latency: every arm (gray) and each policy")
    ax.legend(fontsize=8)
    return _save(plt, fig, path)


#: The files :func:`write_plots` may write, in the order it writes them.
PLOT_FILES = ("edp_over_time.png", "arm_choices.png", "regret.png", "energy_latency.png")


def plot_paths(folder: str) -> list[str]:
    """Every file :func:`write_plots` may write into ``folder`` (to check them before a run)."""
    return [os.path.join(folder, name) for name in PLOT_FILES]


@dataclass
class PlotsWritten:
    """What :func:`write_plots` did: the files written, and each one left out with the reason."""

    paths: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)


def write_plots(out: "BenchOutput", folder: str) -> PlotsWritten:
    """Write the figures ``out`` has data for into ``folder`` (made if missing)."""
    os.makedirs(folder, exist_ok=True)
    others = [name for name in out.runs if name != "oracle"]
    written = PlotsWritten()
    makers = {"edp_over_time.png": plot_edp_over_time, "arm_choices.png": plot_arm_choices,
              "regret.png": plot_regret, "energy_latency.png": plot_energy_latency}
    for name in PLOT_FILES:
        if name == "regret.png" and "oracle" not in out.runs:
            written.skipped[name] = "no oracle run to measure regret against (add oracle to --policies)"
        elif name in ("regret.png", "arm_choices.png") and not others:
            written.skipped[name] = "no policy but oracle ran"
        else:
            written.paths.append(makers[name](out, os.path.join(folder, name)))
    return written


def plot_matrix(cells_in: Any, path: str, policy: str = "camel", title: str | None = None) -> str:
    """``bench matrix`` heatmaps: ``policy`` vs default and vs the best static arm per cell,
    each annotated with the paired change and its standard error (emulated); ``title``: the board."""
    import numpy as np

    plt = _pyplot()
    traces = list(dict.fromkeys(c.trace for c in cells_in))
    loads = sorted({c.load for c in cells_in})
    fig, axes = plt.subplots(1, 2, figsize=(4 + 1.6 * len(loads) * 2, 1.2 + 0.7 * len(traces)), squeeze=False)
    panels = (("vs_default", "vs default"), ("vs_oracle", "vs best static arm"))
    for ax, (what, what_title) in zip(axes[0], panels, strict=False):
        grid = np.full((len(traces), len(loads)), np.nan)
        cells: list = []
        for c in cells_in:
            diff = getattr(c, what).get(policy)
            if diff:
                i, j = traces.index(c.trace), loads.index(c.load)
                grid[i, j] = diff["diff_pct"]
                cells.append((i, j, diff))
        lim = max(5.0, float(np.nanmax(np.abs(grid))) if np.isfinite(grid).any() else 5.0)
        for i, j, diff in cells:  # white on the darkest cells, so every figure stays legible
            dark = abs(diff["diff_pct"]) > 0.6 * lim
            ax.text(j, i, f"{diff['diff_pct']:+.1f}\n±{diff['stderr_pct']:.1f}", ha="center", va="center",
                    fontsize=7, color="white" if dark else "black")
        im = ax.imshow(grid, cmap="RdBu_r", vmin=-lim, vmax=lim, aspect="auto")
        ax.set_xticks(range(len(loads)))
        ax.set_xticklabels([f"{x:g}" for x in loads])
        ax.set_yticks(range(len(traces)))
        ax.set_yticklabels([t.rsplit("/", 1)[-1] for t in traces], fontsize=7)
        ax.set_xlabel("load (fraction of the default arm's capacity)")
        ax.set_title(f"{policy} {what_title}: mean EDP change, % (emulated)", fontsize=9)
        fig.colorbar(im, ax=ax, shrink=0.8)
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(plt, fig, path)
