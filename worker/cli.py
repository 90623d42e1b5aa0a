"""The `embedq` command: a thin dispatcher over each area's subcommands."""
from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="embedq", description="Queue-driven CPU embedding service")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    # Each area registers its own commands; heavy imports happen inside handlers.
    from native import commands as native_commands

    native_commands.register(sub)
    from worker import commands as worker_commands

    worker_commands.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
