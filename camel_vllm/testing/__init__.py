"""Test helpers shared by the tests and the benchmarks (never imported by camel itself).

- :mod:`.fake_device`: one configurable fake of the device protocol;
- :mod:`.vllm_conformance` and :mod:`.conformance_plugin`: vLLM's scheduler tests run
  against camel's scheduler (need a real vLLM).

The fake Jetson sysfs trees and their fault injection are in :mod:`camel_vllm.devices.testing`.
"""
