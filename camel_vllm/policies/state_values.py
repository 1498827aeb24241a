"""Checks of the values a policy reads from a learned-state file, each failure naming its field.

A state file whose checksum matches can still hold values no run could have learned (a
negative count, a statistic of 1e308): loaded as they are, they fail later, inside a
decision. Every ``load_state_dict`` reads its values through these helpers, so such a file
is refused at load with one :class:`BadStateValue` naming the field and what is wrong
(``workload.prompts[0] = -5 must be >= 0``), and :mod:`camel_vllm.control.state` moves it aside
as corrupt. A component names its own fields; :func:`under` puts the name of the part that
holds it in front (``board.time.xty[0]``). :func:`check_statistics` checks that regression sums
(``X' W X``, ``X' W y``, ``y' W y``) are ones data could have made.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

#: The largest magnitude a learned statistic may have. Far above any real one (the board
#: model's sums over ~1e4 iterations of squared, 1/y-scaled work terms stay below ~1e16) and
#: far below overflow when two are multiplied.
MAX_MAGNITUDE = 1e100

#: Relative rounding allowed when loaded sums of data are checked (symmetry, semi-definiteness,
#: Cauchy-Schwarz): sums of ~1e4 rows in float64 round far less.
STAT_TOLERANCE = 1e-9

_MISSING = object()


class BadStateValue(ValueError):
    """A learned-state value is missing, of the wrong type or shape, not finite or out of range."""

    def __init__(self, field: str, why: str) -> None:
        super().__init__(f"{field} {why}")
        self.field = field
        self.why = why


@contextmanager
def under(prefix: str) -> Iterator[None]:
    """Name the fields checked inside with ``prefix.`` in front; a key missing from the state
    or a value that cannot be read at all is a :class:`BadStateValue` of ``prefix`` too."""
    try:
        yield
    except BadStateValue as err:
        raise BadStateValue(f"{prefix}.{err.field}", err.why) from None
    except KeyError as err:
        raise BadStateValue(f"{prefix}.{err.args[0]}", "is missing") from None
    except (TypeError, ValueError, IndexError) as err:
        raise BadStateValue(prefix, f"cannot be read ({err})") from None


def item(state: Mapping[str, Any], key: str, default: Any = _MISSING) -> Any:
    """``state[key]`` (``default`` when given and the key is absent), or a BadStateValue."""
    if not isinstance(state, Mapping):
        raise BadStateValue(key, f"is inside {type(state).__name__}, not an object")
    if key in state:
        return state[key]
    if default is _MISSING:
        raise BadStateValue(key, "is missing")
    return default


def _show(value: Any) -> str:
    text = repr(float(value)) if isinstance(value, np.floating) else repr(value)
    return text if len(text) <= 40 else f"{text[:20]}...({len(text)} characters)"


def check_number(value: Any, field: str, *, low: float | None = 0.0, high: float = MAX_MAGNITUDE,
                 integer: bool = False) -> float:
    """``value`` as a float: a finite number in ``[low, high]`` (a whole number if ``integer``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise BadStateValue(field, f"= {_show(value)} is not a number")
    try:
        number = float(value)
    except OverflowError:  # an integer beyond any float
        number = math.inf
    if not math.isfinite(number):
        raise BadStateValue(field, f"= {_show(value)} is not finite")
    if integer and not number.is_integer():
        raise BadStateValue(field, f"= {_show(value)} is not a whole number")
    if low is not None and number < low:
        raise BadStateValue(field, f"= {_show(value)} must be >= {low:g}")
    if number > high:
        raise BadStateValue(field, f"= {_show(value)} must be <= {high:g}")
    if low is None and number < -high:
        raise BadStateValue(field, f"= {_show(value)} must be >= {-high:g}")
    return number


def number(state: Mapping[str, Any], key: str, *, default: Any = _MISSING, low: float | None = 0.0,
           high: float = MAX_MAGNITUDE) -> float:
    """``state[key]`` checked by :func:`check_number` (``low=None``: any sign, |x| <= ``high``)."""
    return check_number(item(state, key, default), key, low=low, high=high)


def count(state: Mapping[str, Any], key: str, *, default: Any = _MISSING, high: float = MAX_MAGNITUDE) -> int:
    """``state[key]``: a whole number in [0, ``high``]."""
    return int(check_number(item(state, key, default), key, integer=True, high=high))


def array(value: Any, field: str, shape: tuple[int, ...], *, low: float | None = None,
          high: float = MAX_MAGNITUDE) -> np.ndarray:
    """``value`` as a float array of ``shape`` whose entries are finite and in range (``low``
    None: |x| <= ``high``). The first bad entry is named with its index: ``xty[3] = ...``."""
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, (Sequence, np.ndarray)):
        raise BadStateValue(field, f"= {_show(value)} is not a list of numbers")
    try:
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError, OverflowError):
        arr = None
    if not _all_numbers(value):
        raise BadStateValue(field, "holds something other than numbers")
    if arr is None or arr.dtype != float:
        raise BadStateValue(field, "is not a list of numbers with rows of equal length")
    if arr.shape != shape:
        raise BadStateValue(field, f"has shape {arr.shape}, expected {shape}")
    floor = -high if low is None else low
    bad = ~np.isfinite(arr) | (arr < floor) | (arr > high)
    if bad.any():
        index = tuple(int(i) for i in np.argwhere(bad)[0])
        at = f"{field}[{', '.join(map(str, index))}]"
        check_number(float(arr[index]), at, low=low, high=high)
    return arr


def _all_numbers(value: Any) -> bool:
    """Every leaf of nested lists is a number (numpy would also turn "1.5" and True into floats)."""
    if isinstance(value, np.ndarray):
        return value.dtype.kind in "fiu"
    if isinstance(value, (list, tuple)):
        return all(_all_numbers(v) for v in value)
    return not isinstance(value, bool) and isinstance(value, (int, float, np.integer, np.floating))


def check_statistics(xtx: np.ndarray, xty: np.ndarray, yty: float | None, *, names: tuple[str, str] = ("xtx", "xty")
                     ) -> None:
    """Raise :class:`BadStateValue` unless ``xtx`` (symmetric, positive semi-definite) and ``xty``
    are sums data with weights >= 0 could have made, together with ``yty`` (None: not kept, no
    Cauchy-Schwarz check); a relative tolerance of STAT_TOLERANCE for rounding. ``names``: the
    fields of ``xtx`` and ``xty`` in the state (for the message)."""
    a, b = names
    scale = float(np.abs(xtx).max(initial=0.0))
    asym = np.abs(xtx - xtx.T) > STAT_TOLERANCE * scale
    if asym.any():
        i, j = (int(k) for k in np.argwhere(asym)[0])
        raise BadStateValue(f"{a}[{i}, {j}]", f"= {float(xtx[i, j])!r} differs from {a}[{j}, {i}] = "
                                              f"{float(xtx[j, i])!r} (must be symmetric)")
    diag = np.diag(xtx)
    if (diag < 0).any():
        i = int(np.argmax(diag < 0))
        raise BadStateValue(f"{a}[{i}, {i}]", f"= {float(diag[i])!r} must be >= 0")
    lowest = float(np.linalg.eigvalsh(xtx).min()) if xtx.size else 0.0
    if lowest < -STAT_TOLERANCE * scale:
        raise BadStateValue(a, f"is not positive semi-definite (an eigenvalue is {lowest:.6g})")
    if yty is None:
        return
    bound = np.sqrt(diag * yty) * (1.0 + STAT_TOLERANCE) + STAT_TOLERANCE * math.sqrt(scale * yty)
    over = np.abs(xty) > bound
    if over.any():
        j = int(np.argmax(over))
        raise BadStateValue(f"{b}[{j}]", f"= {float(xty[j])!r} exceeds sqrt({a}[{j}, {j}] * yty) = "
                                         f"{float(np.sqrt(diag[j] * yty)):.6g}, which no data can")
