"""camel-vllm's error root: every error camel raises on purpose is a :class:`CamelError`.

``except CamelError`` catches them all; each class also keeps the builtin base its callers
caught before (``ValueError``, ``RuntimeError``), so existing ``except`` clauses still work.
``str(err)`` is one line for the operator; the underlying exception (an ``OSError``, an NVML
error, a JSON error) is kept as ``__cause__`` (``raise ... from err``) for logs and debugging.
The classes live next to the code that raises them:

- :class:`camel_vllm.core.config.ConfigError` (``ValueError``): a configuration value is wrong;
- :class:`camel_vllm.devices.base.DeviceError` (``RuntimeError``), with
  :class:`~camel_vllm.devices.base.DevicePermissionError` and the NVML errors of
  :mod:`camel_vllm.devices.nvml` (:class:`~camel_vllm.devices.nvml.NvmlError` and subclasses);
- :class:`camel_vllm.control.state.StateFileError`: a learned-state file was refused;
- :class:`camel_vllm.traces.base.TraceFormatError` (``ValueError``): a malformed trace file;
- :class:`camel_vllm.cli.trace_args.TraceOptionError` (``ValueError``): a bad trace option;
- :class:`camel_vllm.bench.replay.ServerUnreachable` (``RuntimeError``): no OpenAI-compatible server;
- :class:`camel_vllm.vllm_plugin.registry.UnknownSchedulerError` (``ValueError``);
- :class:`camel_vllm.bench.pool.SimWorkerError` (``RuntimeError``): a simulator run failed.
"""

from __future__ import annotations


class CamelError(Exception):
    """Root of camel-vllm's own errors. ``str(err)`` is one line; the cause is ``__cause__``."""
