"""The import layers of ``camel_vllm/`` (README: "Imports run one way").

Every module under ``camel_vllm/`` is parsed (nothing is imported) and each of its imports,
at module level or inside a function or class (``if TYPE_CHECKING:`` ones too), absolute or
relative, that names a ``camel_vllm.<folder>`` module is checked: a folder may import its own
modules and those of folders in an earlier layer, never a folder of its own layer or a later
one. The top-level modules (``__init__.py``: the vLLM plugin entry point and the lazy
``CamelScheduler``; ``__main__.py``: ``python -m camel_vllm``) sit above the layers and import
what they need; a folder that imports one of them counts as importing the latest folder that
module imports (``camel_vllm/__init__.py`` reaches ``vllm_plugin/``).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Iterator, Mapping

REPO = Path(__file__).resolve().parents[1]
PACKAGE = "camel_vllm"

#: Earliest first; folders on one line share a layer (they may not import each other).
LAYERS: tuple[tuple[str, ...], ...] = (
    ("core",),
    ("devices", "offline", "traces"),
    ("policies",),
    ("control",),
    ("telemetry",),
    ("wiring",),
    ("sim",),
    ("bench", "vllm_plugin"),
    ("testing",),
    ("cli",),
)
LAYER_OF = {folder: index for index, group in enumerate(LAYERS) for folder in group}


def package_sources(root: Path = REPO) -> dict[str, str]:
    """``camel_vllm/...py`` path (relative to ``root``, with /) -> source, every module of the package."""
    return {path.relative_to(root).as_posix(): path.read_text(encoding="utf-8")
            for path in sorted((root / PACKAGE).rglob("*.py"))}


def _module_parts(path: str) -> tuple[list[str], list[str]]:
    """(the module's dotted name, its package) as lists of names, from its path."""
    parts = path[: -len(".py")].split("/")
    if parts[-1] == "__init__":
        parts.pop()
        return parts, parts
    return parts, parts[:-1]


def imports_of(path: str, source: str) -> Iterator[tuple[int, str]]:
    """(line, absolute module name) for each import in ``source`` (the module at ``path``).

    ``from camel_vllm import x`` gives ``camel_vllm.x`` (a folder, a top-level module or an
    attribute of the package); a relative import is resolved against the module's package."""
    _, package = _module_parts(path)
    for node in ast.walk(ast.parse(source, filename=path)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                if node.level > len(package):  # above the top package: Python refuses it
                    continue
                base = package[: len(package) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            if module == PACKAGE or not node.module:
                for alias in node.names:
                    yield node.lineno, f"{module}.{alias.name}"
            else:
                yield node.lineno, module


def _top_module(name: str, sources: Mapping[str, str]) -> str | None:
    """The top-level module ``name`` (``camel_vllm.<x>``, not a folder) stands for, by its path:
    ``camel_vllm/<x>.py``, else the package's ``__init__.py`` (``x`` is one of its attributes)."""
    parts = name.split(".")
    if len(parts) > 1 and f"{PACKAGE}/{parts[1]}.py" in sources:
        return f"{PACKAGE}/{parts[1]}.py"
    return f"{PACKAGE}/__init__.py" if f"{PACKAGE}/__init__.py" in sources else None


def _folder(name: str) -> str | None:
    parts = name.split(".")
    if parts[0] != PACKAGE or len(parts) < 2 or parts[1] not in LAYER_OF:
        return None
    return parts[1]


def layer_violations(sources: Mapping[str, str]) -> list[str]:
    """One line per import of a folder of the same or a later layer:
    ``importing module:line imports imported module (why)``."""
    def reach(top_path: str) -> tuple[int, str] | None:
        """The latest (layer, folder) the top-level module at ``top_path`` imports."""
        folders = {f for _, name in imports_of(top_path, sources[top_path]) if (f := _folder(name))}
        return max(((LAYER_OF[f], f) for f in folders), default=None)

    found: list[str] = []
    for path, source in sorted(sources.items()):
        module, _ = _module_parts(path)
        if len(module) < 2 or module[1] not in LAYER_OF:
            continue  # a top-level module: above the layers
        own = module[1]
        for line, name in imports_of(path, source):
            if name.split(".")[0] != PACKAGE:
                continue
            target = _folder(name)
            if target is not None:
                layer, folder, via = LAYER_OF[target], target, target
            else:
                top_path = _top_module(name, sources)
                reached = reach(top_path) if top_path is not None else None
                if reached is None:
                    continue
                (layer, folder), via = reached, f"{reached[1]} through {top_path}"
            if folder != own and layer >= LAYER_OF[own]:
                relation = "the same layer as" if layer == LAYER_OF[own] else "a later layer than"
                found.append(f"{'.'.join(module)}:{line} imports {name} ({via} is in {relation} {own})")
    return found


# ------------------------------------------------------------------------ the package
def test_no_folder_imports_its_own_or_a_later_layer() -> None:
    violations = layer_violations(package_sources())
    assert not violations, "imports against the layers (README: Imports run one way):\n" + "\n".join(violations)


def test_every_folder_has_a_layer() -> None:
    folders = {p.parent.relative_to(REPO / PACKAGE).parts[0]
               for p in (REPO / PACKAGE).rglob("*.py") if p.parent != REPO / PACKAGE}
    assert folders == set(LAYER_OF), "folders of camel_vllm/ without a layer here, or layers without a folder"


def test_layers_are_the_readme_layers() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    match = re.search(r"Imports run one way:.*?Layers:(.*?)\n\n", readme, re.S)
    assert match, "README.md no longer states the layers (Imports run one way: ... Layers: ...)"
    stated = tuple(tuple(re.findall(r"`(\w+)/`", group)) for group in match.group(1).split(";"))
    assert stated == LAYERS


# ------------------------------------------------------------------------ the checker
def test_the_checker_finds_upward_and_same_layer_imports() -> None:
    sources = {
        "camel_vllm/__init__.py": "def register():\n    from camel_vllm.vllm_plugin.plugin import register\n",
        "camel_vllm/__main__.py": "from camel_vllm.cli import main\n",
        "camel_vllm/core/__init__.py": "",
        "camel_vllm/core/a.py": (
            "import os\n"
            "from camel_vllm.core import b\n"
            "def f():\n"
            "    from camel_vllm.sim import engine\n"  # function level, absolute: later layer
        ),
        "camel_vllm/core/b.py": "from ..policies.base import Policy\n",  # relative: later layer
        "camel_vllm/devices/c.py": "import camel_vllm.traces.azure\n",  # the same layer
        "camel_vllm/policies/d.py": "from camel_vllm import __version__\n",  # the package reaches vllm_plugin
        "camel_vllm/policies/e.py": "from . import d\nfrom .. import core\nfrom ..devices import c\n",
        "camel_vllm/sim/f.py": (
            "from typing import TYPE_CHECKING\n"
            "from camel_vllm.core.a import f\n"
            "if TYPE_CHECKING:\n"
            "    from camel_vllm.cli import main\n"  # type-only imports count too
        ),
        "camel_vllm/cli/g.py": "from camel_vllm import __version__, bench\nimport camel_vllm.__main__\n",
    }
    assert layer_violations(sources) == [
        "camel_vllm.core.a:4 imports camel_vllm.sim (sim is in a later layer than core)",
        "camel_vllm.core.b:1 imports camel_vllm.policies.base (policies is in a later layer than core)",
        "camel_vllm.devices.c:1 imports camel_vllm.traces.azure (traces is in the same layer as devices)",
        "camel_vllm.policies.d:1 imports camel_vllm.__version__ "
        "(vllm_plugin through camel_vllm/__init__.py is in a later layer than policies)",
        "camel_vllm.sim.f:4 imports camel_vllm.cli (cli is in a later layer than sim)",
    ]
