"""Test helpers shared by the tests and the benchmarks (the serving path never imports them).

- :mod:`.fake_device`: one configurable fake of the device protocol;
- :mod:`.fake_sysfs`: fake Jetson sysfs trees and their fault injection;
- :mod:`.vllm_server`: starts ``vllm serve`` / ``camel-vllm serve`` for the real-engine tests;
- :mod:`.vllm_conformance` and :mod:`.conformance_plugin`: vLLM's scheduler tests run
  against camel's scheduler (need a real vLLM);
- :mod:`.tiny_model`: the tiny local Llama the tests serve (``camel-vllm make-tiny-model``).
"""
