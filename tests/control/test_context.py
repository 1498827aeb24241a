"""The context model: buckets, smoothing of load, non-contextual mode."""

from __future__ import annotations

from camel_vllm.control.context import ContextBuckets, ContextModel
from camel_vllm.core.events import EngineSnapshot


def snap(t: float, running: int, waiting: int = 0, prompt: int = 0) -> EngineSnapshot:
    return EngineSnapshot(now_s=t, num_running=running, num_waiting=waiting, waiting_prompt_tokens=prompt)


def test_non_contextual_is_always_context_zero() -> None:
    model = ContextModel(contextual=False, max_batch=28)
    assert model.num_contexts == 1
    assert model.context(snap(0.0, 28, 40, 40 * 2000)).id == 0


def test_load_and_prompt_buckets() -> None:
    buckets = ContextBuckets(load_half_life_s=0.0)
    model = ContextModel(contextual=True, max_batch=28, buckets=buckets)
    assert model.num_contexts == 6
    assert model.context(snap(0.0, 2)).id == 0  # load 0.07, short prompts
    assert model.context(snap(1.0, 20)).features == (1.0, 0.0)  # load 0.71
    assert model.context(snap(2.0, 28, 30, 30 * 1000)).features == (2.0, 1.0)  # load 2.07, long prompts
    ids = {model.context(snap(3.0 + i, r, w, w * p)).id
           for i, (r, w, p) in enumerate([(1, 0, 0), (20, 0, 0), (28, 20, 100),
                                          (1, 1, 900), (20, 1, 900), (28, 20, 900)])}
    assert ids == set(range(6))


def test_load_is_smoothed_so_one_noisy_snapshot_does_not_flip_the_context() -> None:
    model = ContextModel(contextual=True, max_batch=28, buckets=ContextBuckets(load_half_life_s=2.0))
    for i in range(20):
        assert model.context(snap(i * 0.1, 4)).features[0] == 0.0
    # One spike (load 1.0) 0.1 s later: the smoothed load stays in the low bucket.
    assert model.context(snap(2.1, 28)).features[0] == 0.0
    # Sustained high load moves the context within a few half-lives.
    features = [model.context(snap(2.2 + i * 0.5, 24)).features[0] for i in range(20)]
    assert features[-1] == 1.0
    assert features.index(1.0) <= 8


def test_the_prompt_mix_of_recent_arrivals_decays() -> None:
    """With nobody waiting the prompt bucket is the recent arrivals' (half-life 10 s): a minute of
    short prompts, then long ones, and the long bucket within about one half-life."""
    model = ContextModel(contextual=True, max_batch=28)
    for i in range(60):
        model.request_arrived(float(i), 100)
    assert model.context(EngineSnapshot(now_s=60.0, num_running=1, num_waiting=0)).features[1] == 0.0
    for i in range(3):
        model.request_arrived(61.0 + i, 2000)
    assert model.context(EngineSnapshot(now_s=64.0, num_running=1, num_waiting=0)).features[1] == 0.0
    for i in range(10):
        model.request_arrived(64.0 + i, 2000)
    assert model.context(EngineSnapshot(now_s=74.0, num_running=1, num_waiting=0)).features[1] == 1.0
