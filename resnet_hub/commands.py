"""How every resnet_hub command line behaves: parse, run, and fail with one clear line.

Each command module (``convert``, ``push``, ...) defines ``add_arguments(parser)`` and
``run(args) -> int``; ``scripts/*.py`` and the ``resnet-hub`` subcommands are both built from
those two functions by :func:`main`, so they cannot drift apart.
"""
from __future__ import annotations

import argparse
import math
import os
import re
import sys
from typing import Callable, Sequence

# What a user can cause and fix: bad names, paths, files, hashes, network. A bug (TypeError,
# KeyError, ...) still shows its traceback.
USER_ERRORS = (ValueError, FileNotFoundError, FileExistsError, PermissionError, ConnectionError, TimeoutError,
               ImportError)


class CommandError(Exception):
    """An error whose message is the whole story for the user."""


# a Hugging Face token (hf_ and 30-odd letters; shorter ones are scrubbed too, a typo is still a secret)
_TOKEN = re.compile(r"(?<![A-Za-z0-9])hf_[A-Za-z0-9]{4,}")


def redact(message: str) -> str:
    """``message`` with anything that looks like a Hugging Face token, and ``$HF_TOKEN``'s value, replaced by
    ``hf_***``: an error line may quote what the user typed, and a token typed in the wrong place is still secret."""
    secret = os.environ.get("HF_TOKEN")
    if secret and len(secret) >= 8:
        message = message.replace(secret, "hf_***")
    return _TOKEN.sub("hf_***", message)


# argparse ``type=`` functions for numbers: "not given" is the flag's default (None where the value
# comes from elsewhere, e.g. the recipe), never 0; a 0 or a negative that means nothing is refused
# by argparse as one line naming the flag ("argument --epochs: must be at least 1, got 0").


def _number(parse: Callable[[str], float], low: float, inclusive: bool, what: str, below: float | None = None):
    def check(text: str):
        try:
            value = parse(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not math.isfinite(value):  # nan, inf
            raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
        if value < low if inclusive else value <= low:
            bound = f"at least {low:g}" if inclusive else f"greater than {low:g}"
            raise argparse.ArgumentTypeError(f"must be {bound}, got {text}")
        if below is not None and value >= below:
            raise argparse.ArgumentTypeError(f"must be less than {below:g}, got {text}")
        return value

    check.__name__ = what  # argparse names the type in "invalid <name> value" messages
    return check


positive_int = _number(int, 1, True, "a positive integer")
non_negative_int = _number(int, 0, True, "a non-negative integer")
positive_float = _number(float, 0.0, False, "a positive number")
non_negative_float = _number(float, 0.0, True, "a non-negative number")
fraction = _number(float, 0.0, True, "a number in [0, 1)", below=1.0)  # a probability of dropping, say


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows an option's default only when there is one worth reading (not None or False)."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


class ArgumentParser(argparse.ArgumentParser):
    """argparse with the commands' error format: one line, ``error: ...``, exit status 2."""

    def error(self, message: str):
        self.exit(2, f"error: {redact(' '.join(message.split()))} (see {self.prog} --help)\n")


def call(run: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    try:
        return int(run(args) or 0)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except (CommandError, *USER_ERRORS) as e:
        message = " ".join(str(e).split()) or type(e).__name__
        print(f"error: {redact(message)}", file=sys.stderr)
        return 1


def main(add_arguments: Callable[[argparse.ArgumentParser], None], run: Callable[[argparse.Namespace], int],
         description: str, argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    parser = ArgumentParser(prog=prog, description=description, formatter_class=HelpFormatter)
    add_arguments(parser)
    return call(run, parser.parse_args(argv))
