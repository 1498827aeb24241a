"""The metric schema: every series camel-vllm exports, with its type, labels and buckets.

Both endpoints (the engine core's own HTTP endpoint and the multiprocess files merged into
vLLM's ``/metrics``) are built from this one table, so they cannot drift apart. Names follow
Prometheus' rules: ``camel_`` prefix, base units in the name (joules, seconds, hertz, watts),
counters end in ``_total`` (prometheus_client appends it to the family name given here).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

MetricType = Literal["counter", "gauge", "histogram"]
#: How prometheus_client's multiprocess collector merges a gauge across processes.
MultiprocessMode = Literal["all", "liveall", "min", "livemin", "max", "livemax", "sum", "livesum", "mostrecent",
                           "livemostrecent"]

#: Labels of per-arm series: the arm's clock in MHz (``format_mhz``: ``"930.75"``, ``"auto"``
#: for a batch-only arm), its batch cap, and the decision context id (``"0"`` when the
#: controller is not contextual; ``"all"`` on a policy's pooled posterior).
ARM_LABELS: tuple[str, ...] = ("freq_mhz", "max_batch", "context")
#: Labels of series that describe an arm independently of context.
ARM_ONLY_LABELS: tuple[str, ...] = ("freq_mhz", "max_batch")
#: Context label value for a policy's estimate pooled over contexts (``context_id is None``).
POOLED_CONTEXT = "all"

#: Request latency buckets (s). Edge devices serve a request in ~0.5 s (short chat turn on
#: AGX Orin, Llama-3.2-1B) to minutes (long generations queued behind a full batch); the
#: tiny CPU test model finishes in 0.05-2 s. Roughly x2 steps from 50 ms to ~5 min.
LATENCY_BUCKETS_S: tuple[float, ...] = (
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 80.0, 160.0, 320.0,
)
#: Per-request energy buckets (J). AGX Orin's GPU rail draws ~5-40 W (docs/devices.md, the
#: emulated Orin) and a request's share of a batch is seconds long, so 0.1 J (a short request in
#: a full batch) to ~1 kJ (a long generation alone at the top clock); 1-2.5-5 per decade.
ENERGY_BUCKETS_J: tuple[float, ...] = (
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0,
)
#: Per-request EDP buckets (J*s): the product of the two ranges above, 1e-2 .. 1e5 J*s,
#: 1-2.5-5 per decade (EDP is heavy-tailed; quantiles need log-spaced buckets).
EDP_BUCKETS_JS: tuple[float, ...] = tuple(
    m * 10.0 ** e for e in range(-2, 5) for m in (1.0, 2.5, 5.0)
) + (1e5,)


@dataclass(frozen=True)
class MetricSpec:
    """One metric family. ``name`` is the family name (counters without ``_total``)."""

    name: str
    type: MetricType
    help: str
    labels: tuple[str, ...] = ()
    buckets: tuple[float, ...] = ()
    #: How vLLM's multiprocess collector merges this gauge across processes.
    multiprocess_mode: MultiprocessMode = "livemostrecent"

    @property
    def exposed_names(self) -> tuple[str, ...]:
        """Sample names as they appear in the text exposition."""
        if self.type == "counter":
            return (self.name + "_total",)
        if self.type == "histogram":
            return (self.name + "_bucket", self.name + "_sum", self.name + "_count")
        return (self.name,)


ARM_PULLS = MetricSpec(
    "camel_arm_pulls", "counter",
    "Decisions that chose this arm in this context (sum over arms = camel_decisions_total).",
    ARM_LABELS,
)
ARM_REQUESTS = MetricSpec(
    "camel_arm_requests", "counter",
    "Finished requests credited to this arm, each weighted by the share of its tokens the arm "
    "served (sum over arms = requests finished).",
    ARM_LABELS,
)
ARM_ENERGY = MetricSpec(
    "camel_arm_energy_joules", "counter",
    "Request energy credited to this arm (each finished request's energy x the arm's token share).",
    ARM_LABELS + ("source",),
)
ARM_COST_MEAN = MetricSpec(
    "camel_arm_cost_mean", "gauge",
    "The policy's belief of the arm's expected cost, on its cost scale (camel: projected mean "
    "EDP per request in J*s at the posterior mean; camel-ts and ts: posterior mean of ln J*s).",
    ARM_LABELS,
)
ARM_COST_STD = MetricSpec(
    "camel_arm_cost_std", "gauge",
    "Uncertainty of that belief on the same scale (camel: spread of its Thompson draws around "
    "the mean; camel-ts and ts: posterior standard deviation).",
    ARM_LABELS,
)
ARM_SELECTED = MetricSpec(
    "camel_arm_selected", "gauge", "1 on the arm in force, 0 on every other arm.", ARM_ONLY_LABELS,
)
ARM_AVAILABLE = MetricSpec(
    "camel_arm_available", "gauge",
    "1 if the policy may choose the arm, 0 if it was switched off (capped clock, no permission).",
    ARM_ONLY_LABELS,
)
GPU_FREQUENCY = MetricSpec(
    "camel_gpu_frequency_hertz", "gauge",
    "GPU clock: kind=target is the arm's clock, kind=current what the device reports.",
    ("kind",),
)
BATCH_CAP = MetricSpec("camel_batch_cap", "gauge", "Maximum running requests allowed by the arm in force.")
ENERGY = MetricSpec(
    "camel_energy_joules", "counter",
    "Device energy since the device was opened (idle included), source=measured|emulated|none.",
    ("source",),
)
POWER = MetricSpec("camel_power_watts", "gauge", "Device power now.", ("source",))
REQUEST_EDP = MetricSpec(
    "camel_request_edp_joule_seconds", "histogram",
    "Energy-delay product of finished requests (attributed energy x end-to-end latency).",
    ("source",), EDP_BUCKETS_JS,
)
REQUEST_LATENCY = MetricSpec(
    "camel_request_latency_seconds", "histogram",
    "End-to-end latency of finished requests (arrival to finish).", (), LATENCY_BUCKETS_S,
)
REQUEST_ENERGY = MetricSpec(
    "camel_request_energy_joules", "histogram",
    "Energy attributed to finished requests (token-proportional share of each iteration).",
    ("source",), ENERGY_BUCKETS_J,
)
DECISIONS = MetricSpec("camel_decisions", "counter", "Arm decisions (one per decision epoch).")
FREQUENCY_SWITCHES = MetricSpec(
    "camel_frequency_switches", "counter", "Decisions that changed the GPU clock.",
)
STEP_CLOCK_SWITCHES = MetricSpec(
    "camel_step_clock_switches", "counter",
    "Engine steps the clock was switched for, to follow their work (an arm whose prefill steps run "
    "at another clock; each costs the device's switch latency).",
)
DEVICE_ERRORS = MetricSpec(
    "camel_device_errors", "counter",
    "Device and state errors by kind (permission, set_frequency, frequency_mismatch, "
    "state_save, read, sensor; policy: the policy raised and the default arm is played from then on).",
    ("kind",),
)
CONTROLLER_INFO = MetricSpec(
    "camel_controller_info", "gauge",
    "Constant 1; labels describe the controller (policy, cost, device, profile, emulated).",
    ("policy", "cost", "device", "device_name", "profile", "model_profile", "energy_source",
     "energy_method", "emulated", "contextual", "epoch_iterations"),
)

MODEL_CORRECTION = MetricSpec(
    "camel_model_correction", "gauge",
    "Factor finished requests make the model-based policy apply to its projections (1 = none): "
    "kind=energy|service|wait|capacity|load|shares (decode-only steps shared among fewer than projected).",
    ("kind",),
)
MODEL_CLOCK_CORRECTION = MetricSpec(
    "camel_model_clock_correction", "gauge",
    "Factor a clock's own iterations make the board model apply to its step time and energy there "
    "(1 = the model fits that clock): kind=time|energy.",
    ("freq_mhz", "kind"),
)
MODEL_ERROR = MetricSpec(
    "camel_model_error", "gauge",
    "Recent mean |ln(measured / projected)| of finished requests' energy and service time "
    "(0 = the projections were exact): kind=energy|service.",
    ("kind",),
)
MODEL_ITERATIONS = MetricSpec(
    "camel_model_iterations", "counter",
    "Iterations the board model has learned from (starts from the count in the learned state): kind=time|energy.",
    ("kind",),
)
MODEL_EXPLORATIONS = MetricSpec(
    "camel_model_exploratory_decisions", "counter",
    "Decisions where the model-based policy's posterior draw, not its posterior mean, chose the arm "
    "(exploration; compare rate() with that of camel_decisions_total).",
)

#: Error kinds pre-created at 0 so that ``rate()`` sees the first error.
KNOWN_ERROR_KINDS: tuple[str, ...] = (
    "permission", "set_frequency", "frequency_mismatch", "state_save", "read", "sensor", "policy",
)

ALL_METRICS: tuple[MetricSpec, ...] = (
    ARM_PULLS, ARM_REQUESTS, ARM_ENERGY, ARM_COST_MEAN, ARM_COST_STD, ARM_SELECTED, ARM_AVAILABLE,
    GPU_FREQUENCY, BATCH_CAP, ENERGY, POWER, REQUEST_EDP, REQUEST_LATENCY, REQUEST_ENERGY,
    DECISIONS, FREQUENCY_SWITCHES, STEP_CLOCK_SWITCHES, DEVICE_ERRORS, CONTROLLER_INFO,
    MODEL_CORRECTION, MODEL_CLOCK_CORRECTION, MODEL_ERROR, MODEL_ITERATIONS, MODEL_EXPLORATIONS,
)
#: Families only a model-based policy fills (empty for the others). Its counters
#: (camel_model_iterations, camel_model_exploratory_decisions) are the policy's own running
#: counts in the controller's latest snapshot of it, never below a value already exported.
MODEL_METRICS: tuple[MetricSpec, ...] = (
    MODEL_CORRECTION, MODEL_CLOCK_CORRECTION, MODEL_ERROR, MODEL_ITERATIONS, MODEL_EXPLORATIONS,
)


def exposed_sample_names() -> frozenset[str]:
    """Every sample name the exporter can emit (what a PromQL query may name)."""
    return frozenset(n for spec in ALL_METRICS for n in spec.exposed_names)
