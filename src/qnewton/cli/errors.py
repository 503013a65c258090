"""User errors on the command line: a message that names the flag and what is allowed."""

from __future__ import annotations

import re


class CLIError(ValueError):
    """A command-line argument is invalid; the message names it and what is allowed."""


def as_flag_message(message: str) -> str:
    """Say ``--batch-size must ...`` where the library says ``batch_size must ...``: validation
    is declared once in the library, with argument names; the CLI speaks in flags."""
    match = re.match(r"^([a-z][a-z0-9_]*) must ", message)
    if not match:
        return message
    return "--" + match.group(1).replace("_", "-") + message[len(match.group(1)):]
