"""The terminal summary: baseline verdicts per status and the inference latency table."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import pytest

STATUS_ORDER = ("passed", "failed", "stale", "missing", "unusable", "created", "updated", "unchanged")
VERDICT_PROPERTY = "advprune_verdict"
LATENCY_PROPERTY = "advprune_latency"


@dataclass
class RunReport:
    """A pytest plugin object: collects what the test reports carry (``user_properties`` cross xdist
    workers) and prints it at the end of the run."""

    verdicts: dict[str, str] = field(default_factory=dict)  # cell id -> status
    latencies: dict[tuple[str, str], float] = field(default_factory=dict)  # (model, variant) -> median s
    batch_size: int | None = None

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        # On the controller this also sees xdist workers' reports, user_properties included.
        if report.when == "call":
            self.record(list(report.user_properties))

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        verdicts, latencies = self.verdict_line(), self.latency_lines()
        if not verdicts and not latencies:
            return
        terminalreporter.section("advprune")
        for line in ([verdicts] if verdicts else []) + latencies:
            terminalreporter.write_line(line)

    def record(self, properties: list[tuple[str, object]]) -> None:
        for name, value in properties:
            if name == VERDICT_PROPERTY and isinstance(value, dict):
                self.verdicts[str(value["cell"])] = str(value["status"])
            elif name == LATENCY_PROPERTY and isinstance(value, dict) and value.get("median") is not None:
                self.latencies[(str(value["model"]), str(value["variant"]))] = float(value["median"])
                self.batch_size = int(value["batch_size"])

    def verdict_line(self) -> str | None:
        if not self.verdicts:
            return None
        counts = Counter(self.verdicts.values())
        parts = [f"{counts[s]} {s}" for s in STATUS_ORDER if counts[s]]
        return f"{len(self.verdicts)} cells: " + ", ".join(parts)

    def latency_lines(self) -> list[str]:
        """One row per pruned variant with its base: median latencies and speedup (base / pruned)."""
        rows = []
        for (model, variant), median in sorted(self.latencies.items()):
            base = self.latencies.get((model, "base"))
            if variant == "base" or base is None:
                continue
            rows.append((model, variant, base, median, base / median))
        if not rows:
            return []
        header = f"{'model':<12}{'pruning':<24}{'base ms':>10}{'pruned ms':>11}{'speedup':>9}"
        lines = [f"median latency per batch of {self.batch_size}", header]
        lines += [f"{m:<12}{v:<24}{b * 1e3:>10.3f}{p * 1e3:>11.3f}{s:>8.2f}x" for m, v, b, p, s in rows]
        return lines
