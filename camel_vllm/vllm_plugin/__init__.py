"""camel-vllm inside vLLM: the general plugin, the scheduler adapter, and the serve wrapper.

Only :mod:`camel_vllm.vllm_plugin.scheduler` imports vLLM's scheduler (and torch); the
other modules import vLLM lazily.
"""
