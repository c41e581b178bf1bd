"""`python -m bench ingest|queries|players|fanout|bus|cpu|settle|auth`: benchmarks against the real Cassandra node; tables on stdout, JSON in bench/results."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from bench import auth, bus, cpu, fanout, ingest, players, queries, settle
from bench.common import BenchError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description="player-session-service benchmarks")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (ingest, queries, players, fanout, bus, cpu, settle, auth):
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args))
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
