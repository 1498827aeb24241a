"""The request log: one JSON line per finished request, written off the engine loop.

:class:`RequestLog` is a :class:`~camel_vllm.control.controller.ControllerListener`. ``on_outcome``
runs on the engine loop, so it only builds a small dict and offers it to a bounded queue
(``put_nowait``); a writer thread serialises and writes. When the queue is full the record
is dropped and counted (``dropped``), never waited for: a slow disk must not stall
scheduling. The count is logged on :meth:`RequestLog.close` and written as the last line
(``{"type": "summary", ...}``), which readers skip (they keep ``"type": "request"``).

Rotation by size, like :class:`logging.handlers.RotatingFileHandler`: when the file passes
``max_bytes`` it becomes ``PATH.1`` (``PATH.1`` becomes ``PATH.2``, ...) and at most
``backups`` old files are kept. :func:`read_request_log` reads a file and, with
``include_rotated``, its rotated predecessors oldest first.

Record fields (units in names): ``request_id``, ``arrival_s``, ``first_token_s``,
``finish_s``, ``latency_s``, ``ttft_s``, ``prompt_tokens``, ``output_tokens``, ``arms``
(arm label -> share of the request's scheduled tokens, summed over contexts),
``contexts`` (context id -> share), ``energy_j``, ``edp_js``, ``cost``,
``iteration_shares`` (sum over the iterations that served the request of its share of each
iteration's tokens: the concurrency term of :mod:`camel_vllm.offline.energy_model`), ``mean_batch``
(``output_tokens / iteration_shares``: about the harmonic mean of the requests in its decode
steps), both absent from logs older than the fields, ``emulated``,
``device`` (kind), ``device_profile``, ``model_profile``. Times are on the adapter's clock
(vLLM: ``time.time()``; simulator: virtual seconds).
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
from typing import Any, Iterator, Sequence

from camel_vllm.control.controller import Decision
from camel_vllm.core.events import RequestOutcome
from camel_vllm.devices.base import DeviceInfo

logger = logging.getLogger("vllm.camel")

#: Default rotation size: 64 MiB is about 150k records (~450 B each), hours of a busy edge box.
DEFAULT_MAX_BYTES = 64 * 1024 * 1024
#: Rotated files kept besides the live one.
DEFAULT_BACKUPS = 3
#: Records buffered between the engine loop and the writer; at ~450 B each, ~4.5 MB at most.
DEFAULT_QUEUE_SIZE = 10_000

_STOP = object()


class RequestLog:
    """A :class:`~camel_vllm.control.controller.ControllerListener` writing finished requests as JSONL.

    ``arm_labels[i]`` names arm ``i`` (``controller.arms[i].label``, e.g. ``"816/20"``);
    without it arms are written as ``"arm<i>"``.
    """

    def __init__(
        self,
        path: str,
        *,
        device_info: DeviceInfo,
        arm_labels: Sequence[str] | None = None,
        max_bytes: int = DEFAULT_MAX_BYTES,
        backups: int = DEFAULT_BACKUPS,
        queue_size: int = DEFAULT_QUEUE_SIZE,
    ) -> None:
        if max_bytes <= 0:
            raise ValueError(f"request log {path}: max_bytes must be > 0, got {max_bytes}")
        if backups < 0:
            raise ValueError(f"request log {path}: backups must be >= 0, got {backups}")
        self.path = path
        self.max_bytes = max_bytes
        self.backups = backups
        self.arm_labels = list(arm_labels) if arm_labels is not None else None
        self.written = 0
        self.dropped = 0
        self.rotations = 0
        self.write_errors = 0
        self._static = {
            "emulated": device_info.emulated,
            "device": device_info.kind,
            "device_profile": device_info.profile,
            "model_profile": device_info.extra.get("model_profile"),
        }
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max(1, queue_size))
        self._file = open(path, "a", encoding="utf-8")
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="camel-request-log", daemon=True)
        self._thread.start()

    # ------------------------------------------------------- listener (engine loop)
    def on_decision(self, decision: Decision) -> None:
        return None

    def on_device_error(self, kind: str) -> None:
        return None

    def on_outcome(self, outcome: RequestOutcome) -> None:
        """Queue the outcome; drop and count it if the writer is behind. Never blocks."""
        if self._closed:
            self.dropped += 1
            return
        try:
            self._queue.put_nowait(outcome)
        except queue.Full:
            self.dropped += 1

    def close(self) -> None:
        """Write everything queued, the summary line, and close the file. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(_STOP)  # blocking is fine here: we are shutting down
        self._thread.join()
        summary = {"type": "summary", "written": self.written, "dropped": self.dropped,
                   "rotations": self.rotations, "write_errors": self.write_errors}
        self._write_line(json.dumps(summary))
        self._file.close()
        if self.dropped:
            logger.warning("camel: request log %s dropped %d records (writer behind)", self.path, self.dropped)
        logger.info("camel: request log %s: %d records written", self.path, self.written)

    # ---------------------------------------------------------------- writer thread
    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                break
            try:
                self._write_line(json.dumps(self.record(item)))
                self.written += 1
            except (TypeError, ValueError):
                logger.exception("camel: request log: cannot serialise a record")
                self.write_errors += 1
            if self._queue.empty():
                self._flush()

    def _flush(self) -> None:
        try:
            self._file.flush()
        except OSError:
            self.write_errors += 1

    def _write_line(self, line: str) -> None:
        try:
            if self._file.tell() + len(line) + 1 > self.max_bytes and self._file.tell() > 0:
                self._rotate()
            self._file.write(line + "\n")
        except OSError as err:
            self.write_errors += 1
            if self.write_errors == 1:
                logger.warning("camel: request log %s: write failed: %s", self.path, err)

    def _rotate(self) -> None:
        self._file.close()
        if self.backups == 0:
            os.remove(self.path)
        else:
            for i in range(self.backups - 1, 0, -1):
                src = f"{self.path}.{i}"
                if os.path.exists(src):
                    os.replace(src, f"{self.path}.{i + 1}")
            os.replace(self.path, f"{self.path}.1")
        self._file = open(self.path, "a", encoding="utf-8")
        self.rotations += 1

    # ------------------------------------------------------------------- records
    def record(self, outcome: RequestOutcome) -> dict[str, Any]:
        """The JSON-ready record of one outcome (see the module docstring for fields)."""
        request = outcome.request
        arms: dict[str, float] = {}
        contexts: dict[str, float] = {}
        for (context, arm_index), share in outcome.arm_shares.items():
            label = self._label(arm_index)
            arms[label] = arms.get(label, 0.0) + share
            cid = str(context.id)
            contexts[cid] = contexts.get(cid, 0.0) + share
        return {
            "type": "request",
            "request_id": request.request_id,
            "arrival_s": request.arrival_s,
            "first_token_s": request.first_token_s,
            "finish_s": request.finish_s,
            "latency_s": request.latency_s,
            "ttft_s": request.ttft_s,
            "prompt_tokens": request.prompt_tokens,
            "output_tokens": request.output_tokens,
            "arms": {k: round(v, 6) for k, v in arms.items()},
            "contexts": {k: round(v, 6) for k, v in contexts.items()},
            "energy_j": outcome.energy_j,
            "edp_js": outcome.edp_js,
            "cost": outcome.cost,
            "energy_measured": outcome.energy_measured,
            "iteration_shares": None if outcome.iteration_shares is None else round(outcome.iteration_shares, 6),
            "mean_batch": None if (mb := outcome.mean_batch) is None else round(mb, 4),
            **self._static,
        }

    def _label(self, arm_index: int) -> str:
        if self.arm_labels is not None and 0 <= arm_index < len(self.arm_labels):
            return self.arm_labels[arm_index]
        return f"arm{arm_index}"


def rotated_paths(path: str) -> list[str]:
    """``PATH`` and its rotated files that exist, oldest first (``PATH.3``, ..., ``PATH``)."""
    olds = []
    i = 1
    while os.path.exists(f"{path}.{i}"):
        olds.append(f"{path}.{i}")
        i += 1
    return list(reversed(olds)) + ([path] if os.path.exists(path) else [])


def read_request_log(path: str, *, include_rotated: bool = False) -> Iterator[dict[str, Any]]:
    """Yield the request records of a log (summary lines skipped).

    A line that is not JSON raises ``ValueError`` naming the file and line number; a
    truncated last line (the process was killed mid-write) is skipped with a warning.
    """
    paths = rotated_paths(path) if include_rotated else [path]
    if not paths:
        raise FileNotFoundError(f"request log {path}: no such file")
    for name in paths:
        with open(name, encoding="utf-8") as fh:
            lines = fh.readlines()
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as err:
                if number == len(lines) and not line.endswith("\n"):
                    logger.warning("camel: %s:%d: truncated last line skipped", name, number)
                    continue
                raise ValueError(f"{name}:{number}: not a JSON object: {line[:60].strip()!r}") from err
            if not isinstance(rec, dict):
                raise ValueError(f"{name}:{number}: not a JSON object: {line[:60].strip()!r}")
            if rec.get("type", "request") == "request":
                yield rec
