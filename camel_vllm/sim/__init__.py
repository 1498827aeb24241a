"""The offline benchmark: a discrete-event model of vLLM's continuous batching.

:mod:`engine` adapts a trace to the same :class:`~camel_vllm.control.controller.Controller` the vLLM
scheduler drives; :mod:`bench` runs policies on one trace; :mod:`results` is the JSON format
shared with the live replay; :mod:`plots` draws the figures.
"""
