"""Copies of the policy's beliefs, made on the engine thread for readers on other threads.

A policy is only ever called on the engine thread; the metrics (an HTTP thread, a refresh
thread) read these copies instead. A reader's ask (:meth:`PolicySnapshots.read`) is served at
the engine's next step, so copying costs nothing while nobody reads and a decision never pays
for it; the copy is also made when the engine drains and at close, so an idle engine's last
beliefs are the ones shown.
"""

from __future__ import annotations

from dataclasses import dataclass

from camel_vllm.policies.base import ArmEstimate, ModelReadout, Policy


@dataclass(frozen=True)
class PolicySnapshot:
    """What the policy believed at one engine step. ``number`` counts the snapshots made
    before this one (a reader compares it to tell a new snapshot from one it has shown)."""

    number: int
    estimates: tuple[ArmEstimate, ...]
    model: ModelReadout | None


class PolicySnapshots:
    """The latest :class:`PolicySnapshot` and whether a reader wants a fresher one."""

    def __init__(self) -> None:
        self.latest: PolicySnapshot | None = None
        #: A reader asked since the last snapshot (the engine makes one at its next step).
        self.wanted = False
        #: Some reader has ever asked (the engine also makes one as it drains).
        self.read_at_all = False

    def read(self) -> PolicySnapshot | None:
        """The latest snapshot (any thread); asks the engine thread for a fresh one."""
        self.wanted = self.read_at_all = True
        return self.latest

    def take(self, policy: Policy) -> None:
        """Copy the policy's beliefs (engine thread only: the policy is read here)."""
        self.wanted = False
        number = 0 if self.latest is None else self.latest.number + 1
        self.latest = PolicySnapshot(number, tuple(policy.estimates()), policy.model_readout())
