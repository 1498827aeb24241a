"""Fit per-arm energy and runtime models (Wilkins et al.) to a request log.

Prints e(tin, tout) = a0*tin + a1*tout + a2*tin*tout (J) and r(tin, tout) likewise (s) per
arm, plus a concurrency term a3*m when the log records ``iteration_shares`` (m), with R^2
on a held-out split per arm and per mean_batch band, and optionally writes the model as
JSON for ``camel-vllm plan`` and for warm-starting the bandit. Logs without the field (older
ones) get the plain Wilkins form per arm, and the output says so.
"""

from __future__ import annotations

import argparse
import sys

from camel_vllm.cli import checks
from camel_vllm.offline.energy_model import EnergyModel, WorkloadFit
from camel_vllm.offline.fitting import BAND_EDGES, MIN_BAND_REQUESTS, fit_energy_model
from camel_vllm.offline.log_records import RUNTIME_TARGETS, group_by_profile
from camel_vllm.telemetry.reqlog import read_request_log


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("log", help="request log (JSON lines written by request_log)")
    parser.add_argument("--json", dest="json_out", help="write the fitted model here")
    parser.add_argument("--test-fraction", type=float, default=0.2, help="held-out share (default 0.2)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the train/test split")
    parser.add_argument("--include-rotated", action="store_true", help="also read LOG.1, LOG.2, ...")
    parser.add_argument("--device-profile", help="fit only records of this device profile")
    parser.add_argument("--shrinkage", type=float, default=0.0,
                        help="pull each arm toward the pooled fit with this many pseudo-requests (default 0: "
                             "plain least squares; use ~20 on exploring, mixed-arm logs)")
    parser.add_argument("--no-concurrency", action="store_true",
                        help="fit the plain Wilkins form even when the log records iteration_shares")
    parser.add_argument("--runtime", default="latency_s", choices=RUNTIME_TARGETS,
                        help="what the runtime model predicts: latency_s (default), ttft_s, or decode_s "
                             "(finish - first token: use on saturated/offline logs)")


def run(args: argparse.Namespace) -> int:
    try:
        if not args.include_rotated:
            checks.input_file("LOG", args.log)
        checks.number("--shrinkage", args.shrinkage, minimum=0.0)
        checks.number("--seed", args.seed, minimum=0)
        if args.json_out:
            checks.output_file("--json", args.json_out)
        records = list(read_request_log(args.log, include_rotated=args.include_rotated))
    except UnicodeDecodeError as err:
        print(f"camel-vllm fit-energy-model: {args.log}: not a UTF-8 text file (byte at offset {err.start})",
              file=sys.stderr)
        return 2
    except (OSError, ValueError) as err:
        print(f"camel-vllm fit-energy-model: {err}", file=sys.stderr)
        return 2
    if args.device_profile:
        records = [r for r in records if r.get("device_profile") == args.device_profile]
    groups = group_by_profile(records)
    if len(groups) > 1:
        names = ", ".join(f"{d}/{m}" for d, m in groups)
        print(f"camel-vllm fit-energy-model: {args.log} mixes profiles ({names}); pass --device-profile",
              file=sys.stderr)
        return 2
    try:
        model = fit_energy_model(records, test_fraction=args.test_fraction, seed=args.seed,
                                 runtime_target=args.runtime, shrinkage=args.shrinkage,
                                 concurrency=not args.no_concurrency)
    except ValueError as err:
        print(f"camel-vllm fit-energy-model: {args.log}: {err}", file=sys.stderr)
        return 2
    print(format_model(model))
    if args.json_out:
        model.save(args.json_out)
        print(f"wrote {args.json_out}")
    return 0


def _r2(value: float | None) -> str:
    return "    n/a" if value is None else f"{value:7.4f}"


def _num(value: float | None, width: int = 10) -> str:
    return f"{'-':>{width}}" if value is None else f"{value:{width}.3e}"


def _row(label: str, fit: WorkloadFit) -> str:
    a, b = fit.energy_coef, fit.runtime_coef
    batch = "     -" if fit.typical_batch is None else f"{fit.typical_batch:6.2f}"
    return (f"{label:>12} {fit.train_weight:8.1f} {fit.test_requests:6d} {_r2(fit.r2_energy)} {_r2(fit.r2_runtime)}"
            f" {_r2(fit.r2_energy_tokens_only)} {_r2(fit.r2_runtime_tokens_only)} {batch}"
            f"  {a[0]:10.3e} {a[1]:10.3e} {a[2]:10.3e} {_num(fit.energy_iteration_j)}"
            f"  {b[0]:10.3e} {b[1]:10.3e} {b[2]:10.3e} {_num(fit.runtime_iteration_s)}")


def format_model(model: EnergyModel) -> str:
    """The table ``fit-energy-model`` prints."""
    tag = " (EMULATED energy)" if model.emulated else ""
    if model.concurrency:
        form = ("e = a0*tin + a1*tout + a2*tin*tout + a3*m [J], r likewise with b [s]; m = iteration shares "
                "(logged); a0-a2/b0-b2 shown at the log's concurrency (a + a3*c, m ~ c.[tin, tout, tin*tout])")
    else:
        form = "e(tin,tout) = a0*tin + a1*tout + a2*tin*tout [J];  r(tin,tout) = b0*tin + b1*tout + b2*tin*tout [s]"
    lines = [
        f"energy model: device={model.device} profile={model.device_profile} model={model.model_profile}{tag}",
        f"requests: train {model.train_requests}, held-out {model.test_requests} "
        f"(test fraction {model.test_fraction}, seed {model.seed}); served by several arms: {model.mixed_requests}",
        f"held-out R^2: energy {_r2(model.r2_energy).strip()}, runtime ({model.runtime_target}) "
        f"{_r2(model.r2_runtime).strip()}; concurrency term: {'yes' if model.concurrency else 'no'}",
        *model.notes,
        form,
        ("R2 e/r: held-out, m as logged; tok: from tokens alone at the log's concurrency; batch: median mean_batch"
         if model.concurrency else "R2 e/r: held-out (tokens only; tok repeats them)"),
        f"{'arm':>12} {'train':>8} {'test':>6} {'R2 e':>7} {'R2 r':>7} {'tok e':>7} {'tok r':>7} {'batch':>6}"
        f"  {'a0':>10} {'a1':>10} {'a2':>10} {'a3 J/it':>10}  {'b0':>10} {'b1':>10} {'b2':>10} {'b3 s/it':>10}",
    ]
    for label in sorted(model.arms, key=_arm_sort_key):
        lines.append(_row(label, model.arms[label]))
    lines.append(_row("pooled", model.pooled))
    if model.bands:
        lines.append("held-out R^2 per arm and mean_batch band (fixed edges " + ", ".join(
            f"{e:g}" for e in BAND_EDGES) + f"; n/a below {MIN_BAND_REQUESTS} requests):")
        lines.append(f"{'arm':>12} {'band':>6} {'test':>6} {'R2 e':>7} {'R2 r':>7}")
        for band in sorted(model.bands, key=lambda b: (_arm_sort_key(b["arm"]), b["lo"])):
            lines.append(f"{band['arm']:>12} {band['band']:>6} {band['test_requests']:6d} "
                         f"{_r2(band['r2_energy'])} {_r2(band['r2_runtime'])}")
    return "\n".join(lines)


def _arm_sort_key(label: str) -> tuple[float, float, str]:
    try:
        mhz, batch = label.split("/")
        return (float(mhz) if mhz != "auto" else -1.0, float(batch), label)
    except ValueError:
        return (float("inf"), 0.0, label)
