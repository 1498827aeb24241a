"""Old option names that keep working: each use says on stderr, in one line, which name replaces it.

``add_deprecated_alias(parser, "--device", "--device-profile")`` after ``--device-profile`` is
added: ``--device X`` then stores into ``--device-profile``'s destination exactly as that option
would (same type, choices, nargs; appended where it appends, so a repeatable option stays
repeatable), and prints ``camel-vllm bench sim: --device is deprecated, use --device-profile``
(the parser's ``prog``, once per parse). The alias is left out of ``--help``.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, Sequence


def notice(prog: str, old: str, new: str) -> None:
    """Print the one-line deprecation notice on stderr."""
    print(f"{prog}: {old} is deprecated, use {new}", file=sys.stderr)


class DeprecatedAlias(argparse.Action):
    """Store (or append) like the option ``replacement`` names, after a deprecation notice."""

    def __init__(self, option_strings: Sequence[str], dest: str, *, replacement: str, append: bool = False,
                 prog: str = "camel-vllm", **kwargs: Any) -> None:
        kwargs["default"] = argparse.SUPPRESS  # never overwrite the new option's default
        kwargs.setdefault("help", argparse.SUPPRESS)
        super().__init__(option_strings, dest, **kwargs)
        self.replacement = replacement
        self.append = append
        self.prog = prog

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        noted: set[str | None] = getattr(namespace, "_deprecations_noted", set())
        if option_string not in noted:
            notice(self.prog, option_string or self.option_strings[0], self.replacement)
            noted.add(option_string)
            namespace._deprecations_noted = noted
        if self.append:
            items = list(getattr(namespace, self.dest, None) or [])
            items.append(values)
            values = items
        setattr(namespace, self.dest, values)


def add_deprecated_alias(parser: argparse.ArgumentParser, old: str, new: str) -> argparse.Action:
    """Make ``old`` a deprecated spelling of the already-added option ``new``; returns the alias action.

    The alias takes ``new``'s destination, ``type``, ``choices``, ``nargs`` and ``metavar``; an
    ``append`` option's alias appends. Only ``store`` and ``append`` options can have an alias.
    """
    target = next((a for a in parser._actions if new in a.option_strings), None)
    if target is None:
        raise ValueError(f"add_deprecated_alias: {new} is not an option of {parser.prog}")
    append = isinstance(target, argparse._AppendAction)
    if not append and not isinstance(target, argparse._StoreAction):
        raise ValueError(f"add_deprecated_alias: {new} is a {type(target).__name__}; only store/append are aliased")
    return parser.add_argument(
        old, action=DeprecatedAlias, dest=target.dest, replacement=new, append=append, prog=parser.prog,
        # type=None is argparse's own default (no conversion); typeshed's add_argument leaves None out.
        type=target.type,  # type: ignore[arg-type]
        choices=target.choices, nargs=target.nargs, metavar=target.metavar,
    )
