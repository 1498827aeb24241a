"""Set every published measurement beside the emulator's prediction (the fidelity table).

For each device profile (every shipped one by default, or ``--device-profile NAME|FILE``), the
points of ``camel_vllm/data/measurements/published.yaml`` (or ``--measurements FILE``) that apply
to it: published value or ratio to the top clock, the emulator's for the same work and clock,
their ratio, and whether it is within 20 %. Fitted points are marked. Prints EMULATED figures.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from camel_vllm.cli import checks
from camel_vllm.core.config import ConfigError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device-profile", action="append", default=None, metavar="NAME|FILE",
                        help="device profile (repeat for several; default: every shipped device profile)")
    parser.add_argument("--board-class", default=None,
                        help="which published series apply: 'orin' (clocks as fractions of f_max) or a profile "
                             "name (default: 'orin' for a profile whose name says orin, else its own name)")
    parser.add_argument("--model-profile", default=None, metavar="NAME|FILE",
                        help="the model standing in for a series that names none (default: the board's serving model)")
    parser.add_argument("--measurements", default=None, metavar="FILE", help="a measurements file in the same format")
    parser.add_argument("--markdown", action="store_true", help="print markdown tables (as in docs/devices.md)")
    parser.add_argument("--failed-only", action="store_true", help="list only the points that do not hold")
    parser.add_argument("--json", default=None, metavar="PATH", help="also write the rows as JSON")


def run(args: argparse.Namespace) -> int:
    from camel_vllm.devices.emulator.fidelity import TOLERANCE, fidelity_rows, format_rows, summarize
    from camel_vllm.devices.emulator.measurements import load_measurements
    from camel_vllm.devices.emulator.profiles import available_profiles, load_device_profile, load_model_profile

    try:
        if args.json:
            checks.output_file("json", args.json)
        if args.measurements:
            checks.input_file("measurements", args.measurements)
        data = load_measurements(args.measurements) if args.measurements else load_measurements()
        if args.model_profile:
            load_model_profile(args.model_profile)
        names = args.device_profile or available_profiles("device")
        profiles = [load_device_profile(n) for n in names]
    except ConfigError as err:
        print(f"camel-vllm fidelity: {err}", file=sys.stderr)
        return 2
    out = {}
    for profile in profiles:
        rows = fidelity_rows(profile, measurements=data, board_class=args.board_class,
                             default_model=args.model_profile)
        counts = summarize(rows)
        confounded = (f"; {counts['confounded_hold']} of {counts['confounded']} at power-mode points that change "
                      "more than the GPU clock" if counts["confounded"] else "")
        print(f"{profile.name}: {counts['hold']} of {counts['compared']} compared points within "
              f"{TOLERANCE:.0%} of the published figure{confounded}; {counts['fitted']} points fitted, "
              f"{counts['not_comparable']} not comparable (EMULATED predictions)")
        shown = [r for r in rows if r.holds is False] if args.failed_only else rows
        if shown:
            print(format_rows(shown, markdown=args.markdown))
        print()
        out[profile.name] = {"summary": counts, "rows": [{**dataclasses.asdict(r), "ratio": r.ratio, "holds": r.holds}
                                                         for r in rows]}
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump({"emulated": True, "tolerance": TOLERANCE, "profiles": out}, fh, indent=1)
            fh.write("\n")
        print(f"wrote {args.json}")
    return 0
