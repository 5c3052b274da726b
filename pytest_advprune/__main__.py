"""Commands that work on stored results without running pytest.

    python -m pytest_advprune merge-reports OUTPUT REPORT.json [REPORT.json ...]

merges the JSON reports of a sharded CI run (``--advprune-shard=K/N --advprune-report=shard-K.json``) into
one report, written as JSON, or as Markdown when OUTPUT ends in ``.md``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path


def main(argv: Sequence[str] | None = None) -> int:
    from pytest_advprune.report import ReportError, merge_reports, write_report

    parser = argparse.ArgumentParser(prog="python -m pytest_advprune", description=(__doc__ or "").split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    merge = commands.add_parser("merge-reports", help="merge the JSON reports of CI shards into one report")
    merge.add_argument("output", type=Path, help="the merged report: .json, or .md for Markdown")
    merge.add_argument("reports", type=Path, nargs="+", help="the shards' JSON reports")
    arguments = parser.parse_args(argv)
    try:
        gate, cells = merge_reports(arguments.reports)
        write_report(arguments.output, cells, gate)
    except ReportError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        print(f"error: cannot write {arguments.output}: {error.strerror or error}", file=sys.stderr)
        return 2
    print(f"merged {len(cells)} cells from {len(arguments.reports)} reports into {arguments.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
