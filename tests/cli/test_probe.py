"""camel-vllm probe: reads without writing; --test-switch switches once and restores."""

from __future__ import annotations

import json
from pathlib import Path

from camel_vllm.cli import main
from camel_vllm.testing.fake_sysfs import build_fake_orin_tree


def state(tree) -> tuple:
    paths = (tree.min_freq_path, tree.max_freq_path, tree.governor_path)
    return tuple((p.read_text(), p.stat().st_mtime_ns) for p in paths)


def test_probe_emulated_json_is_labelled(capsys) -> None:
    assert main(["probe", "--device", "emulated", "--json", "--window-s", "0.02"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["kind"] == "emulated" and report["emulated"] is True
    assert report["energy_source"] == "emulated"
    assert report["frequencies_mhz"][-1] == 930.75
    assert report["energy_j"] > 0 and report["power_w"] > 0


def test_probe_jetson_writes_nothing(tmp_path: Path, capsys) -> None:
    tree = build_fake_orin_tree(tmp_path, 6)
    before = state(tree)
    assert main(["probe", "--device", "auto", "--sysfs-root", str(tmp_path), "--rails", "all",
                 "--window-s", "0.05"]) == 0
    out = capsys.readouterr().out
    assert "jetson" in out and "VDD_GPU_SOC, VDD_CPU_CV" in out and "930.75" in out
    assert "13.20 W" in out  # 5.2 + 2.7 + 4.7 + 0.6, NC skipped
    assert state(tree) == before


def test_probe_test_switch_restores(tmp_path: Path, capsys) -> None:
    tree = build_fake_orin_tree(tmp_path, 5)
    assert main(["probe", "--device", "jetson", "--sysfs-root", str(tmp_path), "--test-switch", "--json",
                 "--window-s", "0.02"]) == 0
    report = json.loads(capsys.readouterr().out)
    switch = report["switch_test"]
    assert switch["requested_mhz"] == 930.75 and switch["applied_mhz"] == 930.75
    assert switch["write_to_readback_s"] >= 0
    assert (tree.min_freq(), tree.max_freq(), tree.governor()) == (306000000, 930750000, "nvhost_podgov")


def test_probe_permission_denied_is_reported(tmp_path: Path, capsys) -> None:
    tree = build_fake_orin_tree(tmp_path, 6)
    tree.fail(tree.max_freq_path, write="EACCES")
    tree.fail(tree.min_freq_path, write="EACCES")
    assert main(["probe", "--device", "jetson", "--sysfs-root", str(tmp_path), "--test-switch", "--json",
                 "--window-s", "0.02"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["permissions"]["can_write_frequency"] is False
    assert "udev" in report["switch_test"]["error"]


def test_probe_bad_rail_is_one_line(tmp_path: Path, capsys) -> None:
    build_fake_orin_tree(tmp_path, 6)
    assert main(["probe", "--device", "jetson", "--sysfs-root", str(tmp_path), "--rails", "VDD_X"]) == 2
    out = capsys.readouterr().err.strip()  # errors go to stderr, as in every other command
    assert "\n" not in out and "rails" in out and "VDD_X" in out
