"""``camel-vllm``: the command line. Each subcommand lives in its own module.

A module listed in :data:`COMMANDS` defines ``add_arguments(parser)`` and ``run(args) -> int``
and a module docstring whose first line is the subcommand's help. Modules are imported only
when their command runs, so ``camel-vllm probe`` never imports vLLM or torch.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
from typing import Sequence

#: (group, command) -> module. A group of ``None`` is a top-level command.
#: Commands whose arguments all go to vLLM untouched (vLLM parses them, ``--help`` included).
PASSTHROUGH = ("serve", "vllm")
COMMANDS: dict[tuple[str | None, str], str] = {
    (None, "serve"): "camel_vllm.cli.serve",
    (None, "vllm"): "camel_vllm.cli.vllm_passthrough",
    (None, "make-tiny-model"): "camel_vllm.cli.tiny_model",
    (None, "probe"): "camel_vllm.cli.probe",
    (None, "fit-energy-model"): "camel_vllm.cli.fit_energy_model",
    (None, "plan"): "camel_vllm.cli.plan",
    (None, "fidelity"): "camel_vllm.cli.fidelity",
    ("bench", "sim"): "camel_vllm.cli.bench_sim",
    ("bench", "matrix"): "camel_vllm.cli.bench_matrix",
    ("bench", "bandit"): "camel_vllm.cli.bench_bandit",
    ("bench", "replay"): "camel_vllm.cli.bench_replay",
    ("trace", "to-vllm"): "camel_vllm.cli.trace_to_vllm",
}

GROUP_HELP = {
    "bench": "benchmarks: simulate, replay against a server, or compare bandits",
    "trace": "request-trace utilities",
}


def _first_line(module_name: str) -> str:
    spec = importlib.util.find_spec(module_name)
    if spec is None or spec.origin is None:
        return ""
    import ast

    with open(spec.origin, encoding="utf-8") as fh:
        doc = ast.get_docstring(ast.parse(fh.read())) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


def build_parser(argv: Sequence[str]) -> argparse.ArgumentParser:
    """Build the parser; only the module of the command being run is imported."""
    parser = argparse.ArgumentParser(prog="camel-vllm", description="Energy-aware scheduling for vLLM.")
    from camel_vllm import __version__

    parser.add_argument("--version", action="version", version=f"camel-vllm {__version__}")
    top = parser.add_subparsers(dest="command", metavar="COMMAND")
    top.required = True
    groups: dict[str, argparse._SubParsersAction] = {}
    wanted = [a for a in argv if not a.startswith("-")][:2]
    for (group, name), module_name in COMMANDS.items():
        if group is None:
            sub = top.add_parser(name, help=_first_line(module_name), add_help=name not in PASSTHROUGH)
        else:
            if group not in groups:
                gp = top.add_parser(group, help=GROUP_HELP.get(group, ""))
                groups[group] = gp.add_subparsers(dest="subcommand", metavar="SUBCOMMAND")
                groups[group].required = True
            sub = groups[group].add_parser(name, help=_first_line(module_name))
        sub.set_defaults(_module=module_name)
        chosen = wanted[:1] == [name] if group is None else wanted == [group, name]
        if chosen:
            importlib.import_module(module_name).add_arguments(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] and argv[0] in PASSTHROUGH:  # vLLM parses its own flags: hand everything over untouched
        return importlib.import_module(COMMANDS[(None, argv[0])]).main(argv[1:])
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    module = importlib.import_module(args._module)
    return int(module.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
