"""What camel-vllm relies on in vLLM's source, read with ``ast`` (nothing is imported), so a vLLM
release that is not installed, such as an unpacked sdist, can be checked against the adapter.

:func:`extract` summarises the classes and functions of :data:`CLASSES` / :data:`FUNCTIONS` of a
``vllm/`` source folder (bases, methods and their parameter names, decorators, class-level
fields, attributes ``__init__`` sets on ``self``, the keywords ``EngineCore`` builds its scheduler
with, where ``make_arg_parser`` lives) as plain JSON; :func:`problems` lists what camel-vllm needs
that a summary lacks. tests/vllm_plugin/test_vllm_surface.py runs both on the installed vLLM and
on tests/vllm_plugin/data/vllm-0.33.0-surface.json, made from the vllm==0.33.0 sdist with
``python -m camel_vllm.testing.vllm_surface SRC/vllm`` (docs/vllm-integration.md, "Supported vLLM
versions").
"""

from __future__ import annotations

import ast
import json
import sys
from pathlib import Path
from typing import Any, Mapping, Sequence

#: Classes read, and their files under ``vllm/``.
CLASSES: dict[str, str] = {
    "SchedulerInterface": "v1/core/sched/interface.py",
    "Scheduler": "v1/core/sched/scheduler.py",
    "AsyncScheduler": "v1/core/sched/async_scheduler.py",
    "SchedulerOutput": "v1/core/sched/output.py",
    "Request": "v1/request.py",
    "RequestStatus": "v1/request.py",
    "SchedulerConfig": "config/scheduler.py",
    "VllmConfig": "config/vllm.py",
    "EngineArgs": "engine/arg_utils.py",
}

#: Module-level functions read: name -> candidate files under ``vllm/`` (the first that defines it).
FUNCTIONS: dict[str, tuple[str, ...]] = {
    "get_engine_process_shutdown_timeout": ("v1/engine/utils.py",),
    "make_arg_parser": ("entrypoints/common/cli_args.py", "entrypoints/launchers/cli_args.py"),
}

#: The engine core file whose ``self.scheduler = Scheduler(...)`` call gives the keywords the
#: scheduler class is built with.
ENGINE_CORE = "v1/engine/core.py"

#: What the adapter touches on vLLM's objects (scheduler.py, plugin.py): ``self.X`` set in
#: ``__init__``, or a property/method, per class; class-level fields per class.
NEEDED_ATTRS: dict[str, tuple[str, ...]] = {
    "Scheduler": ("vllm_config", "requests", "waiting", "running", "max_num_active_reqs",
                  "has_unfinished_requests"),
    "Request": ("request_id", "arrival_time", "num_prompt_tokens", "num_output_tokens",
                "num_computed_tokens", "status", "is_finished"),
}
NEEDED_FIELDS: dict[str, tuple[str, ...]] = {
    "RequestStatus": ("FINISHED_ABORTED", "FINISHED_ERROR"),
    "SchedulerOutput": ("num_scheduled_tokens", "scheduled_new_reqs"),
    "SchedulerConfig": ("max_num_seqs", "max_num_active_seqs", "max_num_batched_tokens", "async_scheduling",
                        "scheduler_cls", "DEFAULT_MAX_NUM_SEQS"),
    "VllmConfig": ("scheduler_config", "parallel_config", "additional_config"),
    "EngineArgs": ("max_num_seqs", "max_num_active_seqs", "additional_config", "scheduler_cls"),
}


def _params(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> list[str]:
    """Parameter names in order; ``*args``/``**kwargs`` as ``*NAME``/``**NAME``."""
    a = fn.args
    names = [p.arg for p in [*a.posonlyargs, *a.args]]
    if a.vararg:
        names.append("*" + a.vararg.arg)
    names += [p.arg for p in a.kwonlyargs]
    if a.kwarg:
        names.append("**" + a.kwarg.arg)
    return names


def _self_attrs(fn: ast.AST) -> set[str]:
    """Names assigned as ``self.NAME`` (plain or annotated) inside ``fn``."""
    found: set[str] = set()
    for node in ast.walk(fn):
        targets = node.targets if isinstance(node, ast.Assign) else (
            [node.target] if isinstance(node, (ast.AnnAssign, ast.AugAssign)) else [])
        for target in targets:
            for t in ast.walk(target):
                if isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name) and t.value.id == "self":
                    found.add(t.attr)
    return found


def _class_summary(node: ast.ClassDef) -> dict[str, Any]:
    methods: dict[str, Any] = {}
    fields: set[str] = set()
    init_attrs: set[str] = set()
    for item in node.body:
        if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
            if item.name.startswith("_") and item.name != "__init__":
                continue  # private helpers: nothing of camel's relies on them
            decorators = [ast.unparse(d) for d in item.decorator_list]
            methods[item.name] = {"params": _params(item), "decorators": decorators}
            if item.name == "__init__":
                init_attrs = _self_attrs(item)
        elif isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
            fields.add(item.target.id)
        elif isinstance(item, ast.Assign):
            fields.update(t.id for t in item.targets if isinstance(t, ast.Name))
    return {"bases": [ast.unparse(b) for b in node.bases], "methods": methods,
            "fields": sorted(fields), "init_attrs": sorted(init_attrs)}


def _scheduler_call_keywords(tree: ast.Module) -> list[str]:
    """Keywords of the call assigned to ``self.scheduler`` (``EngineCore.__init__``)."""
    for node in ast.walk(tree):
        if isinstance(node, (ast.Assign, ast.AnnAssign)) and isinstance(node.value, ast.Call):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Attribute) and t.attr == "scheduler" for t in targets):
                return sorted(k.arg for k in node.value.keywords if k.arg)
    return []


def _version(root: Path) -> str | None:
    path = root / "_version.py"
    if not path.is_file():
        return None
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__version__"
                                                for t in node.targets):
            value = node.value
            return value.value if isinstance(value, ast.Constant) and isinstance(value.value, str) else None
    return None


def extract(root: Path) -> dict[str, Any]:
    """The summary of the ``vllm/`` source folder ``root`` (JSON-able; a missing file or class
    is simply absent from it)."""
    trees: dict[str, ast.Module] = {}

    def tree(rel: str) -> ast.Module | None:
        if rel not in trees and (root / rel).is_file():
            trees[rel] = ast.parse((root / rel).read_text(encoding="utf-8"))
        return trees.get(rel)

    classes: dict[str, Any] = {}
    for name, rel in CLASSES.items():
        module = tree(rel)
        for node in module.body if module else []:
            if isinstance(node, ast.ClassDef) and node.name == name:
                classes[name] = {"file": rel, **_class_summary(node)}
    functions: dict[str, Any] = {}
    for name, candidates in FUNCTIONS.items():
        for rel in candidates:
            module = tree(rel)
            defs = [n for n in (module.body if module else []) if isinstance(n, ast.FunctionDef) and n.name == name]
            if defs:
                functions[name] = {"file": rel, "params": _params(defs[0])}
                break
    engine_core = tree(ENGINE_CORE)
    return {
        "vllm_version": _version(root),
        "classes": classes,
        "functions": functions,
        "scheduler_built_with": _scheduler_call_keywords(engine_core) if engine_core else [],
    }


def _module_of(rel: str) -> str:
    return "vllm." + rel.removesuffix(".py").replace("/", ".")


def problems(summary: Mapping[str, Any], overrides: Mapping[str, Sequence[str]],
             cli_args_modules: Sequence[str]) -> list[str]:
    """What camel-vllm needs that ``summary`` (from :func:`extract`) lacks; empty if nothing.

    ``overrides``: the adapter's own methods and their parameter names (``*args`` marks one that
    passes anything through); ``cli_args_modules``: where camel looks for ``make_arg_parser``.
    """
    found: list[str] = []
    classes = summary.get("classes", {})
    for name in CLASSES:
        if name not in classes:
            found.append(f"class {name} not found in vllm/{CLASSES[name]}")
    if found:
        return found
    scheduler = classes["Scheduler"]
    methods = scheduler["methods"]
    abstract = [m for m, info in classes["SchedulerInterface"]["methods"].items()
                if "abstractmethod" in info["decorators"]]
    found += [f"SchedulerInterface.{m} is abstract and Scheduler does not define it"
              for m in abstract if m not in methods]
    init = methods.get("__init__", {}).get("params", [])
    found += [f"EngineCore builds the scheduler with {k}=, which Scheduler.__init__ does not take"
              for k in summary.get("scheduler_built_with", []) if k not in init and "**kwargs" not in init]
    if not summary.get("scheduler_built_with"):
        found.append(f"no self.scheduler = ...(...) call found in vllm/{ENGINE_CORE}")
    if "Scheduler" not in classes["AsyncScheduler"]["bases"]:
        found.append("AsyncScheduler does not subclass Scheduler")
    for name, params in overrides.items():
        if name not in methods:
            found.append(f"Scheduler.{name} (overridden by the adapter) does not exist")
        elif not any(p.startswith("*") for p in params) and methods[name]["params"] != list(params):
            found.append(f"Scheduler.{name}{tuple(methods[name]['params'])} != the adapter's {tuple(params)}")
    for cls, attrs in NEEDED_ATTRS.items():
        info = classes[cls]
        have = set(info["init_attrs"]) | set(info["methods"])
        for base in info["bases"]:  # e.g. has_unfinished_requests, defined on SchedulerInterface
            have |= set(classes.get(base, {}).get("methods", {}))
        found += [f"{cls}.{a} is not set in __init__ nor defined" for a in attrs if a not in have]
    for cls, fields in NEEDED_FIELDS.items():
        have = set(classes[cls]["fields"])
        found += [f"{cls}.{f} is not a field" for f in fields if f not in have]
    add_cli_args = classes["EngineArgs"]["methods"].get("add_cli_args")
    if add_cli_args is None or "staticmethod" not in add_cli_args["decorators"]:
        found.append("EngineArgs.add_cli_args is not a staticmethod (the plugin wraps it as one)")
    batch_defaults = classes["EngineArgs"]["methods"].get("get_batch_defaults")
    if batch_defaults is None or batch_defaults["params"] != ["cls", "world_size"]:
        found.append("EngineArgs.get_batch_defaults(cls, world_size) not found")
    functions = summary.get("functions", {})
    timeout = functions.get("get_engine_process_shutdown_timeout")
    if timeout is None or timeout["params"] != ["request_timeout", "process_timeout"]:
        found.append("get_engine_process_shutdown_timeout(request_timeout, process_timeout) not found")
    parser = functions.get("make_arg_parser")
    if parser is None:
        found.append("make_arg_parser not found in any cli_args module")
    elif _module_of(parser["file"]) not in cli_args_modules:
        found.append(f"make_arg_parser is in {_module_of(parser['file'])}, where camel does not look")
    return found


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m camel_vllm.testing.vllm_surface VLLM_DIR``: print the summary as JSON."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1 or not (Path(args[0]) / "v1").is_dir():
        print("usage: python -m camel_vllm.testing.vllm_surface VLLM_DIR (the vllm/ folder of a source tree)",
              file=sys.stderr)
        return 2
    print(json.dumps(extract(Path(args[0])), indent=1, sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
