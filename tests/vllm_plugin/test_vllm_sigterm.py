"""SIGTERM to ``camel-vllm serve`` puts a (fake-sysfs) Jetson's GPU clock back.

The fake AGX Orin tree (``camel_vllm.testing.fake_sysfs``) starts with the governor
``nvhost_podgov`` and min/max at the lowest/highest step. With the ``default`` policy the
controller pins the highest frequency (min = max) at its first decision; after SIGTERM the
files must read exactly what they read before the server started.
"""

from __future__ import annotations

import json

from camel_vllm.testing.fake_sysfs import build_fake_orin_tree
from camel_vllm.testing.vllm_server import completion, start_server


def test_sigterm_restores_jetson_clock(tiny_model_dir, tmp_path):
    tree = build_fake_orin_tree(tmp_path / "board", jetpack=6)
    before = (tree.min_freq(), tree.max_freq(), tree.governor())
    config = {"camel": {"device": "jetson", "sysfs_root": str(tree.root), "policy": "default"}}
    args = ["--scheduler", "camel", "--max-num-seqs", "8", "--additional-config", json.dumps(config)]
    with start_server(tiny_model_dir, args, log_dir=tmp_path) as server:
        response = completion(server, "the clock is pinned while this runs", 8)
        assert response["usage"]["completion_tokens"] == 8
        pinned = (tree.min_freq(), tree.max_freq())
        assert pinned == (max(tree_freqs := tree_frequencies(tree)), max(tree_freqs)), pinned
        assert pinned != before[:2]
        # start_server's exit sends SIGTERM and waits for the process.
    assert server.process.returncode is not None
    after = (tree.min_freq(), tree.max_freq(), tree.governor())
    assert after == before, server.log()[-3000:]


def tree_frequencies(tree) -> list[int]:
    return [int(v) for v in (tree.devfreq / "available_frequencies").read_text().split()]
