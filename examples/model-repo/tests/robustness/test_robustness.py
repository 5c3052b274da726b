"""The robustness gate: every cell of the matrix in pyproject.toml against its file in baselines/, and the
inference latency of the base and pruned models."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def test_robustness(cell_result: Any, check_baseline: Callable[[Any], None]) -> None:
    check_baseline(cell_result)


def test_inference_latency(inference_benchmark: Callable[[], None]) -> None:
    inference_benchmark()
