"""Commands that work on stored results without running pytest.

    python -m pytest_advprune report BASELINES_DIR -o report.html      # or .md, .json
    python -m pytest_advprune merge-reports OUTPUT REPORT.json [REPORT.json ...]

``report`` renders the report of the baselines in a folder (the study's tables and figures; see
``reports/stored.py``). ``merge-reports`` merges the JSON reports of a sharded CI run
(``--advprune-shard=K/N --advprune-report=shard-K.json``) into one. Each writes JSON, Markdown (``.md``)
or one self-contained HTML file (``.html``), by the output's suffix.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path


def main(argv: Sequence[str] | None = None) -> int:
    from pytest_advprune.baselines import BaselineFileError
    from pytest_advprune.reports.merge import ReportError, merge_reports
    from pytest_advprune.reports.render import SUFFIXES, write_report
    from pytest_advprune.reports.stored import stored_document

    parser = argparse.ArgumentParser(prog="python -m pytest_advprune", description=(__doc__ or "").split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    report = commands.add_parser("report", help="render the report of stored baselines")
    report.add_argument("baselines", type=Path, help="the baselines folder (e.g. baselines/)")
    report.add_argument("-o", "--output", type=Path, required=True, help="report.html, report.md or report.json")
    report.add_argument("--alpha", type=float, default=0.05, help="1 - the intervals' confidence (default 0.05)")
    report.add_argument(
        "--study-only", action="store_true", help="Markdown: only the study's tables, as in docs/results/study.md"
    )
    merge = commands.add_parser("merge-reports", help="merge the JSON reports of CI shards into one report")
    merge.add_argument("output", type=Path, help="the merged report: .json, .md or .html")
    merge.add_argument("reports", type=Path, nargs="+", help="the shards' JSON reports")
    arguments = parser.parse_args(argv)
    if arguments.output.suffix.lower() not in SUFFIXES:
        parser.error(f"the output {str(arguments.output)!r} must end in .json, .md or .html (the format to write)")
    if arguments.command == "report" and arguments.study_only and arguments.output.suffix.lower() != ".md":
        parser.error(f"--study-only writes Markdown: give an output ending in .md, not {str(arguments.output)!r}")
    if arguments.command == "report" and not 0.0 < arguments.alpha < 1.0:
        parser.error(f"--alpha={arguments.alpha!r} must be between 0 and 1, e.g. 0.05")
    try:
        if arguments.command == "report":
            document = stored_document(arguments.baselines, alpha=arguments.alpha)
            done = f"wrote the report of {len(document['cells'])} stored cells to {arguments.output}"
        else:
            document = merge_reports(arguments.reports)
            done = f"merged {len(document['cells'])} cells from {len(arguments.reports)} reports"
            done += f" into {arguments.output}"
        if arguments.command == "report" and arguments.study_only:
            from pytest_advprune.reports.markdown import study_tables

            arguments.output.write_text("\n".join(study_tables(document["study"])).strip() + "\n", encoding="utf-8")
        else:
            write_report(arguments.output, document)
    except (ReportError, BaselineFileError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        print(f"error: cannot write {arguments.output}: {error.strerror or error}", file=sys.stderr)
        return 2
    print(done)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
