"""The general plugin against vLLM's real argument parser (private code: pinned here).

These tests build vLLM's own ``vllm serve`` parser (``make_arg_parser``) after
``camel_vllm.register()`` and parse real command lines; no engine is started.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

import camel_vllm
from camel_vllm.vllm_plugin import plugin
from camel_vllm.vllm_plugin.registry import UnknownSchedulerError, is_camel, resolve_scheduler


#: The tests here share a module-scoped fixture: one xdist worker runs them all (scripts/test.sh
#: distributes with --dist loadgroup).
pytestmark = pytest.mark.xdist_group("test_vllm_plugin")


@pytest.fixture(scope="module")
def parser():
    camel_vllm.register()
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    from camel_vllm.vllm_plugin.compat import cli_args_module

    return cli_args_module().make_arg_parser(FlexibleArgumentParser())


def _camel(**section):
    return ["--additional-config", json.dumps({"camel": section})]


def test_register_is_idempotent():
    from vllm.engine.arg_utils import EngineArgs

    camel_vllm.register()
    wrapped = EngineArgs.add_cli_args
    camel_vllm.register()
    assert EngineArgs.add_cli_args is wrapped
    assert getattr(wrapped, plugin._WRAPPED_MARK)
    assert plugin.wrap_add_cli_args(EngineArgs) is False


def test_scheduler_camel_sets_scheduler_cls(parser):
    args = parser.parse_args(["--model", "m", "--scheduler", "camel", *_camel(device="none")])
    assert args.scheduler_cls == "camel_vllm.CamelScheduler"


def test_scheduler_default_keeps_vllm_scheduler(parser):
    args = parser.parse_args(["--model", "m", "--scheduler", "default"])
    assert args.scheduler_cls is None


def test_scheduler_cls_still_works_and_is_checked(parser, capsys):
    args = parser.parse_args(["--model", "m", "--scheduler-cls", "camel_vllm.CamelScheduler", *_camel(device="none")])
    assert args.scheduler_cls == "camel_vllm.CamelScheduler"
    with pytest.raises(SystemExit) as exit_:
        parser.parse_args(["--model", "m", "--scheduler-cls", "camel_vllm.CamelScheduler", *_camel(alpha=1.5)])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.strip() == "camel config: alpha=1.5: must be a number in [0, 1]"


def test_unknown_scheduler_name_is_one_line(parser, capsys):
    with pytest.raises(SystemExit) as exit_:
        parser.parse_args(["--model", "m", "--scheduler", "fastest"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["--scheduler=fastest: unknown scheduler (known: camel, default, or a dotted class path)"]


@pytest.mark.parametrize(
    "extra, section, key, value",
    [
        ([], {"devise": "emulated"}, "devise", '"emulated"'),
        ([], {"device": "emulated", "frequencies_mhz": [612, 700]}, "frequencies_mhz", "[612, 700]"),
        (["--max-num-seqs", "8"], {"device": "none", "batch_sizes": [4, 16]}, "batch_sizes", "[4, 16]"),
        ([], {"device": "none", "batch_sizes": [4, 4096]}, "batch_sizes", "[4, 4096]"),  # above any default
        ([], {"device": "none", "alpha": -0.1}, "alpha", "-0.1"),
        ([], {"device": "none", "state_path": "/nonexistent-dir/state.json"}, "state_path",
         '"/nonexistent-dir/state.json"'),
    ],
)
def test_bad_config_exits_with_one_line(parser, capsys, extra, section, key, value):
    with pytest.raises(SystemExit) as exit_:
        parser.parse_args(["--model", "m", "--scheduler", "camel", *extra, *_camel(**section)])
    assert exit_.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"camel config: {key}={value}: "), lines[0]


def test_batch_size_above_serve_default_exits_at_parse_time(parser, capsys):
    """The serve parser bounds vLLM's default by the OpenAI server's usage context."""
    from vllm.engine.arg_utils import EngineArgs
    from vllm.usage.usage_lib import UsageContext

    default = plugin.default_max_num_seqs(parser.parse_args(["--model", "m"]))
    assert default is not None and default.openai_server
    assert default.value == EngineArgs.get_batch_defaults(1)[1][UsageContext.OPENAI_API_SERVER]
    args = parser.parse_args(["--model", "m", "--scheduler", "camel",
                              *_camel(device="none", batch_sizes=[4, default.value])])
    assert args.scheduler_cls == "camel_vllm.CamelScheduler"
    with pytest.raises(SystemExit):
        parser.parse_args(["--model", "m", "--scheduler", "camel",
                           *_camel(device="none", batch_sizes=[4, default.value + 1])])
    assert capsys.readouterr().err.strip() == (
        f"camel config: batch_sizes=[4, {default.value + 1}]: {default.value + 1} is above vLLM's default "
        f"--max-num-seqs (at most {default.value} for vllm serve here); pass a larger --max-num-seqs")
    # ... and --max-num-seqs lifts it.
    args = parser.parse_args(["--model", "m", "--scheduler", "camel", "--max-num-seqs", str(default.value + 1),
                              *_camel(device="none", batch_sizes=[4, default.value + 1])])
    assert args.scheduler_cls == "camel_vllm.CamelScheduler"


def test_batch_sizes_are_checked_against_the_active_cap(parser, capsys):
    """--max-num-active-seqs (vLLM's admission cap, at most --max-num-seqs) is the arms' ceiling."""
    section = _camel(device="none", batch_sizes=[4, 16])
    for flags in (["--max-num-seqs", "32", "--max-num-active-seqs", "12"], ["--max-num-active-seqs", "12"]):
        with pytest.raises(SystemExit) as exit_:
            parser.parse_args(["--model", "m", "--scheduler", "camel", *flags, *section])
        assert exit_.value.code == 2
        assert capsys.readouterr().err.strip() == (
            "camel config: batch_sizes=[4, 16]: 16 is above --max-num-active-seqs 12")
    args = parser.parse_args(["--model", "m", "--scheduler", "camel", "--max-num-seqs", "32",
                              "--max-num-active-seqs", "16", *section])
    assert (args.scheduler_cls, args.max_num_active_seqs) == ("camel_vllm.CamelScheduler", 16)


def test_parsers_of_other_entry_points_get_the_largest_default():
    """run-batch (UsageContext.OPENAI_BATCH_RUNNER) has no --api-server-count: no serve bound."""
    from vllm.config import SchedulerConfig
    from vllm.engine.arg_utils import EngineArgs
    from vllm.entrypoints.launchers.run_batch import make_arg_parser as run_batch_parser
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    parser = run_batch_parser(FlexibleArgumentParser())
    args = parser.parse_args(["-i", "in.jsonl", "-o", "out.jsonl", "--model", "m"])
    largest = max([*EngineArgs.get_batch_defaults(1)[1].values(), SchedulerConfig.DEFAULT_MAX_NUM_SEQS])
    assert plugin.default_max_num_seqs(args) == plugin.DefaultMaxNumSeqs(largest, openai_server=False)


def test_default_max_num_seqs_follows_vllm():
    """Exact for the OpenAI server's args, else the largest of any usage context; scaled by
    parallel size, doubled in throughput mode, as vLLM does."""
    from vllm.config import SchedulerConfig
    from vllm.engine.arg_utils import EngineArgs
    from vllm.usage.usage_lib import UsageContext

    def default(tp: int, mode: str, **server_args):
        return plugin.default_max_num_seqs(
            SimpleNamespace(pipeline_parallel_size=1, tensor_parallel_size=tp, performance_mode=mode, **server_args))

    for tp in (1, 2):
        by_context = EngineArgs.get_batch_defaults(tp)[1]
        largest = max([*by_context.values(), SchedulerConfig.DEFAULT_MAX_NUM_SEQS])
        assert default(tp, "balanced") == plugin.DefaultMaxNumSeqs(largest, openai_server=False)
        assert default(tp, "throughput") == plugin.DefaultMaxNumSeqs(2 * largest, openai_server=False)
        serve = by_context[UsageContext.OPENAI_API_SERVER]
        assert default(tp, "balanced", api_server_count=None) == plugin.DefaultMaxNumSeqs(serve, openai_server=True)
        assert default(tp, "throughput", api_server_count=1) == plugin.DefaultMaxNumSeqs(2 * serve, openai_server=True)


def test_config_not_checked_for_other_schedulers(parser):
    args = parser.parse_args(["--model", "m", "--scheduler", "default", *_camel(alpha=7)])
    assert args.scheduler_cls is None


def test_registry():
    assert resolve_scheduler("camel") == "camel_vllm.CamelScheduler"
    assert resolve_scheduler("default") is None
    assert resolve_scheduler("my.pkg.Sched") == "my.pkg.Sched"
    with pytest.raises(UnknownSchedulerError):
        resolve_scheduler("nope")
    assert is_camel("camel_vllm.CamelScheduler") and not is_camel(None) and not is_camel("vllm.x.Y")


def test_scheduler_class_follows_async_scheduling():
    from vllm.v1.core.sched.async_scheduler import AsyncScheduler
    from vllm.v1.core.sched.scheduler import Scheduler

    from camel_vllm.vllm_plugin.scheduler import CamelAsyncScheduler, CamelScheduler, _CamelMixin

    assert camel_vllm.CamelScheduler is CamelScheduler
    assert CamelAsyncScheduler.__mro__[:5] == (
        CamelAsyncScheduler, CamelScheduler, _CamelMixin, AsyncScheduler, Scheduler,
    )

    def config(async_scheduling):
        return SimpleNamespace(scheduler_config=SimpleNamespace(async_scheduling=async_scheduling))

    # __new__ only picks the class (no __init__ here: that needs a whole engine).
    assert type(CamelScheduler.__new__(CamelScheduler, vllm_config=config(True))) is CamelAsyncScheduler
    assert type(CamelScheduler.__new__(CamelScheduler, vllm_config=config(False))) is CamelScheduler
    assert type(CamelScheduler.__new__(CamelScheduler, config(None))) is CamelScheduler


def test_engine_core_gets_a_shutdown_window():
    import vllm.v1.engine.utils as engine_utils

    plugin.give_engine_core_shutdown_grace()
    assert plugin.give_engine_core_shutdown_grace() is False  # already wrapped
    grace = engine_utils.get_engine_process_shutdown_timeout
    assert grace(0, 0) == plugin.ENGINE_SHUTDOWN_GRACE_S  # default --shutdown-timeout 0
    assert grace(30, 30) == 30  # an explicit drain timeout is kept
    assert grace(30, 0) == 0  # an outer manager's spent budget is kept


def test_metrics_port_follows_data_parallel_rank():
    from camel_vllm.vllm_plugin.scheduler import camel_config_for

    def vllm_config(index, rank=0):
        parallel = SimpleNamespace(data_parallel_index=index, data_parallel_rank=rank, data_parallel_size=1)
        return SimpleNamespace(parallel_config=parallel,
                               additional_config={"camel": {"device": "none", "metrics_port": 9400}})

    assert camel_config_for(vllm_config(0)).metrics_port == 9400
    # vLLM resets data_parallel_rank to 0 in independent DP engine cores; the index survives.
    assert camel_config_for(vllm_config(3, rank=0)).metrics_port == 9403
