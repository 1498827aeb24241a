"""Print a ``bench sim`` / ``bench replay`` result JSON as a markdown table (for the README).

    python benchmarks/markdown_table.py benchmarks/results/sim/azure_conv.json

Columns: requests completed, energy (J), mean / p99 latency (s), mean TTFT (s), mean EDP
(J*s) and its change against ``default`` (with its paired batch-means standard error where
the run recorded one, ``details[NAME]["edp_vs_default"]``), total EDP over the run (J*s, from ``details`` when
present), arm switches. The header says whether the energy figures are emulated.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Sequence


def table(result: dict[str, Any]) -> str:
    policies: dict[str, dict[str, Any]] = result["policies"]
    details: dict[str, dict[str, Any]] = result.get("details", {})
    base = policies.get("default", {}).get("mean_edp_js")
    label = "emulated" if result.get("emulated") else "measured"
    lines = [
        f"{result.get('trace')}, {result.get('requests')} requests, {result.get('device')} / "
        f"{result.get('model')} (energy {label})",
        "",
        "| policy | done | energy J | mean lat s | p99 lat s | TTFT s | mean EDP J*s | vs default "
        "| total EDP J*s | switches |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, p in policies.items():
        edp = p["mean_edp_js"]
        change = "" if not base or name == "default" else f"{100.0 * (edp / base - 1.0):+.1f}%"
        paired = details.get(name, {}).get("edp_vs_default")
        if change and paired:  # the paired change and its error, on the requests both completed
            change = f"{paired['diff_pct']:+.1f} ± {paired['stderr_pct']:.1f}%"
        total = details.get(name, {}).get("total_edp_js")
        oracle_arm = details.get(name, {}).get("arm") if name == "oracle" else None
        shown = f"oracle ({oracle_arm})" if oracle_arm else name
        lines.append(
            f"| {shown} | {p['requests_completed']}/{p['requests_total']} | {p['energy_j']:,.0f} | "
            f"{p['mean_latency_s']:.2f} | {p['p99_latency_s']:.1f} | {p['mean_ttft_s']:.2f} | {edp:.1f} | "
            f"{change} | {'' if total is None else f'{total:,.0f}'} | {p['arm_switches']:,} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="+", help="result JSON files")
    args = parser.parse_args(argv)
    for path in args.results:
        try:
            with open(path, encoding="utf-8") as fh:
                result = json.load(fh)
            print(table(result) + "\n")
        except (OSError, ValueError, KeyError) as err:
            print(f"markdown_table: {path}: cannot read a bench result ({err!r})", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
