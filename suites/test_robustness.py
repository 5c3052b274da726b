"""The benchmark suite: every model x pruning x attack cell of the matrix against its stored baseline,
and the inference latency of every base and pruned model.

    pytest suites/                              # embedded default: offline, CPU
    pytest suites/ --advprune-device=cuda       # the same cells on a GPU
    pytest suites/ --update-baselines           # accept the current numbers
"""

from __future__ import annotations

from collections.abc import Callable

from pytest_advprune.cell import CellResult


def test_robustness(cell_result: CellResult, check_baseline: Callable[[CellResult], None]) -> None:
    check_baseline(cell_result)


def test_inference_latency(inference_benchmark: Callable[[], None]) -> None:
    inference_benchmark()
