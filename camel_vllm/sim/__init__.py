"""The simulator: a discrete-event model of vLLM's continuous batching in virtual time.

:mod:`.engine` adapts a trace to the same :class:`~camel_vllm.control.controller.Controller`
the vLLM scheduler drives; :mod:`.records` is what it records per request. The benchmarks
that run it are in :mod:`camel_vllm.bench`.
"""
