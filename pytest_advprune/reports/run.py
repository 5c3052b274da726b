"""The controller's side of a run: write accepted baselines (the one writer, also under xdist), find
unused baselines, and print the summary.

Test processes never write baseline files: ``check_baseline`` attaches its verdict, and under
``--update-baselines`` the baseline itself, to the test report's ``user_properties``, which pytest-xdist
carries to the controller. This object, registered once per run, receives every report there (or in
the single process of a serial run) and is the only writer.
"""

from __future__ import annotations

import os
import shlex
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_advprune.baselines import BaselineStore, display_path
from pytest_advprune.cache.store import CacheCounts
from pytest_advprune.gate import WRITE, describe_worst
from pytest_advprune.reports.document import build_document, cell_record, latency_rows
from pytest_advprune.reports.render import render, write_report
from pytest_advprune.reports.terminal import matrix_lines
from pytest_advprune.scheduling import strip_group

if TYPE_CHECKING:
    from pytest_advprune.invariants import Rule
    from pytest_advprune.options import Settings
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
# What a cell's verdict carries into its report record (the rest: id, status, accepted) from the worker.
REPORTED_FIELDS = (
    "model",
    "pruning",
    "attack",
    "attack_id",
    "pruning_method",
    "amount",
    "params",
    "file",
    "nodeid",
    "metrics",
    "failing",
    "violations",
    "flags",
    "comparisons",
    "stale_fields",
    "environment_changes",
    "worst",
    "gaps",
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
        self._provenance: dict[str, Any] | None = None

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
        # A report that cannot be written is an error of the run, never a crash that hides the gate's verdict.
        if self.settings.report_path is not None:
            try:
                write_report(self.settings.report_path, self.document())
            except Exception as error:
                reason = error.strerror if isinstance(error, OSError) and error.strerror else repr(error)
                self.finish_errors.append(
                    f"could not write the report {display_path(self.settings.report_path, self.rootdir)}: {reason}"
                )
        step_summary = os.environ.get("GITHUB_STEP_SUMMARY")
        if step_summary:  # GitHub Actions shows this file on the run's page: the Markdown report goes there too
            try:
                with open(step_summary, "a", encoding="utf-8") as summary:
                    summary.write(render(self.document(), ".md"))
            except Exception as error:
                reason = error.strerror if isinstance(error, OSError) and error.strerror else repr(error)
                self.finish_errors.append(
                    f"could not append the report to GITHUB_STEP_SUMMARY ({step_summary}): {reason}"
                )
        if (self.write_errors or self.finish_errors) and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        lines = self.summary_lines()
        if lines and terminalreporter.config.get_verbosity() >= 0:  # -q: the counts and problems only
            lines[1:1] = matrix_lines(self.records.values())
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
        self.records[cell] = cell_record(
            id=cell,
            status=status,
            # A baseline written although worse than the one it replaced: --advprune-accept-regressions.
            accepted=isinstance(baseline, dict) and value.get("worst") is not None and status != "write failed",
            **{name: value.get(name) for name in REPORTED_FIELDS},
        )
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
        cell = strip_group(report.nodeid).rpartition("[")[2].rstrip("]") or report.nodeid
        if cell not in self.verdicts:
            self.verdicts[cell] = "error"
            message = report.longreprtext.strip().splitlines()
            self.records[cell] = cell_record(
                id=cell, status="error", nodeid=strip_group(report.nodeid), error=message[-1] if message else None
            )

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
                "see docs/explanation/sanity-flags.md):"
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
                "Time them in a serial run (no -n): pytest -m advprune_timing"
            )
        lines += self.latency_lines()
        return lines

    def document(self) -> dict[str, Any]:
        """This run's report (see ``document.py``)."""
        from pytest_advprune import __version__

        if self._provenance is None:  # once: git runs for it, and the report may be rendered twice
            self._provenance = run_provenance(self.rootdir)
        return build_document(
            self.records.values(),
            source="run",
            gate=self.settings.gate,
            plugin_version=__version__,
            latency=latency_rows(self.latencies),
            shard=None if self.settings.shard is None else (self.settings.shard.index, self.settings.shard.count),
            settings=run_settings(self.settings),
            provenance=self._provenance,
        )

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
        rows = [row for row in latency_rows(self.latencies) if row["speedup"] is not None]
        if not rows:
            return []
        header = f"{'model':<12}{'pruning':<24}{'batch':>6}{'base ms':>10}{'pruned ms':>11}{'speedup':>9}"
        lines = ["median inference latency (pytest-benchmark)", header]
        lines += [
            f"{r['model']:<12}{r['pruning']:<24}{r['batch_size']:>6}{r['base_median_seconds'] * 1e3:>10.3f}"
            f"{r['median_seconds'] * 1e3:>11.3f}{r['speedup']:>8.2f}x"
            for r in rows
        ]
        return lines


def run_settings(settings: Settings) -> dict[str, Any]:
    """What a run's numbers and verdicts depend on besides the code, the data and the baselines, by ini
    name: the shards of one run share every value, and ``merge-reports`` refuses reports that differ in
    one. Left out: what only selects cells (patterns, the shard), or says where files go (baselines,
    cache, report), since shards of one run may differ there without changing a number."""
    invariants = settings.invariants
    return {
        "seed": settings.seed,
        "samples": settings.samples,
        # The type only: CI jobs get CPUs of other instruction sets or GPUs of other models, which baselines
        # tolerate as environment changes; cuda:0 and cuda:1 compute alike.
        "device": settings.device.partition(":")[0],
        "dtype": settings.dtype,
        "threads": settings.threads,
        "batch_size": settings.batch_size,
        "finetune_epochs": settings.finetune_epochs,
        "finetune_lr": settings.finetune_learning_rate,
        "tolerance": settings.tolerance,
        "metric_tolerances": dict(sorted(settings.metric_tolerances.items())),
        "retrain_tolerance": settings.retrain_tolerance,
        "retrain_metric_tolerances": dict(sorted(settings.retrain_metric_tolerances.items())),
        "alpha": settings.alpha,
        "perturbation_tolerance": settings.perturbation_tolerance,
        "sanity": settings.sanity,
        "max_clean_drop": [_rule_text(rule) for rule in invariants.max_clean_drop],
        "max_robustness_gap": [_rule_text(rule) for rule in invariants.max_robustness_gap],
        "floors": [_rule_text(rule) for rule in invariants.floors],
        "ci": settings.ci_mode,
        "update_baselines": settings.update_baselines,
        "accept_regressions": list(settings.accept_regressions),
        "timing_batch_sizes": list(settings.timing_batch_sizes),
        "timing_rounds": settings.timing_rounds,
    }


def _rule_text(rule: Rule) -> str:
    value = "off" if rule.value is None else f"{rule.value:g}"
    return f"{rule.metric} {rule.operator} {value}" + (f" for {rule.scope.text}" if rule.scope.text else "")


def run_provenance(rootdir: Path) -> dict[str, Any]:
    """The source and the environment of a run: the git commit of the rootdir's checkout, Python's
    major.minor and the installed versions of the libraries that compute the numbers."""
    import sys

    from pytest_advprune.cache.keys import library_versions

    return {
        "commit": source_commit(rootdir),
        "python": f"{sys.version_info.major}.{sys.version_info.minor}",
        "libraries": dict(library_versions()),
    }


def source_commit(rootdir: Path) -> str | None:
    """``git rev-parse HEAD`` in ``rootdir``; None outside a git checkout, or where git is missing or hangs
    (a report is never worth a failed run)."""
    import re
    import subprocess

    try:
        done = subprocess.run(
            ["git", "rev-parse", "--verify", "--quiet", "HEAD"],
            cwd=rootdir,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.SubprocessError, ValueError):
        return None
    commit = done.stdout.strip()
    return commit if done.returncode == 0 and re.fullmatch(r"[0-9a-f]{40}|[0-9a-f]{64}", commit) else None


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
