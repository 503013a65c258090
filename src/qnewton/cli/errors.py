"""User errors on the command line: a message that names the flag and what is allowed."""

from __future__ import annotations

import argparse
import re
from collections.abc import Mapping


class CLIError(ValueError):
    """A command-line argument is invalid; the message names it and what is allowed."""


#: Library argument names that a command exposes under another flag: ``{library: flag dest}``.
LIBRARY_NAMES = {
    "classical_solvers": "solvers",
    "gate_time_s": "gate_time",
    "max_dense_bytes": "max_block_bytes",
}

# a snake_case name standing on its own (not part of a path, a file name or a flag)
_SNAKE_NAME = re.compile(r"(?<![\w/.'\"-])[a-z][a-z0-9]*(?:_[a-z0-9]+)+(?![\w/-]|\.\w)")


def flag_names(parser: argparse.ArgumentParser) -> dict[str, str]:
    """``{argument name: flag}`` of a (sub)command: each option's dest (``batch_size`` →
    ``--batch-size``), plus the :data:`LIBRARY_NAMES` of the options it has."""
    flags = {}
    for action in parser._actions:
        long = [s for s in action.option_strings if s.startswith("--")]
        if long and action.dest != "help":
            flags[action.dest] = long[0]
    for library, dest in LIBRARY_NAMES.items():
        if dest in flags:
            flags[library] = flags[dest]
    return flags


def as_flag_message(message: str, flags: Mapping[str, str]) -> str:
    """Say ``--batch-size must ...`` where the library says ``batch_size must ...``: validation
    is declared once in the library, with argument names; the CLI speaks in flags.

    ``flags`` are the command's (see :func:`flag_names`): the leading name of
    ``"<name> must ..."`` and any snake_case name in the message (``give at most one of
    prune_ratio and prune_count``) are translated when they name one of its flags, and left
    alone otherwise (no made-up flags).
    """
    match = re.match(r"^([a-z][a-z0-9_]*) must ", message)
    if match and match.group(1) in flags:
        message = flags[match.group(1)] + message[len(match.group(1)):]
    return _SNAKE_NAME.sub(lambda m: flags.get(m.group(0), m.group(0)), message)
