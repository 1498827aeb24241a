"""The ``vllm.general_plugins`` entry point: adds ``--scheduler NAME`` to vLLM's engine flags.

vLLM runs general plugins in every process (API server, engine core, workers) before it
builds its argument parser (``AsyncEngineArgs.add_cli_args`` calls ``load_general_plugins``
first). :func:`register` wraps ``EngineArgs.add_cli_args`` so the parser it builds also has

- ``--scheduler NAME``: an exact option (today ``--scheduler`` alone is an ambiguous prefix
  of ``--scheduler-cls`` and ``--scheduler-reserve-full-isl``) that writes ``scheduler_cls``
  through :mod:`camel_vllm.vllm_plugin.registry` (``camel``, ``default``, or a class path);
- a check, right after parsing, of the ``camel`` section of ``--additional-config`` when the
  chosen scheduler is camel-vllm's: a bad value (including a frequency the device lacks,
  read from the device, and a batch size above an explicit ``--max-num-active-seqs`` or
  ``--max-num-seqs``) prints one line naming key and value and exits with status 2 before
  any engine starts; without either, a batch size above the default vLLM will pick is caught here too
  (:func:`default_max_num_seqs`: the OpenAI server's, ``vllm serve``'s, default; the largest
  default of any usage context for other entry points). The engine core checks again against
  the value vLLM resolved (the ``scheduler_cls`` route from Python's ``LLM`` class, which parses
  nothing).

When camel-vllm's scheduler is chosen, the API server also gives the engine core a window
to exit on SIGTERM (:func:`give_engine_core_shutdown_grace`): vLLM 0.32 otherwise kills it
at once with the default ``--shutdown-timeout 0`` and the device stays as the controller
left it. On a vLLM carrying ``patches/`` the names are registered in its registry instead.

``EngineArgs.add_cli_args`` and ``get_engine_process_shutdown_timeout`` are private vLLM
code; tests/vllm_plugin/test_vllm_plugin.py pins both wraps.
"""

from __future__ import annotations

import argparse
import functools
import logging
import sys
from dataclasses import dataclass
from typing import Any, Callable

from camel_vllm.core.config import CamelConfig, ConfigError
from camel_vllm.vllm_plugin.registry import SCHEDULERS, UnknownSchedulerError, is_camel, resolve_scheduler

logger = logging.getLogger("vllm.camel")

#: Marks the wrapped ``add_cli_args`` so that :func:`register` runs once per process.
_WRAPPED_MARK = "_camel_vllm_wrapped"

#: Exit status for a bad flag or config (argparse uses 2 for usage errors).
CONFIG_ERROR_EXIT = 2


class SchedulerAction(argparse.Action):
    """``--scheduler NAME``: resolve the name and store it in ``scheduler_cls``."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        try:
            namespace.scheduler_cls = resolve_scheduler(str(values))
        except UnknownSchedulerError as err:
            fail(str(err))


def fail(line: str) -> None:
    """Print one line to stderr and exit with :data:`CONFIG_ERROR_EXIT`."""
    print(line, file=sys.stderr, flush=True)
    raise SystemExit(CONFIG_ERROR_EXIT)


def add_scheduler_option(parser: argparse.ArgumentParser) -> None:
    """Add ``--scheduler`` next to vLLM's ``--scheduler-cls`` (idempotent per parser)."""
    if any("--scheduler" in action.option_strings for action in parser._actions):
        return
    parser.add_argument(
        "--scheduler",
        action=SchedulerAction,
        metavar="NAME",
        help="Scheduler by name: 'camel' (camel-vllm's energy-aware scheduler), 'default' "
        "(vLLM's own), or a dotted class path. Sets --scheduler-cls. [camel-vllm]",
    )


def check_camel_args(args: argparse.Namespace) -> None:
    """Validate the camel config in parsed engine args; exit with one line if it is bad."""
    if not is_camel(_chosen_scheduler(args)):
        return
    try:
        config = CamelConfig.from_additional_config(_additional_config(getattr(args, "additional_config", None)))
        max_num_seqs = getattr(args, "max_num_seqs", None)
        max_num_active_seqs = getattr(args, "max_num_active_seqs", None)
        if max_num_seqs is None and max_num_active_seqs is None and config.batch_sizes != "auto":
            check_against_vllm_default(config, default_max_num_seqs(args))
        validate_for_engine(config, max_num_seqs, max_num_active_seqs)
        check_metrics_endpoint(config, int(getattr(args, "data_parallel_size", 1) or 1), getattr(args, "port", None))
    except ConfigError as err:
        fail(str(err))
    give_engine_core_shutdown_grace()


#: Seconds vLLM's process manager waits, after SIGTERM, for the engine core to exit before
#: it kills it, when ``--shutdown-timeout`` is 0 (the default). The engine core exits as
#: soon as its teardown is done (restoring the device, saving learned state), so this is
#: an upper bound, not a delay. vLLM gives ROCm 15 s for the same reason
#: (``ROCM_ENGINE_PROCESS_SHUTDOWN_TIMEOUT_S``, vllm/v1/engine/utils.py); 0.33 adds
#: ``VLLM_WORKER_SHUTDOWN_TIMEOUT_SECONDS``, which is respected when set.
ENGINE_SHUTDOWN_GRACE_S = 10.0


def give_engine_core_shutdown_grace(grace_s: float = ENGINE_SHUTDOWN_GRACE_S) -> bool:
    """Make this (API server) process give the engine core ``grace_s`` to exit on SIGTERM.

    With ``--shutdown-timeout 0`` vLLM 0.32 sends SIGTERM and SIGKILL back to back, so the
    engine core never reaches ``Scheduler.shutdown()`` and the GPU clock stays pinned.
    Requests are still aborted at once (abort mode is kept); only the kill waits.
    Wraps ``vllm.v1.engine.utils.get_engine_process_shutdown_timeout`` (private: tested by
    tests/vllm_plugin/test_vllm_plugin.py and end to end by tests/vllm_plugin/test_vllm_sigterm.py). Idempotent.
    """
    try:
        import vllm.v1.engine.utils as engine_utils
    except ImportError:  # pragma: no cover - a vLLM without it
        return False
    original = getattr(engine_utils, "get_engine_process_shutdown_timeout", None)
    if original is None or getattr(original, _WRAPPED_MARK, False):
        return False

    @functools.wraps(original)
    def get_engine_process_shutdown_timeout(request_timeout, process_timeout):
        timeout = original(request_timeout, process_timeout)
        if request_timeout == 0 and timeout == 0:
            return grace_s
        return timeout

    setattr(get_engine_process_shutdown_timeout, _WRAPPED_MARK, True)
    engine_utils.get_engine_process_shutdown_timeout = get_engine_process_shutdown_timeout
    return True


def _chosen_scheduler(args: argparse.Namespace) -> Any:
    """``scheduler_cls``, or on a vLLM with the patch of ``patches/``, ``--scheduler``'s value."""
    chosen = getattr(args, "scheduler_cls", None)
    name = getattr(args, "scheduler", None)
    if chosen is None and isinstance(name, str):
        try:
            chosen = resolve_scheduler(name)
        except UnknownSchedulerError:
            return None  # vLLM's own registry reports it
    return chosen


def _additional_config(value: Any) -> Any:
    if isinstance(value, str):  # parsed lazily by some vLLM versions
        import json

        try:
            return json.loads(value)
        except ValueError as err:
            raise ConfigError("--additional-config", value, "not valid JSON") from err
    return value or {}


#: Frontend flags only the OpenAI server's parser has (``make_arg_parser`` in
#: vllm/entrypoints/launchers/cli_args.py in 0.32, entrypoints/common/cli_args.py in 0.33; used by
#: ``vllm serve`` and the api_server module):
#: args that carry it are resolved with ``UsageContext.OPENAI_API_SERVER``.
OPENAI_SERVER_ONLY_ARG = "api_server_count"


@dataclass(frozen=True)
class DefaultMaxNumSeqs:
    """An upper bound on the ``--max-num-seqs`` vLLM will pick, as known while parsing.

    ``openai_server``: the args are the OpenAI server's, so ``value`` is that usage context's
    default; otherwise it is the largest default any usage context could get. vLLM may still
    lower it (to ``--max-num-batched-tokens`` when that is smaller, or for a model that needs
    fewer sequences); the engine core checks the value in force.
    """

    value: int
    openai_server: bool

    def describe(self) -> str:
        return f"at most {self.value} for vllm serve here" if self.openai_server else f"at most {self.value} here"


def default_max_num_seqs(args: argparse.Namespace) -> DefaultMaxNumSeqs | None:
    """The ``--max-num-seqs`` vLLM will pick when none is given; None if unknown.

    vLLM resolves it after parsing (``EngineArgs._set_default_max_num_seqs_and_batched_tokens_args``)
    from ``EngineArgs.get_batch_defaults``: per usage context and device memory (on CPU 128 for
    ``vllm serve``, 256 for the ``LLM`` class; 256 or 1024 on GPUs), times 2 in ``throughput``
    performance mode, ``SchedulerConfig.DEFAULT_MAX_NUM_SEQS`` for a context it does not list.
    Args from the OpenAI server's parser (:data:`OPENAI_SERVER_ONLY_ARG`) are resolved with
    ``UsageContext.OPENAI_API_SERVER``, so the bound is that context's default; for other parsers it is the
    largest over all contexts. Any failure (another vLLM's internals) gives None: no check here.
    """
    try:
        from vllm.config import SchedulerConfig
        from vllm.engine.arg_utils import EngineArgs
        from vllm.usage.usage_lib import UsageContext

        world_size = int(getattr(args, "pipeline_parallel_size", 1) or 1) * int(
            getattr(args, "tensor_parallel_size", 1) or 1
        )
        _, by_context = EngineArgs.get_batch_defaults(world_size)
        fallback = int(SchedulerConfig.DEFAULT_MAX_NUM_SEQS)
        if hasattr(args, OPENAI_SERVER_ONLY_ARG):
            default = DefaultMaxNumSeqs(int(by_context.get(UsageContext.OPENAI_API_SERVER, fallback)),
                                        openai_server=True)
        else:
            default = DefaultMaxNumSeqs(max([int(v) for v in by_context.values()] + [fallback]), openai_server=False)
    except Exception:  # noqa: BLE001 - a guess that fails must not stop vLLM; the engine core checks
        logger.debug("camel: vLLM's default --max-num-seqs unknown at parse time", exc_info=True)
        return None
    if str(getattr(args, "performance_mode", "")) == "throughput":
        default = DefaultMaxNumSeqs(default.value * 2, default.openai_server)
    return default


def check_against_vllm_default(config: CamelConfig, default: DefaultMaxNumSeqs | None) -> None:
    """Explicit batch sizes (not ``auto``) above the default vLLM will pick: one line now, not
    an engine failure."""
    if default is None:
        return
    too_large = [int(b) for b in config.batch_sizes if int(b) > default.value]
    if too_large:
        raise ConfigError(
            "batch_sizes", list(config.batch_sizes),
            f"{too_large[0]} is above vLLM's default --max-num-seqs ({default.describe()}); "
            "pass a larger --max-num-seqs",
        )


def validate_for_engine(config: CamelConfig, max_num_seqs: int | None,
                        max_num_active_seqs: int | None = None) -> None:
    """Every check possible before the engine starts. Raises :class:`ConfigError`.

    Batch sizes against vLLM's admission cap when it was given: ``max_num_active_seqs``
    (``--max-num-active-seqs``, which vLLM keeps at most ``--max-num-seqs``), else
    ``max_num_seqs`` (neither: vLLM picks it later and the engine core checks); frequencies
    against the device, opened here only to read what it offers and closed again (nothing is
    written); the policy, built once over those arms and dropped (``policy: slo`` without an
    ``slo`` section, ``policy: oracle``, every ``policy_params`` value). A static arm's batch
    cap is checked only when either flag was given or the batch sizes are listed (``auto`` caps
    end at the value vLLM resolves); its frequency always.
    """
    from camel_vllm.core.arms import ArmSet
    from camel_vllm.control.context import ContextModel
    from camel_vllm.devices.base import DeviceError
    from camel_vllm.devices.registry import make_device
    from camel_vllm.policies.registry import make_policy, prefill_clocks_hz
    from camel_vllm.wiring.build import EngineLimits, resolve_batch_sizes, resolve_frequencies_hz

    batch_sizes: list[int] | None = None
    if max_num_seqs is not None or max_num_active_seqs is not None:
        # Only --max-num-active-seqs given: it is the cap (vLLM refuses one above --max-num-seqs).
        seqs = max_num_seqs if max_num_seqs is not None else max_num_active_seqs
        assert seqs is not None  # one of the two is set (the condition above)
        active = None if max_num_active_seqs is None else int(max_num_active_seqs)
        batch_sizes = resolve_batch_sizes(config, EngineLimits(max_num_seqs=int(seqs), max_num_active_seqs=active))
    elif config.batch_sizes != "auto":
        batch_sizes = sorted(set(int(b) for b in config.batch_sizes))
    try:
        device = make_device(config)
    except DeviceError as err:
        raise ConfigError("device", config.device, str(err)) from err
    try:
        freqs = resolve_frequencies_hz(config, device)
    finally:
        device.close()
    if batch_sizes is None:
        batch_sizes = resolve_batch_sizes(config, EngineLimits(max_num_seqs=28))
        arm = config.policy_params.get("arm") if config.policy == "static" else None
        if isinstance(arm, (list, tuple)) and len(arm) in (2, 3) and isinstance(arm[1], int) and arm[1] >= 1:
            batch_sizes.append(arm[1])  # its cap is checked against the value vLLM resolves; its MHz here
    arms = ArmSet.product(freqs, batch_sizes, prefill_clocks_hz(config, freqs))
    contexts = ContextModel(contextual=config.contextual, max_batch=max(arms.batch_sizes)).num_contexts
    make_policy(config, arms, num_contexts=contexts)


def check_metrics_endpoint(config: CamelConfig, data_parallel_size: int = 1, server_port: int | None = None) -> None:
    """The engine core's metrics endpoint(s) can be served: ``metrics_port + rank`` for every
    data-parallel rank is free on ``metrics_host`` (bound and released here, the same call the
    engine core makes) and is not vLLM's own ``--port``. Raises :class:`ConfigError`.

    A port taken between this check and the engine core's start still stops the engine core
    (the README says so)."""
    if config.metrics_port is None:
        return
    from prometheus_client import CollectorRegistry

    from camel_vllm.telemetry.metrics.exporter import serve_http

    ports = [0] if config.metrics_port == 0 else [config.metrics_port + r for r in range(max(1, data_parallel_size))]
    for port in ports:
        if port and port == server_port:
            raise ConfigError("metrics_port", config.metrics_port,
                              f"{port} is vLLM's own --port (choose another metrics_port, or 0 for any free port)")
        if port > 65535:
            raise ConfigError("metrics_port", config.metrics_port,
                              f"rank {port - config.metrics_port} would serve on {port}, above 65535")
        server, thread = serve_http(config.metrics_host, port, CollectorRegistry())
        server.shutdown()
        server.server_close()
        thread.join(timeout=5.0)


def _wrap_parse(parser: argparse.ArgumentParser) -> None:
    """Check camel's config each time this parser parses (a serve subparser parses once)."""
    original: Callable[..., Any] = parser.parse_known_args

    @functools.wraps(original)
    def parse_known_args(args=None, namespace=None):
        namespace, rest = original(args, namespace)
        check_camel_args(namespace)
        return namespace, rest

    # This one parser's method is replaced; the wrapper takes what the overloaded original takes.
    parser.parse_known_args = parse_known_args  # type: ignore[method-assign,assignment]


def wrap_add_cli_args(engine_args_cls: type[Any]) -> bool:
    """Wrap ``engine_args_cls.add_cli_args``. Returns False if it was already wrapped."""
    original = engine_args_cls.__dict__["add_cli_args"].__func__
    if getattr(original, _WRAPPED_MARK, False):
        return False

    @functools.wraps(original)
    def add_cli_args(parser, *args, **kwargs):
        parser = original(parser, *args, **kwargs)
        add_scheduler_option(parser)
        _wrap_parse(parser)
        return parser

    setattr(add_cli_args, _WRAPPED_MARK, True)
    engine_args_cls.add_cli_args = staticmethod(add_cli_args)
    return True


def configure_logging() -> logging.Logger:
    """``vllm.camel`` through vLLM's logger set-up (handlers live on the ``vllm`` logger)."""
    try:
        from vllm.logger import init_logger

        return init_logger("vllm.camel")
    except ImportError:  # pragma: no cover - vLLM absent: plain logging
        return logger


def register() -> None:
    """Entry point: wrap the argument parser once per process. Safe to call repeatedly."""
    configure_logging()
    from vllm.engine.arg_utils import EngineArgs

    if wrap_add_cli_args(EngineArgs):
        logger.debug("camel: added --scheduler to vLLM's engine arguments")
        warn_if_unsupported_vllm()
    register_names()


def warn_if_unsupported_vllm() -> None:
    """One warning (per process) when the installed vLLM is outside the supported range."""
    from camel_vllm.vllm_plugin.compat import unsupported_warning
    from camel_vllm.vllm_plugin.serve import vllm_version

    line = unsupported_warning(vllm_version())
    if line:
        logger.warning("%s", line)


def register_names() -> None:
    """On a vLLM carrying ``patches/`` (first-class ``--scheduler``), register our names."""
    try:
        from vllm.v1.core.sched.registry import register_scheduler
    except ImportError:  # stock vLLM: the wrapped parser resolves names itself
        return
    for name, qualname in SCHEDULERS.items():
        if name != "default":
            register_scheduler(name, qualname)
