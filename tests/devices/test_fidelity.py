"""Published measurements and the fidelity table: every point sourced, the ratios computed as
documented, the recalibrated profiles closer to the evidence than the roofline profiles."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from camel_vllm.core.config import ConfigError
from camel_vllm.devices.emulator.fidelity import TOLERANCE, FidelityRow, fidelity_rows, summarize
from camel_vllm.devices.emulator.measurements import load_measurements
from camel_vllm.devices.emulator.profiles import load_device_profile
from camel_vllm.wiring.build import MAX_AUTO_CLOCKS, auto_frequencies_hz

MHZ = 1e6


def test_every_published_point_carries_its_source_and_excerpt() -> None:
    data = load_measurements()
    assert len(data.series) > 40
    for s in data.series:
        assert s.source.url.startswith("https://") and s.source.ref, s.id
        for p in s.points:
            assert p.excerpt and p.value > 0, (s.id, p.label)
    fitted = {(s.id, p.label) for s in data.series for p in s.points if p.fitted_to}
    assert ("smolhub-nr-llama3.2-1b-itl", "15W") in fitted and ("smolhub-nr-gemma3-1b-itl", "15W") not in fitted


def test_a_ratio_point_is_set_against_the_emulators_ratio_for_the_same_work(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text("""format: camel-vllm-measurements/1
sources:
  s: {title: T, url: https://example.org, ref: Table 1, board: B}
series:
- id: t
  source: s
  board_class: orin
  model: M
  metric: time
  compare: ratio_to_top
  work: {phase: decode, batch: 1, context_tokens: 512}
  points:
  - {label: top, clock_fraction: 1.0, value: 20.0, unit: ms, excerpt: x}
  - {label: half, clock_fraction: 0.5, value: 40.0, unit: ms, excerpt: x, fitted: [orin-agx-32gb]}
""")
    profile = load_device_profile("orin-agx-32gb")
    (row,) = fidelity_rows(profile, measurements=load_measurements(path))
    from camel_vllm.core.events import IterationWork
    from camel_vllm.devices.emulator.profiles import load_model_profile
    from camel_vllm.devices.emulator.roofline import PerformanceModel

    pm = PerformanceModel(profile, load_model_profile("llama-3.2-1b"))
    work = IterationWork({"r0": 1}, 0, 1, 512)
    expected = (pm.iteration_time_s(work, 0.5 * profile.max_frequency_hz)
                / pm.iteration_time_s(work, profile.max_frequency_hz))
    assert row.published == 2.0 and row.emulated == pytest.approx(expected) and row.use == "fitted"
    assert row.holds is (abs(math.log(expected / 2.0)) <= math.log(1.0 + TOLERANCE))
    roofline = fidelity_rows(load_device_profile("orin-agx-32gb-roofline"), measurements=load_measurements(path))
    assert roofline[0].use == "compared"  # fitted to one profile, only compared with the others


def test_bounds_hold_on_their_side() -> None:
    upper = FidelityRow("s", "src", "m", "w", "p", None, 0.8, 0.5, "x", "compared", bound="upper")
    assert upper.holds and not FidelityRow("s", "src", "m", "w", "p", None, 0.8, 1.0, "x", "compared",
                                           bound="upper").holds


def test_recalibrated_orin_holds_where_the_roofline_did_not() -> None:
    new = summarize(fidelity_rows(load_device_profile("orin-agx-32gb")))
    old = summarize(fidelity_rows(load_device_profile("orin-agx-32gb-roofline")))
    assert new["hold"] / new["compared"] > 0.9 > 0.75 > old["hold"] / old["compared"]
    for row in fidelity_rows(load_device_profile("orin-agx-32gb")):
        if row.use == "fitted":
            assert row.holds, row


def test_bad_measurements_file_names_the_entry(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text("format: camel-vllm-measurements/1\nsources: {}\nseries:\n- {id: a, source: nope}\n")
    with pytest.raises(ConfigError, match=r"series\[a\].*source 'nope'"):
        load_measurements(path)


def test_auto_takes_every_jetson_step_and_twelve_of_an_h100s() -> None:
    orin = load_device_profile("orin-agx-64gb").frequencies_hz
    assert auto_frequencies_hz(orin) == list(orin)
    h100 = auto_frequencies_hz(load_device_profile("h100-sxm").frequencies_hz)
    assert len(h100) == MAX_AUTO_CLOCKS and h100[-1] == 1980 * MHZ and h100[0] == 660 * MHZ
    steps = [b - a for a, b in zip(h100, h100[1:], strict=False)]
    assert max(steps) - min(steps) <= 15 * MHZ


def test_serving_defaults_load_and_bad_ones_are_one_line(tmp_path: Path) -> None:
    h100 = load_device_profile("h100-sxm")
    assert h100.serving is not None and h100.serving.max_num_seqs == 256
    assert h100.serving.model_profile == "llama-3.1-8b"
    bad = tmp_path / "b.yaml"
    src = Path(__file__).resolve().parents[2] / "camel_vllm" / "data" / "profiles" / "orin-agx-32gb.yaml"
    text = src.read_text().replace("max_num_seqs: 28", "max_num_seqs: -1")
    bad.write_text(text)
    with pytest.raises(ConfigError, match="max_num_seqs=-1 must be a positive integer"):
        load_device_profile(str(bad))
    bad.write_text(src.read_text().replace("knee_sharpness: 16", "knee_sharpness: 0.5"))
    with pytest.raises(ConfigError, match="knee_sharpness=0.5 must be >= 1"):
        load_device_profile(str(bad))


def test_cli_prints_the_table_and_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "f.json"
    done = subprocess.run([sys.executable, "-m", "camel_vllm", "fidelity", "--device-profile", "h100-sxm",
                           "--json", str(out)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "h100-sxm:" in done.stdout and "EMULATED" in done.stdout and "fitted" in done.stdout
    data = json.loads(out.read_text())
    assert data["emulated"] is True and data["profiles"]["h100-sxm"]["summary"]["fitted"] == 3
    bad = subprocess.run([sys.executable, "-m", "camel_vllm", "fidelity", "--device-profile", "nope"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "unknown device profile" in bad.stderr


def test_docs_fidelity_table_is_what_the_command_prints_now() -> None:
    """docs/fidelity.md is the command's output: a profile or data change must regenerate it."""
    from camel_vllm.devices.emulator.fidelity import fidelity_rows, format_rows, summarize
    from camel_vllm.devices.emulator.profiles import available_profiles

    doc = (Path(__file__).resolve().parents[2] / "docs" / "fidelity.md").read_text(encoding="utf-8")
    for name in available_profiles("device"):
        rows = fidelity_rows(load_device_profile(name))
        assert format_rows(rows, markdown=True) in doc, (
            f"docs/fidelity.md is stale for {name}: regenerate it (the header lines, then "
            "`camel-vllm fidelity --markdown`)")
        counts = summarize(rows)
        assert f"{name}: {counts['hold']} of {counts['compared']} compared points" in doc
