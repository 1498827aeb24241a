"""Measure a calibration table on a real board (or the emulator) in the emulator's profile format.

For each GPU frequency it pins the clock, measures quiet power, then times prefill and
decode iterations over a grid of batch sizes and context lengths, reading the device's
energy counter around each run: ``iteration_time_s`` is wall time per iteration and
``power_w`` is energy / time. The result is a device profile (YAML or JSON by the file
extension) with the published constants of ``--device-profile`` plus a ``calibration``
table for ``--model-profile``; pass its path as ``device_profile`` and the emulator uses
the measured figures without code changes (camel_vllm/devices/emulator/roofline.py).

Workloads:
- ``emulated`` (``--dry-run``): the emulated device itself, on a virtual clock (proves the
  format round-trips; the figures are labelled emulated);
- ``matmul``: torch GEMM/GEMV over a weight buffer the size of the model (fp16, CUDA);
- ``vllm``: ``vllm.LLM`` offline: prefill = a generate with ``max_tokens=1``, decode = the
  extra time of longer generations per output token.

Examples::

    python benchmarks/profile_device.py --dry-run --out /tmp/orin-emulated.yaml
    sudo python benchmarks/profile_device.py --device jetson --workload matmul \\
        --model-profile llama-3.2-1b --out orin-agx-32gb-measured.yaml
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import logging
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable, Protocol, Sequence

from camel_vllm.core.arms import same_frequency
from camel_vllm.core.config import CamelConfig
from camel_vllm.core.events import IterationWork
from camel_vllm.devices.base import Device
from camel_vllm.devices.emulator.device import EmulatedDevice
from camel_vllm.devices.emulator.profiles import (
    CalibrationRow, ModelProfile, device_profile_to_dict, load_device_profile, load_model_profile,
)
from camel_vllm.devices.registry import make_device

logger = logging.getLogger("vllm.camel")


class Workload(Protocol):
    """Runs one engine iteration of a phase on the hardware and returns when it is done."""

    def run(self, phase: str, batch: int, tokens_per_request: int, context_tokens: int) -> None: ...

    def wait(self, seconds: float) -> None: ...


class VirtualClock:
    def __init__(self) -> None:
        self.now_s = 0.0

    def __call__(self) -> float:
        return self.now_s


class EmulatedWorkload:
    """Drives an :class:`EmulatedDevice` in absolute time on a virtual clock."""

    def __init__(self, device: EmulatedDevice, clock: VirtualClock) -> None:
        self.device, self.clock = device, clock

    def run(self, phase: str, batch: int, tokens_per_request: int, context_tokens: int) -> None:
        work = iteration_work(phase, batch, tokens_per_request, context_tokens)
        self.clock.now_s += self.device.iteration_done(work, 0.0)

    def wait(self, seconds: float) -> None:
        self.clock.now_s += seconds


class MatmulWorkload:
    """A forward-pass stand-in: GEMM (prefill) or GEMV-like (decode) over a model-sized weight buffer."""

    def __init__(self, model: ModelProfile) -> None:
        import torch

        if not torch.cuda.is_available():
            raise SystemExit("profile_device: --workload matmul needs a CUDA GPU")
        self.torch = torch
        hidden = model.hidden_size
        rows = max(1, int(model.params // hidden // model.layers))
        self.weights = [torch.randn(hidden, rows, dtype=torch.float16, device="cuda") for _ in range(model.layers)]
        self.kv = torch.randn(model.layers, 4096, model.kv_heads * model.head_dim, dtype=torch.float16, device="cuda")
        self.hidden = hidden

    def run(self, phase: str, batch: int, tokens_per_request: int, context_tokens: int) -> None:
        torch = self.torch
        n = batch * (tokens_per_request if phase == "prefill" else 1)
        x = torch.randn(n, self.hidden, dtype=torch.float16, device="cuda")
        kv_dim = self.kv.shape[2]
        for layer, w in enumerate(self.weights):
            x @ w  # weights read once per iteration
            if phase == "decode" and context_tokens:  # attention reads the KV cache
                keys = self.kv[layer, : min(context_tokens, self.kv.shape[1])]
                x[:, :kv_dim] @ keys.T
        torch.cuda.synchronize()

    def wait(self, seconds: float) -> None:
        time.sleep(seconds)


class VllmWorkload:
    """``vllm.LLM`` offline: one generate per measurement (per-iteration times are derived)."""

    def __init__(self, model_path: str, max_batch: int) -> None:
        from vllm import LLM, SamplingParams

        self.llm = LLM(model=model_path, max_num_seqs=max_batch, enforce_eager=True)
        self.SamplingParams = SamplingParams

    def run(self, phase: str, batch: int, tokens_per_request: int, context_tokens: int) -> None:
        prompt_len = tokens_per_request if phase == "prefill" else max(1, context_tokens // max(1, batch))
        prompts = [{"prompt_token_ids": [100 + (i % 1000) for i in range(prompt_len)]} for _ in range(batch)]
        params = self.SamplingParams(max_tokens=1 if phase == "prefill" else 2, ignore_eos=True)
        self.llm.generate(prompts, params, use_tqdm=False)

    def wait(self, seconds: float) -> None:
        time.sleep(seconds)


def iteration_work(phase: str, batch: int, tokens_per_request: int, context_tokens: int) -> IterationWork:
    if phase == "prefill":
        return IterationWork({f"r{i}": tokens_per_request for i in range(batch)},
                             num_prefill_tokens=batch * tokens_per_request, num_decode_tokens=0)
    return IterationWork({f"r{i}": 1 for i in range(batch)}, num_prefill_tokens=0, num_decode_tokens=batch,
                         context_tokens=batch * context_tokens)


def measure(
    device: Device,
    workload: Workload,
    *,
    model_name: str,
    frequencies_hz: Sequence[float],
    batches: Sequence[int],
    contexts: Sequence[int],
    prompt_tokens: int,
    iterations: int,
    idle_s: float,
    clock: Callable[[], float],
) -> list[CalibrationRow]:
    """The calibration rows: idle, prefill and decode per frequency (decode per context)."""
    rows: list[CalibrationRow] = []
    for freq_hz in frequencies_hz:
        applied_hz = device.set_frequency_hz(freq_hz)
        if not same_frequency(applied_hz, freq_hz):
            logger.warning("profile: asked %.2f MHz, got %.2f MHz; skipping", freq_hz / 1e6, applied_hz / 1e6)
            continue
        workload.wait(0.05)  # let the switch settle (~5 ms on an Orin Nano, arXiv 2606.16106)
        e0, t0 = device.energy_j(), clock()
        workload.wait(idle_s)
        e1, t1 = device.energy_j(), clock()
        rows.append(CalibrationRow(model_name, "idle", applied_hz, 0, 0, 0, 0.0, (e1 - e0) / max(t1 - t0, 1e-9)))
        for batch in batches:
            cases = [("prefill", prompt_tokens, 0)] + [("decode", 1, ctx) for ctx in contexts]
            for phase, per_request, ctx in cases:
                workload.run(phase, batch, per_request, ctx)  # warm-up
                e0, t0 = device.energy_j(), clock()
                for _ in range(iterations):
                    workload.run(phase, batch, per_request, ctx)
                e1, t1 = device.energy_j(), clock()
                elapsed_s = max(t1 - t0, 1e-9)
                tokens = batch * per_request
                rows.append(CalibrationRow(
                    model_name, phase, applied_hz, batch, tokens, batch * ctx if phase == "decode" else 0,
                    elapsed_s / iterations, (e1 - e0) / elapsed_s,
                ))
    return rows


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="emulated", choices=("emulated", "jetson", "nvml", "auto"))
    parser.add_argument("--workload", default=None, choices=("emulated", "matmul", "vllm"),
                        help="default: emulated for --device emulated, else matmul")
    parser.add_argument("--dry-run", action="store_true", help="emulated device and workload (no hardware)")
    parser.add_argument("--device-profile", default="orin-agx-32gb", help="published profile the output starts from")
    parser.add_argument("--model-profile", default="llama-3.2-1b")
    parser.add_argument("--model", default=None, help="--workload vllm: model path")
    parser.add_argument("--name", default=None, help="profile name (default: <device-profile>-measured)")
    parser.add_argument("--frequencies-mhz", default="auto", help="comma list or auto (every offered step)")
    parser.add_argument("--batches", default="1,4,8,16,28")
    parser.add_argument("--contexts", default="128,512,2048", help="decode context tokens per request")
    parser.add_argument("--prompt-tokens", type=int, default=512)
    parser.add_argument("--iterations", type=int, default=5)
    parser.add_argument("--idle-s", type=float, default=1.0)
    parser.add_argument("--sysfs-root", default="/")
    parser.add_argument("--rails", default="VDD_GPU_SOC")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True, help="output profile (.yaml, .yml or .json)")
    return parser


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    base = load_device_profile(args.device_profile)
    model = load_model_profile(args.model_profile)
    kind = "emulated" if args.dry_run else args.device
    workload_kind = "emulated" if args.dry_run else (args.workload or ("emulated" if kind == "emulated" else "matmul"))
    if (kind == "emulated") != (workload_kind == "emulated"):
        raise SystemExit("profile_device: the emulated workload runs only on the emulated device, and back")
    if kind == "emulated":
        clock: Callable[[], float] = VirtualClock()
        device: Device = EmulatedDevice(base, model, clock=clock, seed=args.seed, time_mode="absolute")
        workload: Workload = EmulatedWorkload(device, clock)  # type: ignore[arg-type]
    else:
        clock = time.monotonic
        config = CamelConfig(device=kind, sysfs_root=args.sysfs_root, rails=args.rails, seed=args.seed)
        device = make_device(config)
        workload = (MatmulWorkload(model) if workload_kind == "matmul"
                    else VllmWorkload(args.model, max(_ints(args.batches))))
    try:
        offered = sorted(device.available_frequencies_hz())
        if args.frequencies_mhz == "auto":
            freqs = offered
        else:
            freqs = [min(offered, key=lambda f: abs(f - mhz * 1e6))
                     for mhz in map(float, args.frequencies_mhz.split(","))]
        rows = measure(
            device, workload, model_name=model.name, frequencies_hz=freqs, batches=_ints(args.batches),
            contexts=_ints(args.contexts), prompt_tokens=args.prompt_tokens, iterations=args.iterations,
            idle_s=args.idle_s, clock=clock,
        )
        info = device.info()
    finally:
        device.close()
    kept = [r for r in base.calibration if r.model != model.name]
    profile = replace(
        base, name=args.name or f"{base.name}-measured", source="emulated" if info.emulated else "measured",
        frequencies_hz=tuple(sorted({r.freq_hz for r in rows})) or base.frequencies_hz,
        calibration=tuple(kept + rows),
    )
    data = device_profile_to_dict(profile)
    data["measured_with"] = {
        "device": info.kind, "device_name": info.name, "energy_source": info.energy_source,
        "energy_method": info.energy_method, "workload": workload_kind, "model_profile": model.name,
        "date_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    write_profile(Path(args.out), data)
    print(f"wrote {len(rows)} calibration rows for {model.name} to {args.out}"
          f"{' (emulated)' if info.emulated else ''}")
    return 0


def write_profile(path: Path, data: dict) -> None:
    if path.suffix == ".json":
        path.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
        return
    import yaml

    header = (
        f"# {data['name']}: written by benchmarks/profile_device.py ({data['source']}).\n"
        "# Constants other than frequencies_hz and calibration are copied from the published profile\n"
        "# it started from (see that file for their sources); calibration rows override the model.\n"
    )
    path.write_text(header + yaml.safe_dump(data, sort_keys=False), encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
