"""The controller's side of a run: write accepted baselines (the one writer, also under xdist), find
unused baselines, and print the summary.

Test processes never write baseline files: ``check_baseline`` attaches its verdict, and under
``--update-baselines`` the baseline itself, to the test report's ``user_properties``, which pytest-xdist
carries to the controller. This object, registered once per run, receives every report there (or in
the single process of a serial run) and is the only writer.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_advprune.baselines import BaselineStore, display_path

if TYPE_CHECKING:
    from pytest_advprune.session import AdvPruneSession

STATUS_ORDER = (
    "passed",
    "improved",
    "failed",
    "stale",
    "missing",
    "unusable",
    "created",
    "updated",
    "unchanged",
    "write failed",
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
        self.unused: list[Path] = []
        self.deleted: list[Path] = []
        self.latencies: dict[tuple[str, int, str], float] = {}  # (model, batch size, variant) -> median seconds
        self.unmeasured_timings = 0

    # -- hooks -------------------------------------------------------------------------------------

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when == "call":
            for name, value in report.user_properties:
                if name == VERDICT_PROPERTY and isinstance(value, dict):
                    self._record_verdict(value)
                elif name == LATENCY_PROPERTY and isinstance(value, dict):
                    self._record_latency(value)

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        # Before the terminal reporter's sessionfinish, which prints the summary.
        if not self.verdicts:
            return
        self.unused = self._unused_files()
        if self.settings.prune_baselines:
            for path in self.unused:
                path.unlink()
                self.deleted.append(path)
            self.unused = []
        if self.settings.report_path is not None:
            write_report(self.settings.report_path, self.records, self.settings.gate)
        if self.write_errors and session.exitstatus == pytest.ExitCode.OK:
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
        if status == "accepted" and isinstance(baseline, dict):
            status = self._write(value, baseline)
        self.verdicts[cell] = status
        self.records[cell] = {
            "status": status,
            "metrics": value.get("metrics") or {},
            "comparisons": value.get("comparisons") or [],
        }
        for change in value.get("environment_changes") or ():
            self.environment_changes[str(change)] += 1

    def _write(self, value: dict[str, Any], baseline: dict[str, Any]) -> str:
        if self.settings.ci_mode or not self.settings.update_baselines:  # never, whatever a worker sent
            return "write failed"
        path = self.store.root / str(value["file"])
        try:
            return self.store.write_path(path, baseline)
        except (OSError, ValueError) as error:
            self.write_errors.append(f"{path}: {error}")
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
        if self.verdicts.values() and "improved" in self.verdicts.values():
            lines.append(
                "improved cells passed, but their baselines are out of date: refresh them with --update-baselines"
            )
        for change, count in sorted(self.environment_changes.items()):
            lines.append(
                f"warning: {_count(count, 'cell')} compared with baselines made elsewhere ({change}); "
                "numbers may move slightly, within tolerance"
            )
        for path in self.unused:
            lines.append(
                f"unused baseline: {display_path(path, self.rootdir)} (delete with --advprune-prune-baselines)"
            )
        for path in self.deleted:
            lines.append(f"deleted unused baseline: {display_path(path, self.rootdir)}")
        lines += [f"could not write baseline {error}" for error in self.write_errors]
        if self.unmeasured_timings:
            lines.append(
                f"notice: {_count(self.unmeasured_timings, 'timing test')} measured nothing: pytest-benchmark "
                "disables itself under xdist (-n) or --benchmark-disable. "
                "Time serially: pytest suites/ -m advprune_timing"
            )
        lines += self.latency_lines()
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
    return "\n".join(lines) + "\n"
