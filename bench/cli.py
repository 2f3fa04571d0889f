"""Command-line interface (DESIGN.md section 8). User errors: one line on stderr, exit status 2."""

from __future__ import annotations

import argparse
import json
import sys
from importlib.metadata import PackageNotFoundError, version

from bench.errors import UserError

EXIT_USER_ERROR = 2


def _version() -> str:
    try:
        return version("bench")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "unknown"


def cmd_plan(args: argparse.Namespace) -> int:
    import pandas as pd

    from bench.plan import plan_rows
    from bench.spec import load_spec

    spec = load_spec(args.spec)
    rows = plan_rows(spec)
    if args.format == "json":
        json.dump(rows, sys.stdout, indent=2)
        sys.stdout.write("\n")
    elif args.format == "csv":
        pd.DataFrame(rows).to_csv(sys.stdout, index=False)
    else:
        print(f"{spec.name}: {len(rows)} configurations x {len(spec.seeds)} seeds = "
              f"{len(spec.runs())} runs ({spec.dataset.name}, {spec.dataset.clip_seconds} s clips)")
        print(pd.DataFrame(rows).to_string(index=False))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bench",
        description="How much spectrogram resolution does a CNN music tagger need? "
        "Plan, train and report mel-spectrogram resolution grids.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("plan", help="list a spec's configurations with shapes and cost; no data, no training")
    p.add_argument("spec", metavar="SPEC", help="grid spec (TOML), e.g. specs/paper-mtat-vgg.toml")
    p.add_argument("--format", choices=["table", "csv", "json"], default="table")
    p.set_defaults(func=cmd_plan)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except UserError as exc:
        print(f"bench {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except BrokenPipeError:  # e.g. `bench plan ... | head`
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
