"""Learned policy state on disk: atomic, versioned, refused when it belongs elsewhere.

One JSON file per state path::

    {"format": "camel-vllm-state", "schema": 1,
     "meta": {"policy", "arms" (labels), "cost", "device_kind", "device_profile",
              "device_name", "contextual", "written_by" (the policy's name: "slo+camel-ts"),
              "saved_at"},
     "checksum": sha256 of the canonical policy_state JSON,
     "policy_state": policy.state_dict()}

Saving writes a temporary file in the same folder, fsyncs it and renames it over the old
one (``os.replace`` is atomic on POSIX), so a crash leaves either the old file or the new
one, never a partial file. Loading accepts a file whose policy, arm set, cost and device
kind/profile match; the device *name* may differ, so a state learned on one board
warm-starts another of the same kind. A file that cannot be read back (truncated, not JSON,
bad checksum, or a value the policy refuses: every policy checks each value it loads, see
:mod:`camel_vllm.policies.state_values`) is moved aside as ``<path>.corrupt-<timestamp>``; a
well-formed file made for something else (another schema, policy, or inner policy of ``slo``,
arm set, cost, device kind, or number of load contexts: saved with ``contextual`` on, loaded
with it off) as ``<path>.foreign-<timestamp>``. Either way one warning is logged and learning
starts fresh.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import time
from typing import Any, Callable

from camel_vllm.core.arms import ArmSet
from camel_vllm.core.config import CamelConfig
from camel_vllm.core.errors import CamelError
from camel_vllm.devices.base import DeviceInfo
from camel_vllm.policies.base import Policy

logger = logging.getLogger("vllm.camel")

STATE_FORMAT = "camel-vllm-state"
#: Bump when the file layout or any policy's state_dict changes incompatibly.
SCHEMA_VERSION = 1
#: Metadata keys that must match for a state to be loaded (device_name may differ).
MATCH_KEYS = ("policy", "arms", "cost", "device_kind", "device_profile")


class StateFileError(CamelError):
    """A state file was refused. ``kind`` is "corrupt" or "foreign"."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


class PolicyStateStore:
    """Saves and loads one policy's learned state at ``path``."""

    def __init__(
        self,
        path: str,
        *,
        config: CamelConfig,
        arms: ArmSet,
        device_info: DeviceInfo,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = os.path.abspath(path)
        self.clock = clock
        cost = config.cost if config.cost != "weighted" else f"weighted(alpha={config.alpha:g})"
        self.meta: dict[str, Any] = {
            "policy": config.policy,
            "arms": [arm.label for arm in arms.arms],
            "cost": cost,
            "device_kind": device_info.kind,
            "device_profile": device_info.profile,
            "device_name": device_info.name,
            "contextual": config.contextual,
        }
        self.saves = 0
        #: What the last :meth:`load_into` did, in one line (None: not called yet).
        self.load_outcome: str | None = None

    # ------------------------------------------------------------------- save
    def save(self, policy: Policy) -> None:
        """Write the policy's state atomically. Raises OSError if the folder refuses."""
        state = policy.state_dict()
        payload = {
            "format": STATE_FORMAT,
            "schema": SCHEMA_VERSION,
            "meta": {**self.meta, "written_by": str(policy.name), "saved_at": self.clock()},
            "checksum": _checksum(state),
            "policy_state": state,
        }
        data = json.dumps(payload, allow_nan=False).encode("utf-8")
        folder = os.path.dirname(self.path) or "."
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(self.path)}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
        _fsync_folder(folder)
        self.saves += 1

    # ------------------------------------------------------------------- load
    def load_into(self, policy: Policy) -> bool:
        """Load a matching state into ``policy``. False (and learning starts fresh) when
        there is no file, or the file was moved aside as corrupt or foreign."""
        if not os.path.exists(self.path):
            logger.info("camel: no learned state at %s; starting fresh", self.path)
            self.load_outcome = f"started cold (no learned state at {self.path} yet)"
            return False
        try:
            state, meta = self._read()
            fresh = policy.state_dict()
            self._check_policy(state, meta, policy, fresh)
            self._check_shape(state, meta, fresh)
            try:
                policy.load_state_dict(state)
            except (ValueError, KeyError, TypeError, IndexError, AttributeError, ArithmeticError) as err:
                raise StateFileError("corrupt", f"policy rejected the state ({err})") from err
        except StateFileError as err:
            moved = self._move_aside(err.kind)
            logger.warning("camel: learned state %s is %s (%s); moved to %s, learning starts fresh",
                           self.path, err.kind, err.reason, moved)
            self.load_outcome = (f"started cold: the learned state in {self.path} is {err.kind} ({err.reason}), "
                                 f"moved to {moved}")
            return False
        except OSError as err:
            logger.warning("camel: cannot read learned state %s (%s); learning starts fresh", self.path, err)
            self.load_outcome = f"started cold: cannot read the learned state in {self.path} ({err})"
            return False
        if meta.get("device_name") != self.meta["device_name"]:
            logger.info("camel: warm-starting from state learned on %s (same kind %s, profile %s)",
                        meta.get("device_name"), self.meta["device_kind"], self.meta["device_profile"])
        else:
            logger.info("camel: loaded learned state from %s", self.path)
        self.load_outcome = f"started from the learned state in {self.path}"
        return True

    def _check_policy(self, state: dict[str, Any], meta: dict[str, Any], policy: Policy,
                      fresh: dict[str, Any]) -> None:
        """A state another policy wrote is foreign, not corrupt, also where ``meta.policy``
        matches (``slo`` around another inner policy): by the name the file records, and in a
        file without it by the kind of state each level holds."""
        theirs = meta.get("written_by")
        if theirs is not None and theirs != policy.name:
            raise StateFileError("foreign", f"written by policy {theirs}, this run is {policy.name}")
        their_kinds, our_kinds = _kinds(state), _kinds(fresh)
        if their_kinds != our_kinds:
            raise StateFileError("foreign", f"holds a {'/'.join(their_kinds)} state, this run's policy {policy.name} "
                                            f"keeps a {'/'.join(our_kinds)} state")

    def _check_shape(self, state: dict[str, Any], meta: dict[str, Any], fresh: dict[str, Any]) -> None:
        """A state learned over another number of load contexts (saved with ``contextual``
        on, loaded with it off, or the reverse) is foreign, not corrupt: compared with the
        fresh policy's own ``num_contexts`` (in ``fresh``, its state) before the policy is asked
        to load it."""
        theirs = state.get("num_contexts")
        if theirs is None:
            return
        ours = fresh.get("num_contexts")
        if ours is None or theirs == ours:
            return
        saved = f", saved with contextual: {json.dumps(meta['contextual'])}" if "contextual" in meta else ""
        raise StateFileError("foreign", f"learned over {theirs} load contexts{saved}; this run has {ours} "
                                        f"(contextual: {json.dumps(self.meta['contextual'])})")

    def _read(self) -> tuple[dict[str, Any], dict[str, Any]]:
        with open(self.path, "rb") as fh:
            raw = fh.read()
        try:
            payload = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise StateFileError("corrupt", f"not valid JSON: {err}") from err
        if not isinstance(payload, dict) or payload.get("format") != STATE_FORMAT:
            raise StateFileError("foreign" if isinstance(payload, dict) else "corrupt",
                                 f"not a {STATE_FORMAT} file")
        if payload.get("schema") != SCHEMA_VERSION:
            raise StateFileError("foreign", f"schema {payload.get('schema')!r}, expected {SCHEMA_VERSION}")
        meta, state = payload.get("meta"), payload.get("policy_state")
        if not isinstance(meta, dict) or not isinstance(state, dict):
            raise StateFileError("corrupt", "missing meta or policy_state")
        try:
            checksum = _checksum(state)
        except ValueError as err:  # NaN or Infinity: json reads them, no state holds them
            raise StateFileError("corrupt", f"policy_state holds a number JSON does not allow ({err})") from err
        if payload.get("checksum") != checksum:
            raise StateFileError("corrupt", "checksum mismatch")
        for key in MATCH_KEYS:
            if meta.get(key) != self.meta[key]:
                theirs = meta.get(key)
                if key == "policy":
                    raise StateFileError("foreign", f"written by policy {theirs}, this run is {self.meta[key]}")
                if key == "arms" and isinstance(theirs, list):
                    theirs = f"{len(theirs)} arms"
                    ours = f"{len(self.meta['arms'])} arms (or different labels)"
                else:
                    ours = self.meta[key]
                raise StateFileError("foreign", f"{key} is {theirs!r}, this run has {ours!r}")
        return state, meta

    def _move_aside(self, kind: str) -> str:
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(self.clock()))
        target = f"{self.path}.{kind}-{stamp}"
        n = 1
        while os.path.exists(target):
            n += 1
            target = f"{self.path}.{kind}-{stamp}-{n}"
        os.replace(self.path, target)
        return target


def _kinds(state: Any) -> tuple[str, ...]:
    """The kind of state at each level: ``("model-based",)``, ``("slo", "nig-thompson")``."""
    if not isinstance(state, dict):
        return ("none",)
    if state.get("policy") == "slo":
        return ("slo", *_kinds(state.get("inner")))
    return (str(state.get("kind", "unnamed")),)


def _checksum(state: Any) -> str:
    canonical = json.dumps(state, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _fsync_folder(folder: str) -> None:
    """Make the rename durable (best effort: not every platform can open a folder)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
