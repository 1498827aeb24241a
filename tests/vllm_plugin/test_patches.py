"""patches/: the first-class ``--scheduler NAME`` option for vLLM.

The installed vLLM must be in the supported range (``camel_vllm.vllm_plugin.compat``), and
the patch for its version must apply to its source (``patch --dry-run``); applied to a copy it
must give valid Python whose registry resolves names; the 0.32.0 and 0.33.0 patches must make
the same change (only line offsets differ: vLLM 0.33.0's arg_utils.py moved).
"""

from __future__ import annotations

import importlib.util
import py_compile
import shutil
import subprocess
from pathlib import Path

import pytest

import vllm

REPO = Path(__file__).resolve().parents[2]
PATCHES = REPO / "patches"
SITE = Path(vllm.__file__).resolve().parent.parent  # the folder holding vllm/
PATCH_032 = PATCHES / "vllm-0.32.0-scheduler-option.patch"
PATCH_033 = PATCHES / "vllm-0.33.0-scheduler-option.patch"
TOUCHED = ("vllm/engine/arg_utils.py",)


def _installed_patch() -> Path:
    """The patch for the installed vLLM, which must be in the supported range."""
    from camel_vllm.vllm_plugin.compat import SUPPORTED_VLLM, base_version, is_supported
    from camel_vllm.vllm_plugin.serve import vllm_version

    version = vllm_version()
    assert version is not None and is_supported(version), f"vLLM {version} is outside vllm{SUPPORTED_VLLM}"
    patch_file = PATCHES / f"vllm-{base_version(version)}-scheduler-option.patch"
    assert patch_file.is_file(), f"patches/ has no patch for the installed vLLM {version}"
    return patch_file


def _patch_bin() -> str:
    found = shutil.which("patch")
    assert found, "GNU patch is needed (apt-get install patch)"
    return found


def _apply(patch_file: Path, root: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [_patch_bin(), "-p1", "--forward", "--batch", *extra, "-i", str(patch_file)],
        cwd=root, capture_output=True, text=True,
    )


def test_every_patch_is_for_a_supported_vllm():
    from camel_vllm.vllm_plugin.compat import is_supported

    versions = [p.name.split("-")[1] for p in PATCHES.glob("vllm-*-scheduler-option.patch")]
    assert sorted(versions) == ["0.32.0", "0.33.0"] and all(is_supported(v) for v in versions)


def test_patch_applies_to_installed_vllm():
    result = _apply(_installed_patch(), SITE, "--dry-run")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "FAILED" not in result.stdout and "offset" not in result.stdout


def test_patched_copy_compiles_and_resolves(tmp_path):
    for rel in TOUCHED:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(SITE / rel, tmp_path / rel)
    result = _apply(_installed_patch(), tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    arg_utils = tmp_path / "vllm/engine/arg_utils.py"
    registry = tmp_path / "vllm/v1/core/sched/registry.py"
    py_compile.compile(str(arg_utils), doraise=True)
    py_compile.compile(str(registry), doraise=True)
    text = arg_utils.read_text()
    assert '"--scheduler",' in text and "scheduler_cls=self._resolve_scheduler_cls()," in text

    spec = importlib.util.spec_from_file_location("patched_registry", registry)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.resolve_scheduler("default") is None
    module.register_scheduler("camel", "camel_vllm.CamelScheduler")
    module.register_scheduler("camel", "camel_vllm.CamelScheduler")  # idempotent
    assert module.resolve_scheduler("camel") == "camel_vllm.CamelScheduler"
    assert module.resolve_scheduler("pkg.mod.Cls") == "pkg.mod.Cls"
    with pytest.raises(ValueError, match="already registered"):
        module.register_scheduler("camel", "other.Scheduler")
    with pytest.raises(ValueError, match="unknown scheduler"):
        module.resolve_scheduler("fastest")


def _added_lines(patch_file: Path) -> list[str]:
    return [
        line for line in patch_file.read_text().splitlines()
        if line.startswith("+") and not line.startswith("+++")
    ]


def test_033_patch_makes_the_same_change():
    assert _added_lines(PATCH_033) == _added_lines(PATCH_032)
    hunks_033 = [line for line in PATCH_033.read_text().splitlines() if line.startswith("@@")]
    hunks_032 = [line for line in PATCH_032.read_text().splitlines() if line.startswith("@@")]
    assert len(hunks_033) == len(hunks_032) and hunks_033 != hunks_032


def test_033_patch_applies_to_the_033_source(vllm_033_src: Path) -> None:
    root = vllm_033_src.resolve().parent
    result = _apply(PATCH_033, root, "--dry-run")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "FAILED" not in result.stdout and "offset" not in result.stdout
