"""Benchmarks of the other seed systems, all in the simulator on the emulated Orin.

Sections (``--sections fit,plan,slo,slo-metrics,warm``; default all), every figure EMULATED:

- ``fit``: Wilkins-style energy/runtime models fitted from request logs of static arms,
  per device profile (orin-agx-32gb, orin-agx-64gb); R^2 on held-out requests, from tokens
  alone (Wilkins' form) and with the concurrency term (the logged ``iteration_shares``),
  per arm and per mean_batch band. Two regimes: offline batch (all requests queued at t=0:
  the engine saturated, Wilkins et al.'s setting) and online (the Azure conversation trace
  at a light rate).
- ``plan``: the exact MILP assignment of Azure requests to the two devices vs round-robin and
  random, zeta in 0, 0.25, 0.5, 0.75, 1 (min share 0.1).
- ``slo``: ``default`` vs ``camel`` vs ``slo`` (throttLL'eM-style, pure) vs ``slo+camel`` at
  one TPOT SLO on the Azure conversation trace: energy, SLO attainment, EDP.
- ``slo-metrics``: the pure ``slo`` policy under e2e and TTFT objectives.
- ``warm``: camel-ts (the request-level bandit; its priors are per-arm costs) on one trace
  segment, cold and with priors (``set_prior_means``) from an energy model fitted on segment 1,
  either from a short profiling run of every arm or from its own exploring log (mixed-arm requests
  credited by share): mean EDP and regret against the best static arm on segment 2, over seeds.

Usage: ``python benchmarks/seed_systems.py --out benchmarks/results/seed_systems [--quick]``
writes ``seed_systems.json`` and the fitted models under ``--out`` (request logs under
``--logs``), and prints the tables that docs/seed-systems.md quotes.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from typing import Any, Sequence

import numpy as np

from camel_vllm.cli.fit_energy_model import format_model
from camel_vllm.core.config import SLOConfig
from camel_vllm.offline.energy_model import EnergyModel
from camel_vllm.offline.fitting import BAND_EDGES, fit_energy_model
from camel_vllm.offline.planning import DeviceModel, plan
from camel_vllm.offline.warm_start import priors_from_energy_model
from camel_vllm.sim.engine import EngineConfig, SimRun
from camel_vllm.telemetry.reqlog import read_request_log
from camel_vllm.traces import load_trace
from camel_vllm.traces.base import TraceRequest

from seed_systems_sim import (  # benchmarks/, beside this file
    AZURE_CONV, DEVICES, FIT_ARMS, MODEL, ZETAS, arms_of, offline, setup_config, simulate, static_arm, steady_state,
)


# ------------------------------------------------------------------------- fit
def section_fit(args: argparse.Namespace, out: dict[str, Any]) -> None:
    n = 400 if args.quick else 1500
    trace = load_trace(args.trace, requests=n)
    online = load_trace(args.trace, requests=n, target_rps=args.light_rps)
    engine = EngineConfig()
    rows: list[dict[str, Any]] = []
    bands: list[dict[str, Any]] = []
    for device in DEVICES:
        cfg = setup_config(device, seed=args.seed)
        arms = arms_of(cfg, engine)
        for regime, requests, runtime in (("offline", offline(trace), "decode_s"),
                                          (f"online {args.light_rps} rps", online.requests, "latency_s")):
            records: list[dict[str, Any]] = []
            dropped = 0
            for frac, batch in FIT_ARMS:
                mhz, b = static_arm(arms, frac, batch)
                log = os.path.join(args.logs, f"{device}-{regime.split()[0]}-{mhz:g}-{b}.jsonl")
                if os.path.exists(log):
                    os.remove(log)
                simulate(cfg.replace(policy="static", policy_params={"arm": [mhz, b]}), requests, log_path=log)
                run_records = list(read_request_log(log))
                if regime == "offline":
                    kept = steady_state(run_records)
                    dropped += len(run_records) - len(kept)
                    run_records = kept
                records += run_records
            model = fit_energy_model(records, test_fraction=0.2, seed=args.seed, runtime_target=runtime)
            if dropped:
                model.notes.append(f"{dropped} requests of the final drain (engine no longer saturated) left out")
            model.notes.append(f"regime {regime}; {n} Azure conv requests per arm; runtime={runtime}")
            print(f"\n== fit: {device}, {regime} (EMULATED) ==\n{format_model(model)}")
            print("; ".join(model.notes))
            if regime == "offline":
                model.save(os.path.join(args.out, "models", f"{device}.json"))
            for label, fit in model.arms.items():
                rows.append({"device": device, "regime": regime, "arm": label, "runtime": runtime,
                             "test_requests": fit.test_requests, "r2_energy": fit.r2_energy,
                             "r2_runtime": fit.r2_runtime, "r2_energy_tokens_only": fit.r2_energy_tokens_only,
                             "r2_runtime_tokens_only": fit.r2_runtime_tokens_only,
                             "typical_batch": fit.typical_batch, "energy_iteration_j": fit.energy_iteration_j,
                             "concurrency_term": model.concurrency})
            bands += [{"device": device, "regime": regime, **b} for b in model.bands]
    print_fit_summary(rows, bands)
    out["fit"] = {"requests_per_arm": n, "emulated": True, "band_edges": list(BAND_EDGES), "rows": rows,
                  "bands": bands}


def print_fit_summary(rows: list[dict[str, Any]], bands: list[dict[str, Any]]) -> None:
    """The docs table: held-out R^2 per arm, tokens only (Wilkins) and with the concurrency term."""
    def r2(v: float | None) -> str:
        return "  n/a" if v is None else f"{v:.4f}"

    by = {(r["device"], r["arm"], r["regime"].split()[0]): r for r in rows}
    print("\n== fit summary (EMULATED), held-out R^2: tokens only (Wilkins form) | with concurrency term m ==")
    print(f"{'device':>14} {'arm':>10} | {'off e tok':>9} {'off e +m':>8} {'off dec tok':>11} {'off dec +m':>10} | "
          f"{'on e tok':>8} "
          f"{'on e +m':>8} {'on lat tok':>10} {'on lat +m':>9} {'batch':>5}")
    for (device, arm, regime), off in by.items():
        if regime != "offline":
            continue
        on = by.get((device, arm, "online"), {})
        print(f"{device:>14} {arm:>10} | {r2(off['r2_energy_tokens_only']):>9} {r2(off['r2_energy']):>8} "
              f"{r2(off['r2_runtime_tokens_only']):>11} {r2(off['r2_runtime']):>10} | "
              f"{r2(on.get('r2_energy_tokens_only')):>8} {r2(on.get('r2_energy')):>8} "
              f"{r2(on.get('r2_runtime_tokens_only')):>10} {r2(on.get('r2_runtime')):>9} "
              f"{on.get('typical_batch') or 0:5.2f}")
    print("held-out R^2 (with m) per mean_batch band, online regime: energy / latency (requests)")
    for band in bands:
        if band["regime"].startswith("online"):
            print(f"{band['device']:>14} {band['arm']:>10} {band['band']:>5}: {r2(band['r2_energy'])} / "
                  f"{r2(band['r2_runtime'])} ({band['test_requests']})")


# ------------------------------------------------------------------------ plan
def section_plan(args: argparse.Namespace, out: dict[str, Any]) -> None:
    fitted = {d: EnergyModel.load(os.path.join(args.out, "models", f"{d}.json")) for d in DEVICES}

    def key(label: str) -> tuple[float, int]:
        mhz, batch = label.split("/")
        return float(mhz), int(batch)

    pairings = {  # both devices at their default arm; and the 64GB module at its slowest profiled arm
        "default arms": {d: max(fitted[d].arms, key=key) for d in DEVICES},
        "32gb default, 64gb slow": {DEVICES[0]: max(fitted[DEVICES[0]].arms, key=key),
                                    DEVICES[1]: min(fitted[DEVICES[1]].arms, key=key)},
    }
    n = 500 if args.quick else 3000
    trace = load_trace(args.trace, requests=n + 1500).requests[1500:]  # not the fitted requests
    tokens = [(r.prompt_tokens, r.output_tokens) for r in trace]
    out["plan"] = {"requests": len(tokens), "min_share": 0.1, "runtime": "decode_s", "pairings": {}}
    for pairing, arm_of in pairings.items():
        models = [DeviceModel(d, fitted[d].fit_for(arm_of[d]), arm_of[d], emulated=True) for d in DEVICES]
        rows = []
        print(f"\n== plan ({pairing}): {len(tokens)} Azure conv requests over "
              f"{', '.join(m.name + ' @ ' + m.arm for m in models)}, min share 0.1 (EMULATED models) ==")
        print(f"{'zeta':>5} {'milp kJ':>9} {'rr kJ':>9} {'rand kJ':>9} {'saved vs rr':>11} "
              f"{'milp ks':>8} {'rr ks':>8} {'share 32gb':>10} {'solve s':>8}")
        for zeta in ZETAS:
            t0 = time.perf_counter()
            res = plan(models, tokens, zeta=zeta, min_share=0.1, seed=args.seed)
            solve_s = time.perf_counter() - t0
            a = res.assignments
            share = a["milp"].requests_per_device[DEVICES[0]] / len(tokens)
            print(f"{zeta:5.2f} {a['milp'].energy_j / 1e3:9.2f} {a['round-robin'].energy_j / 1e3:9.2f} "
                  f"{a['random'].energy_j / 1e3:9.2f} {100 * res.saving_vs('round-robin'):10.1f}% "
                  f"{a['milp'].runtime_s / 1e3:8.2f} {a['round-robin'].runtime_s / 1e3:8.2f} {share:10.2f} "
                  f"{solve_s:8.2f}")
            rows.append({"zeta": zeta, "solve_s": solve_s, "saving_vs_round_robin": res.saving_vs("round-robin"),
                         "saving_vs_random": res.saving_vs("random"), **res.to_dict()})
        out["plan"]["pairings"][pairing] = {"arms": arm_of, "rows": rows}


# ------------------------------------------------------------------------- slo
def tpot_s(run: SimRun, outputs: dict[str, int]) -> list[float | None]:
    vals: list[float | None] = []
    for r in run.records:
        k = outputs[r.request_id]
        if r.ttft_s is None or k < 2:
            vals.append(None)
        else:
            vals.append((r.finish_s - r.arrival_s - r.ttft_s) / (k - 1))
    return vals


def summarise(run: SimRun, outputs: dict[str, int], threshold_s: float) -> dict[str, Any]:
    tp = [v for v in tpot_s(run, outputs) if v is not None]
    edps = [r.edp_js for r in run.records]
    lat = sorted(r.latency_s for r in run.records)
    return {
        "requests": len(run.records), "energy_j": run.energy_j, "mean_edp_js": float(np.mean(edps)),
        "total_edp_js": float(np.sum(edps)), "slo_attainment": float(np.mean([v <= threshold_s for v in tp])),
        "p90_tpot_s": float(np.quantile(tp, 0.9)), "mean_tpot_s": float(np.mean(tp)),
        "mean_latency_s": float(np.mean(lat)), "p99_latency_s": float(np.quantile(lat, 0.99)),
        "arm_switches": run.arm_switches,
    }


def section_slo(args: argparse.Namespace, out: dict[str, Any]) -> None:
    n = 600 if args.quick else 2000
    device = DEVICES[0]
    trace = load_trace(args.trace, requests=n, target_rps=args.slo_rps)
    outputs = {r.request_id: r.output_tokens for r in trace.requests}
    base = setup_config(device, seed=args.seed)
    reference = simulate(base.replace(policy="default"), trace).run
    ref_tp = [v for v in tpot_s(reference, outputs) if v is not None]
    threshold = round(float(np.quantile(ref_tp, 0.9)) * args.slo_slack, 4)
    slo = SLOConfig(metric="tpot", threshold_s=threshold, quantile=0.9)
    print(f"\n== slo: {device}, {n} Azure conv requests at {args.slo_rps} req/s (EMULATED); SLO: p90 TPOT <= "
          f"{threshold * 1e3:.1f} ms ({args.slo_slack} x default's p90) ==")
    runs = {
        "default": lambda: reference,
        "camel": lambda: simulate(base.replace(policy="camel"), trace).run,
        "camel (slo guard)": lambda: simulate(base.replace(policy="camel", slo=slo), trace).run,
        "slo": lambda: simulate(base.replace(policy="slo", slo=slo), trace, pure_slo=True).run,
        "slo+camel": lambda: simulate(base.replace(policy="slo", slo=slo, policy_params={"inner": "camel"}),
                                      trace).run,
    }
    rows = {}
    print(f"{'policy':>18} {'energy kJ':>9} {'vs default':>10} {'SLO met':>8} {'p90 TPOT ms':>11} "
          f"{'mean EDP':>9} {'vs default':>10} {'p99 lat s':>9}")
    for name, make in runs.items():
        s = summarise(make(), outputs, threshold)
        rows[name] = s
        d = rows["default"]
        print(f"{name:>18} {s['energy_j'] / 1e3:9.2f} {100 * (s['energy_j'] / d['energy_j'] - 1):9.1f}% "
              f"{100 * s['slo_attainment']:7.1f}% {1e3 * s['p90_tpot_s']:11.1f} {s['mean_edp_js']:9.1f} "
              f"{100 * (s['mean_edp_js'] / d['mean_edp_js'] - 1):9.1f}% {s['p99_latency_s']:9.1f}")
    out["slo"] = {"device": device, "requests": n, "rps": args.slo_rps,
                  "slo": {"metric": "tpot", "threshold_s": threshold, "quantile": 0.9}, "policies": rows}


def section_slo_metrics(args: argparse.Namespace, out: dict[str, Any]) -> None:
    """The pure ``slo`` policy under e2e and TTFT objectives (thresholds from default's run)."""
    n = 600 if args.quick else 2000
    device = DEVICES[0]
    trace = load_trace(args.trace, requests=n, target_rps=args.slo_rps)
    base = setup_config(device, seed=args.seed)
    ref = simulate(base.replace(policy="default"), trace).run
    lat = [r.latency_s for r in ref.records]
    ttft = [r.ttft_s for r in ref.records if r.ttft_s is not None]
    objectives = (
        ("e2e", float(np.quantile(lat, 0.99)), 0.99, "default's p99 (throttLL'eM's e2e SLO)"),
        ("e2e", 1.5 * float(np.quantile(lat, 0.9)), 0.9, "1.5 x default's p90"),
        ("ttft", 2.0 * float(np.quantile(ttft, 0.9)), 0.9, "2 x default's p90"),
    )
    print(f"\n== slo metrics: {device}, {n} Azure conv requests at {args.slo_rps} req/s, pure slo (EMULATED) ==")
    print(f"{'metric':>6} {'threshold s':>11} {'quantile':>8} {'energy vs default':>17} {'met':>7} "
          f"{'EDP vs default':>14}  threshold from")
    rows = []
    ref_edp = float(np.mean([r.edp_js for r in ref.records]))
    for metric, thr, q, how in objectives:
        slo = SLOConfig(metric=metric, threshold_s=round(thr, 3), quantile=q)
        res = simulate(base.replace(policy="slo", slo=slo), trace, pure_slo=True)
        met = res.controller.policy.attainment
        edp = float(np.mean([r.edp_js for r in res.run.records]))
        saved = res.run.energy_j / ref.energy_j - 1
        print(f"{metric:>6} {thr:11.2f} {q:8.2f} {100 * saved:16.1f}% {100 * met:6.1f}% "
              f"{100 * (edp / ref_edp - 1):13.1f}%  {how}")
        rows.append({"metric": metric, "threshold_s": round(thr, 3), "quantile": q, "energy_j": res.run.energy_j,
                     "default_energy_j": ref.energy_j, "attainment": met, "mean_edp_js": edp,
                     "default_mean_edp_js": ref_edp, "threshold_from": how})
    out["slo_metrics"] = {"device": device, "requests": n, "rps": args.slo_rps, "rows": rows}


# ------------------------------------------------------------------------ warm
def section_warm(args: argparse.Namespace, out: dict[str, Any]) -> None:
    from camel_vllm.bench.sim import settled_after

    n = 300 if args.quick else 1000
    per_arm = 20 if args.quick else 40
    seeds = (0,) if args.quick else (0, 1, 2)
    device = DEVICES[0]
    rps = args.warm_rps
    both = load_trace(args.trace, requests=2 * n, target_rps=rps)
    first, second = both.requests[:n], both.requests[n:]
    t0 = second[0].arrival_s
    second = [TraceRequest(r.request_id, r.arrival_s - t0, r.prompt_tokens, r.output_tokens) for r in second]
    cfg = setup_config(device, seed=args.seed).replace(policy="camel-ts", contextual=False)
    arms = arms_of(cfg, EngineConfig())
    typical = [(r.prompt_tokens, r.output_tokens) for r in first]

    # source 1: a profiling run, every arm static for a few requests of segment 1
    log = os.path.join(args.logs, f"{device}-profile.jsonl")
    if os.path.exists(log):
        os.remove(log)
    for a in arms.arms:
        simulate(cfg.replace(policy="static", policy_params={"arm": [a.freq_hz / 1e6, a.max_batch]}),
                 first[:per_arm], log_path=log)
    profile_model = fit_energy_model(list(read_request_log(log)), seed=args.seed)
    priors = priors_from_energy_model(profile_model, arms, typical)
    # source 2: camel's own (exploring, mixed-arm) log of segment 1
    own_log = os.path.join(args.logs, f"{device}-camel-segment1.jsonl")
    if os.path.exists(own_log):
        os.remove(own_log)
    simulate(cfg, first, log_path=own_log)
    own_model = fit_energy_model(list(read_request_log(own_log)), seed=args.seed, shrinkage=20.0)
    own_priors = priors_from_energy_model(own_model, arms, typical)

    statics = {}
    for a in arms.arms:
        r = simulate(cfg.replace(policy="static", policy_params={"arm": [a.freq_hz / 1e6, a.max_batch]}), second).run
        statics[a.label] = float(np.mean([x.edp_js for x in r.records]))
    best = min(statics, key=statics.get)
    labels = [a.label for a in arms.arms]
    rank = sorted(labels, key=statics.get)
    print(f"\n== warm start: {device}, camel (non-contextual), {len(seeds)} seeds, segment 2 = {n} Azure conv "
          f"requests at {rps} req/s (EMULATED) ==")
    print(f"profiling source: {len(arms)} arms x {per_arm} requests of segment 1, held-out R^2 energy "
          f"{profile_model.r2_energy:.2f}, latency {profile_model.r2_runtime:.2f}; lowest prior "
          f"{labels[int(np.argmin(priors))]} (rank {rank.index(labels[int(np.argmin(priors))]) + 1} of {len(arms)})")
    print(f"camel-log source: {own_model.mixed_requests} of {own_model.train_requests + own_model.test_requests} "
          f"requests served by several arms, held-out R^2 energy {own_model.r2_energy:.2f}, latency "
          f"{own_model.r2_runtime:.2f}; lowest prior {labels[int(np.argmin(own_priors))]}")
    print(f"best static arm on segment 2: {best} (mean EDP {statics[best]:.1f} J*s)")
    print(f"{'run':>26} {'mean EDP':>9} {'regret kJ*s':>11} {'vs cold':>8} {'settled after':>13}  final arms")
    rows: dict[str, Any] = {}
    variants = (("cold", None), ("warm profile, strength 2", (priors, 2.0)),
                ("warm profile, strength 5", (priors, 5.0)), ("warm profile, strength 10", (priors, 10.0)),
                ("warm camel-log, strength 5", (own_priors, 5.0)))
    for name, prior in variants:
        per_seed = []
        for seed in seeds:
            res = simulate(cfg.replace(seed=seed), second, prior=prior).run
            edps = [x.edp_js for x in res.records]
            per_seed.append({"seed": seed, "mean_edp_js": float(np.mean(edps)),
                             "regret_js": float(np.sum(edps) - statics[best] * len(edps)),
                             "settled_after_requests": settled_after(res),
                             "final_arm": res.arm_labels[res.decisions[-1][1]]})
        regret = float(np.mean([p["regret_js"] for p in per_seed]))
        rows[name] = {"mean_edp_js": float(np.mean([p["mean_edp_js"] for p in per_seed])),
                      "regret_js": regret, "seeds": per_seed}
        cold = rows["cold"]["regret_js"]
        settled = [p["settled_after_requests"] for p in per_seed]
        print(f"{name:>26} {rows[name]['mean_edp_js']:9.1f} {regret / 1e3:11.1f} "
              f"{100 * (regret / cold - 1):7.1f}% {str(settled):>13}  {', '.join(p['final_arm'] for p in per_seed)}")
    out["warm"] = {"device": device, "requests": n, "rps": rps, "profile_requests_per_arm": per_arm,
                   "best_static": best, "best_static_mean_edp_js": statics[best],
                   "profile_fit": {"r2_energy": profile_model.r2_energy, "r2_latency": profile_model.r2_runtime},
                   "camel_log_fit": {"r2_energy": own_model.r2_energy, "r2_latency": own_model.r2_runtime},
                   "runs": rows}


SECTIONS = {"fit": section_fit, "plan": section_plan, "slo": section_slo, "slo-metrics": section_slo_metrics,
            "warm": section_warm}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/results/seed_systems")
    parser.add_argument("--logs", default=os.path.join(tempfile.gettempdir(), "camel-vllm-seed-systems-logs"),
                        help="where the request logs go (about 10 MB; not results to commit)")
    parser.add_argument("--trace", default=AZURE_CONV)
    parser.add_argument("--sections", default="fit,plan,slo,slo-metrics,warm")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--light-rps", type=float, default=0.3, help="online rate for the fit's online regime")
    parser.add_argument("--slo-rps", type=float, default=1.0, help="arrival rate of the SLO comparison")
    parser.add_argument("--slo-slack", type=float, default=1.5, help="SLO threshold = slack x default's p90 TPOT")
    parser.add_argument("--warm-rps", type=float, default=0.6, help="arrival rate of the warm-start runs")
    parser.add_argument("--quick", action="store_true", help="fewer requests (a smoke run)")
    args = parser.parse_args(argv)
    os.makedirs(os.path.join(args.out, "models"), exist_ok=True)
    os.makedirs(args.logs, exist_ok=True)
    path = os.path.join(args.out, "seed_systems.json")
    out: dict[str, Any] = json.load(open(path)) if os.path.exists(path) else {}
    out.update({"emulated": True, "trace": os.path.basename(args.trace), "model": MODEL, "seed": args.seed})
    for name in args.sections.split(","):
        t0 = time.perf_counter()
        SECTIONS[name](args, out)
        print(f"[{name}: {time.perf_counter() - t0:.0f} s]")
        with open(path, "w", encoding="utf-8") as fh:
            json.dump(out, fh, indent=2, default=lambda v: None if isinstance(v, float) and math.isnan(v) else v)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
