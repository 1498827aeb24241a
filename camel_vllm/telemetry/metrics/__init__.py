"""Prometheus metrics for camel-vllm: arm statistics, energy, power, clock and request EDP.

:class:`MetricsExporter` is a controller listener; ``MetricsExporter.start(config,
controller)`` serves the engine core's endpoint and, with ``PROMETHEUS_MULTIPROC_DIR`` set,
feeds vLLM's merged ``/metrics``. The series are listed in :mod:`camel_vllm.telemetry.metrics.schema`
and documented in docs/metrics.md.
"""

from camel_vllm.telemetry.metrics.exporter import MetricsExporter, controller_info_labels
from camel_vllm.telemetry.metrics.schema import ALL_METRICS, MetricSpec, exposed_sample_names

__all__ = ["ALL_METRICS", "MetricSpec", "MetricsExporter", "controller_info_labels", "exposed_sample_names"]
