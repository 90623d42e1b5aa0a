"""`embedq COMMAND ...`: the parser and the dispatcher; commands live in models, service, http_cmd,
jobs_cmd, bench."""
from __future__ import annotations

import argparse
import sys

from . import bench, http_cmd, jobs_cmd, models, service


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="embedq", description="Queue-driven CPU embedding service")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for area in (models, service, http_cmd, jobs_cmd, bench):
        area.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
