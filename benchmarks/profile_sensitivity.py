"""How much the results depend on a board profile's constants that have no public source.

Every constant a profile tags ``[no source]`` (or ``[fitted, weak source]``) in its YAML comments
is varied, one at a time, to a lower and a higher value (x0.5 and x2; shares in (0, 1] to x0.6 and
x1.4, at most 1), and a small robustness matrix (``camel-vllm bench matrix``: default, camel and the
best static arm in hindsight) is run on each variant; ``--vary FIELD=V1,V2`` adds or overrides a
field's values. The table shows, per variant and cell, camel against default and the best static
arm against default with its arm: if those move little, the results do not hang on the constant.
Every figure is EMULATED.

    python benchmarks/profile_sensitivity.py --device-profile orin-agx-32gb --json out.json \\
        [--vary sm_bytes_per_cycle=150.5,94.1] [--requests 500] [--loads 0.2,0.8]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import sys
import tempfile
import time
from typing import Any

from camel_vllm.bench.matrix import MatrixPlan, run_matrix
from camel_vllm.bench.matrix_report import best_static_label
from camel_vllm.bench.sim import SimSetup, board_serving, parse_policies
from camel_vllm.devices.emulator.profiles import PROFILE_DIR, device_profile_to_dict, load_device_profile

TAGS = ("[no source]", "[fitted, weak source]")
SHARES = {"memory_efficiency", "compute_efficiency", "min_voltage_ratio"}
DEFAULT_TRACES = ("camel_vllm/data/traces/azure_conv_first2000.csv", "camel_vllm/data/traces/azure_code_first2000.csv")


def unsourced_fields(profile_name: str) -> list[str]:
    """The fields a profile file tags as having no public source (or a weak one), in file order."""
    path = profile_name if os.path.isfile(profile_name) else str(PROFILE_DIR / f"{profile_name}.yaml")
    fields: list[str] = []
    pending = False
    for line in open(path, encoding="utf-8"):
        tagged = any(tag in line for tag in TAGS)
        match = re.match(r"^([a-z_]+):", line)
        if match and (tagged or pending):
            if match.group(1) not in fields and match.group(1) not in ("power_noise",):
                fields.append(match.group(1))
            pending = False
        elif line.startswith("#"):
            pending = pending or tagged
        else:
            pending = False
    return fields


def variants(value: float, field: str) -> list[float]:
    if field in SHARES:
        return [round(value * 0.6, 6), round(min(1.0, value * 1.4), 6)]
    return [value * 0.5, value * 2.0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device-profile", required=True)
    parser.add_argument("--trace", action="append", default=None)
    parser.add_argument("--loads", default="0.2,0.8")
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--vary", action="append", default=[], metavar="FIELD=V1,V2")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", required=True)
    args = parser.parse_args(argv)
    base = load_device_profile(args.device_profile)
    plan_values: dict[str, list[float]] = {
        f: variants(float(getattr(base, f)), f) for f in unsourced_fields(args.device_profile)
        if isinstance(getattr(base, f, None), (int, float)) and not isinstance(getattr(base, f), bool)}
    for item in args.vary:
        field, _, values = item.partition("=")
        if not hasattr(base, field):
            print(f"profile_sensitivity: --vary {item}: {field} is not a profile field", file=sys.stderr)
            return 2
        plan_values[field] = [float(v) for v in values.split(",")]
    model, engine = board_serving(args.device_profile)
    loads = tuple(float(x) for x in args.loads.split(","))
    specs = tuple(parse_policies("default,camel,oracle"))
    rows: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        cases = [("as shipped", None, None)] + [(f"{f} = {v:g}", f, v) for f, vs in plan_values.items() for v in vs]
        for label, field, value in cases:
            data = device_profile_to_dict(base)
            if field is not None:
                data[field] = value
            path = os.path.join(tmp, f"{base.name}-{len(rows)}.json")
            with open(path, "w", encoding="utf-8") as fh:
                json.dump(data, fh)
            setup = SimSetup.make(device_profile=path, model_profile=model, engine=engine)
            plan = MatrixPlan(traces=tuple(args.trace or DEFAULT_TRACES), loads=loads, seeds=args.seeds,
                              requests=args.requests, policies=specs, setup=setup)
            cells = run_matrix(plan, workers=args.workers)
            for c in cells:
                rows.append({"variant": label, "field": field, "value": value, "trace": c.trace.rsplit("/", 1)[-1],
                             "load": c.load, "camel_vs_default": c.vs_default.get("camel"),
                             "best_static_vs_default": c.vs_default.get("oracle"), "best_static": best_static_label(c),
                             "verdict": c.verdicts.get("camel")})
            print(f"{label}: done ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    print(f"{base.name} / {model}, {args.requests} requests x {args.seeds} seed(s) per cell (EMULATED energy)")
    print(f"{'variant':<34}{'trace':<26}{'load':>5}{'camel vs default':>19}{'best static vs default':>24}  arm")
    for r in rows:
        def pm(d):
            return "-" if not d else f"{d['diff_pct']:+.1f}±{d['stderr_pct']:.1f}%"
        print(f"{r['variant'][:33]:<34}{r['trace'][:25]:<26}{r['load']:>5.2f}{pm(r['camel_vs_default']):>19}"
              f"{pm(r['best_static_vs_default']):>24}  {r['best_static']}")
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, "w", encoding="utf-8") as fh:
        json.dump({"emulated": True, "device_profile": base.name, "model_profile": model,
                   "requests": args.requests, "seeds": args.seeds, "loads": list(loads),
                   "varied": {f: v for f, v in plan_values.items()}, "rows": rows,
                   "wall_s": time.perf_counter() - t0}, fh, indent=1, default=lambda o: dataclasses.asdict(o))
        fh.write("\n")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
