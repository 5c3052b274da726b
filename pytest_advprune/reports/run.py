"""The controller's side of a run: write accepted baselines (the one writer, also under xdist), find
unused baselines, and print the summary.

Test processes never write baseline files: ``check_baseline`` attaches its verdict, and under
``--update-baselines`` the baseline itself, to the test report's ``user_properties``, which pytest-xdist
carries to the controller. This object, registered once per run, receives every report there (or in
the single process of a serial run) and is the only writer.
"""

from __future__ import annotations

import shlex
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_advprune.baselines import BaselineStore, display_path
from pytest_advprune.cache.store import CacheCounts
from pytest_advprune.gate import WRITE, describe_worst

if TYPE_CHECKING:
    from pytest_advprune.session import AdvPruneSession

# The summary counts verdicts in the order a reviewer cares about them (see gate.py for their meaning).
STATUS_ORDER = (
    "failed",
    "regressed",
    "refused",
    "write failed",
    "error",
    "violated",
    "stale",
    "missing",
    "unusable",
    "improved",
    "accepted",
    "passed",
    "created",
    "updated",
    "unchanged",
)
VERDICT_PROPERTY = "advprune_verdict"
LATENCY_PROPERTY = "advprune_latency"


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" + ("" if number == 1 else "s")


class RunReport:
    def __init__(self, session: AdvPruneSession, rootdir: Path) -> None:
        self.session = session
        self.settings = session.settings
        self.store = BaselineStore(self.settings.baselines_dir)
        self.rootdir = rootdir
        self.verdicts: dict[str, str] = {}  # cell id -> status
        self.records: dict[str, dict[str, Any]] = {}  # cell id -> status, metrics, paired comparisons
        self.environment_changes: Counter[str] = Counter()
        self.write_errors: list[str] = []
        self.finish_errors: list[str] = []  # report or clean-up failures at the end of the run
        self.checked: set[str] = set()  # node ids whose test attached a verdict
        self.unused: list[Path] = []
        self.deleted: list[Path] = []
        self.latencies: dict[tuple[str, int, str], float] = {}  # (model, batch size, variant) -> median seconds
        self.unmeasured_timings = 0
        self.args: list[str] = []  # this run's arguments, for the commands the summary suggests
        self.worker_cache_counts = CacheCounts()  # what xdist workers did with the cache

    # -- hooks -------------------------------------------------------------------------------------

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when == "call":
            for name, value in report.user_properties:
                if name == VERDICT_PROPERTY and isinstance(value, dict):
                    self.checked.add(report.nodeid)
                    self._record_verdict(value)
                elif name == LATENCY_PROPERTY and isinstance(value, dict):
                    self._record_latency(value)
        if report.failed and report.when in ("setup", "call") and report.nodeid not in self.checked:
            self._record_error(report)

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        # Before the terminal reporter's sessionfinish, which prints the summary.
        self.args = [str(arg) for arg in session.config.invocation_params.args]
        if not self.verdicts:
            return
        self.unused = self._unused_files()
        self._add_matrix_flags()
        if self.settings.sanity == "fail" and any(record["flags"] for record in self.records.values()):
            self.finish_errors.append("sanity flags (advprune_sanity = fail): see the list above")
        if self.settings.prune_baselines:
            kept = []
            for path in self.unused:
                try:
                    path.unlink()
                except OSError as error:
                    kept.append(path)
                    self.finish_errors.append(
                        f"could not delete unused baseline {display_path(path, self.rootdir)}: {error.strerror}"
                    )
                else:
                    self.deleted.append(path)
            self.unused = kept
        if self.settings.report_path is not None:
            try:
                write_report(self.settings.report_path, self.records, self.settings.gate)
            except OSError as error:
                self.finish_errors.append(
                    f"could not write the report {display_path(self.settings.report_path, self.rootdir)}: "
                    f"{error.strerror or error}"
                )
        if (self.write_errors or self.finish_errors) and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        lines = self.summary_lines()
        if lines:
            terminalreporter.section("advprune")
            for line in lines:
                terminalreporter.write_line(line)

    # -- recording ---------------------------------------------------------------------------------

    def _record_verdict(self, value: dict[str, Any]) -> None:
        cell, status = str(value["cell"]), str(value["status"])
        baseline = value.get("payload")
        if isinstance(baseline, dict):
            written = self._write(value, baseline)
            if written == "write failed" or status == WRITE:
                status = written
        self.verdicts[cell] = status
        self.records[cell] = {
            "status": status,
            "file": value.get("file"),
            "nodeid": value.get("nodeid"),
            "metrics": value.get("metrics") or {},
            "comparisons": value.get("comparisons") or [],
            "violations": value.get("violations") or [],
            "worst": value.get("worst"),
            # A baseline written although worse than the one it replaced: --advprune-accept-regressions.
            "accepted": isinstance(baseline, dict) and value.get("worst") is not None and status != "write failed",
            "flags": list(value.get("flags") or []),
            "model": value.get("model"),
            "pruning": value.get("pruning"),
            "attack": value.get("attack"),
            "params": value.get("params") or {},
        }
        for change in value.get("environment_changes") or ():
            self.environment_changes[str(change)] += 1

    def _add_matrix_flags(self) -> None:
        """Flags across the cells of one model and pruning (FGSM or Square beating PGD, accuracy rising with
        eps), added to the cell that carries each; computed here, where every worker's cells meet."""
        if self.settings.sanity == "off":
            return
        from pytest_advprune.sanity import matrix_flags

        cells = {cell: record for cell, record in self.records.items() if record.get("model") is not None}
        for cell, flags in matrix_flags(cells, self.settings.tolerance).items():
            self.records[cell]["flags"] += [flag.describe() for flag in flags]

    def _record_error(self, report: pytest.TestReport) -> None:
        """A cell test that failed before its baseline check (a fixture error, a model that cannot be built,
        an assertion of the test itself) still gets a verdict and a count."""
        if "advprune_cell" not in report.keywords:
            return
        cell = report.nodeid.rpartition("[")[2].rstrip("]") or report.nodeid
        if cell not in self.verdicts:
            self.verdicts[cell] = "error"
            self.records[cell] = {
                "status": "error",
                "nodeid": report.nodeid,
                "metrics": {},
                "comparisons": [],
                "flags": [],
            }

    def _write(self, value: dict[str, Any], baseline: dict[str, Any]) -> str:
        if self.settings.ci_mode or not self.settings.update_baselines:  # never, whatever a worker sent
            return "write failed"
        path = self.store.root / str(value["file"])
        try:
            return self.store.write_path(path, baseline)
        except OSError as error:
            reason = error.strerror or str(error)
            if path.is_dir():
                reason = "a folder has the baseline's name; move it away"
            self.write_errors.append(f"{display_path(path, self.rootdir)}: {reason}")
            return "write failed"
        except ValueError as error:
            self.write_errors.append(f"{display_path(path, self.rootdir)}: {error}")
            return "write failed"

    def _record_latency(self, value: dict[str, Any]) -> None:
        if value.get("median") is None:
            self.unmeasured_timings += 1
        else:
            key = (str(value["model"]), int(value["batch_size"]), str(value["variant"]))
            self.latencies[key] = float(value["median"])

    def _unused_files(self) -> list[Path]:
        """Baseline files no cell of the matrix owns (deselected and skipped cells own theirs)."""
        from pytest_advprune.matrix import MatrixError

        try:
            owned = {self.store.path_for(cell) for cell in self.session.matrix.cells}
        except MatrixError:
            return []
        return [path for path in self.store.existing_files() if path not in owned]

    # -- output ------------------------------------------------------------------------------------

    def summary_lines(self) -> list[str]:
        lines = []
        if self.verdicts:
            counts = Counter(self.verdicts.values())
            parts = [f"{counts[s]} {s}" for s in STATUS_ORDER if counts[s]]
            if self.unused:
                parts.append(f"{len(self.unused)} unused")
            if self.deleted:
                parts.append(f"{len(self.deleted)} deleted")
            lines.append(f"{_count(len(self.verdicts), 'cell')}: " + ", ".join(parts))
        lines += self.regression_lines()
        lines += self.cache_lines()
        if "stale" in self.verdicts.values():
            where = "outside CI mode, " if self.settings.ci_mode else ""
            args = [arg for arg in self.args if arg != "--advprune-ci"]  # CI mode refuses writes
            command = shlex.join(["pytest", *args, "--update-baselines"])
            lines.append(
                "stale cells: their baselines describe other weights, data or parameters (see each message); "
                f"{where}refresh them with: {command}"
            )
        if "improved" in self.verdicts.values():
            lines.append(
                "improved cells passed, but their baselines are out of date: refresh them with --update-baselines"
            )
        for change, count in sorted(self.environment_changes.items()):
            lines.append(
                f"warning: {_count(count, 'cell')} compared with baselines made elsewhere ({change}); "
                "numbers may move slightly, within tolerance"
            )
        hint = "outside CI mode, " if self.settings.ci_mode else ""
        for path in self.unused:
            lines.append(
                f"unused baseline: {display_path(path, self.rootdir)} ({hint}delete with --advprune-prune-baselines "
                "on an unfiltered run)"
            )
        for path in self.deleted:
            lines.append(f"deleted unused baseline: {display_path(path, self.rootdir)}")
        flagged = {cell: record["flags"] for cell, record in sorted(self.records.items()) if record["flags"]}
        if flagged:
            lines.append(
                f"sanity flags on {_count(len(flagged), 'cell')} (signs of gradient masking or a broken attack; "
                "see the README's Sanity flags):"
            )
            # A model's own flag (softmax outputs, zero gradients) repeats in every cell of it: print it once.
            cells_of: dict[str, list[str]] = {}
            for cell, flags in flagged.items():
                for flag in flags:
                    cells_of.setdefault(flag, []).append(cell)
            for flag, cells in cells_of.items():
                where = cells[0] if len(cells) == 1 else f"{len(cells)} cells ({', '.join(cells)})"
                lines.append(f"  {where}: {flag}")
        lines += [f"could not write baseline {error}" for error in self.write_errors]
        lines += [f"error: {error}" for error in self.finish_errors]
        if self.unmeasured_timings:
            lines.append(
                f"notice: {_count(self.unmeasured_timings, 'timing test')} measured nothing: pytest-benchmark "
                "disables itself under xdist (-n) or --benchmark-disable. "
                "Time serially: pytest suites/ -m advprune_timing"
            )
        lines += self.latency_lines()
        return lines

    def cache_lines(self) -> list[str]:
        counts = CacheCounts()
        if self.session.cache is not None:
            counts.add(self.session.cache.counts.as_dict())
        counts.add(self.worker_cache_counts.as_dict())
        lines = counts.summary()
        if lines and self.settings.ci_mode and not self.settings.cache_reads:
            lines.append("cache: CI mode reads no entry an earlier run wrote (--advprune-ci-cache reads them)")
        return lines

    def regression_lines(self) -> list[str]:
        """Refused and accepted regressions by name, so a log or a PR shows every one of them."""
        lines = []
        refused = [cell for cell, status in sorted(self.verdicts.items()) if status == "refused"]
        for cell in refused:
            worst = self.records[cell].get("worst")
            lines.append(
                f"refused (worse than its baseline, not written): {cell}: {describe_worst(worst) if worst else ''}"
            )
        if refused:
            accept = f"--advprune-accept-regressions={','.join(refused)}"
            lines.append(f"accept them with: {shlex.join(['pytest', *_without_accept_option(self.args), accept])}")
        for cell, record in sorted(self.records.items()):
            worst = record.get("worst")
            if worst and record.get("accepted"):
                lines.append(f"accepted regression (written): {cell}: {describe_worst(worst)}")
        return lines

    def latency_lines(self) -> list[str]:
        """One row per pruned variant and batch size: base and pruned median latency, speedup = base / pruned."""
        rows = []
        for (model, batch, variant), median in sorted(self.latencies.items()):
            base = self.latencies.get((model, batch, "base"))
            if variant != "base" and base is not None:
                rows.append((model, variant, batch, base, median, base / median))
        if not rows:
            return []
        header = f"{'model':<12}{'pruning':<24}{'batch':>6}{'base ms':>10}{'pruned ms':>11}{'speedup':>9}"
        lines = ["median inference latency (pytest-benchmark)", header]
        lines += [f"{m:<12}{v:<24}{n:>6}{b * 1e3:>10.3f}{p * 1e3:>11.3f}{s:>8.2f}x" for m, v, n, b, p, s in rows]
        return lines


def _without_accept_option(args: Sequence[str]) -> list[str]:
    """The run's arguments less any --advprune-accept-regressions (the summary's command replaces it)."""
    kept: list[str] = []
    skip_value = False
    for arg in map(str, args):
        if skip_value and not arg.startswith("-") and "/" not in arg and not arg.endswith(".py"):
            skip_value = False
            continue
        skip_value = arg == "--advprune-accept-regressions"
        if not arg.startswith("--advprune-accept-regressions"):
            kept.append(arg)
    return kept


def write_report(path: Path, records: dict[str, dict[str, Any]], gate: str) -> None:
    """Every cell's status, metrics and paired comparisons, as JSON or (``.md``) a Markdown table."""
    from pytest_advprune import __version__
    from pytest_advprune.baselines import dumps

    cells = {cell: records[cell] for cell in sorted(records)}
    if path.suffix == ".md":
        text = markdown_report(cells, gate)
    else:
        text = dumps({"plugin_version": __version__, "gate": gate, "cells": cells})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


class ReportError(ValueError):
    """A report file that cannot be merged: unreadable, not a pytest-advprune JSON report, or in conflict."""


def merge_reports(paths: Sequence[Path]) -> tuple[str, dict[str, dict[str, Any]]]:
    """(gate, cells) of the JSON reports of several CI shards (``--advprune-shard``) as one report. A cell
    may appear in several files only with the same record; the gates must agree."""
    import json

    gate: str | None = None
    cells: dict[str, dict[str, Any]] = {}
    owner: dict[str, Path] = {}
    for path in paths:
        try:
            report = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise ReportError(
                f"{path}: cannot read it as JSON ({error}). Give the .json reports the shards wrote "
                "with --advprune-report=PATH.json."
            ) from None
        if not isinstance(report, dict) or not isinstance(report.get("cells"), dict) or "gate" not in report:
            raise ReportError(
                f"{path}: not a pytest-advprune JSON report (no 'gate' and 'cells'). Give the files "
                "written with --advprune-report=PATH.json."
            )
        if gate is not None and report["gate"] != gate:
            raise ReportError(
                f"{path}: gate {report['gate']!r}, but {paths[0]} has {gate!r}. Merge reports of one "
                "configuration only."
            )
        gate = str(report["gate"])
        for cell, record in report["cells"].items():
            if cell in cells and cells[cell] != record:
                raise ReportError(
                    f"cell {cell!r} is in {owner[cell]} and in {path} with different results. Each "
                    "shard runs other cells: were these reports written by one sharded run?"
                )
            cells[cell], owner[cell] = record, path
    if gate is None:
        raise ReportError("no report given: name the shards' JSON reports.")
    return gate, cells


def markdown_report(cells: dict[str, dict[str, Any]], gate: str) -> str:
    """One row per cell: status, clean and transfer robust accuracy, and the paired change of the latter."""
    lines = [
        f"# pytest-advprune report (gate: {gate})",
        "",
        "| cell | status | pruned clean % | transfer robust % | change (points, CI) | McNemar p |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for cell, record in cells.items():
        metrics = record["metrics"]
        transfer = next((c for c in record["comparisons"] if c["metric"] == "transfer_robust_accuracy"), None)
        change = p_value = ""
        if transfer is not None:
            change = f"{transfer['difference']:+.2f} ({transfer['ci_low']:+.2f} to {transfer['ci_high']:+.2f})"
            p_value = f"{transfer['p_value']:.3g}"
        lines.append(
            f"| {cell} | {record['status']} | {metrics.get('pruned_clean_accuracy', '')} "
            f"| {metrics.get('transfer_robust_accuracy', '')} | {change} | {p_value} |"
        )
    lines += _markdown_regressions(cells)
    return "\n".join(lines) + "\n"


def _markdown_regressions(cells: dict[str, dict[str, Any]]) -> list[str]:
    """The cells a reviewer must look at by name: regressions (refused, accepted, regressed, failed) with
    their worst metric, and violated invariants."""
    sections = {
        "Accepted regressions (written with --advprune-accept-regressions)": [
            (cell, describe_worst(r["worst"])) for cell, r in cells.items() if r.get("accepted") and r.get("worst")
        ],
        "Refused refreshes (worse than their baselines, not written)": [
            (cell, describe_worst(r["worst"]))
            for cell, r in cells.items()
            if r["status"] == "refused" and r.get("worst")
        ],
        "Regressions": [
            (cell, describe_worst(r["worst"]))
            for cell, r in cells.items()
            if r["status"] in ("failed", "regressed") and r.get("worst")
        ],
        "Violated invariants": [
            (cell, f"{v['invariant']}: {v['metric']} {v['observed']} (allowed {v['allowed']})")
            for cell, r in cells.items()
            for v in r.get("violations") or ()
        ],
        "Sanity flags (signs of gradient masking or a broken attack)": [
            (cell, flag) for cell, r in cells.items() for flag in r.get("flags") or ()
        ],
    }
    lines: list[str] = []
    for title, entries in sections.items():
        if entries:
            lines += ["", f"## {title}", ""] + [f"- `{cell}`: {text}" for cell, text in entries]
    return lines
