"""How every resnet_hub command line behaves: parse, run, and fail with one clear line.

Each command module (``convert``, ``push``, ...) defines ``add_arguments(parser)`` and
``run(args) -> int``; ``scripts/*.py`` and the ``resnet-hub`` subcommands are both built from
those two functions by :func:`main`, so they cannot drift apart.
"""
from __future__ import annotations

import argparse
import sys
from typing import Callable, Sequence

# What a user can cause and fix: bad names, paths, files, hashes, network. A bug (TypeError,
# KeyError, ...) still shows its traceback.
USER_ERRORS = (ValueError, FileNotFoundError, FileExistsError, PermissionError, ConnectionError, TimeoutError,
               ImportError)


class CommandError(Exception):
    """An error whose message is the whole story for the user."""


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows an option's default only when there is one worth reading (not None or False)."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


def call(run: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    try:
        return int(run(args) or 0)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except (CommandError, *USER_ERRORS) as e:
        message = " ".join(str(e).split()) or type(e).__name__
        print(f"error: {message}", file=sys.stderr)
        return 1


def main(add_arguments: Callable[[argparse.ArgumentParser], None], run: Callable[[argparse.Namespace], int],
         description: str, argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    parser = argparse.ArgumentParser(prog=prog, description=description,
                                     formatter_class=HelpFormatter)
    add_arguments(parser)
    return call(run, parser.parse_args(argv))
