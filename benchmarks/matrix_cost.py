"""What the default suite costs against the work it cannot avoid, measured side by side in one run.

    python benchmarks/matrix_cost.py                    # everything (about 20 minutes on 2 cores)
    python benchmarks/matrix_cost.py --skip naive,warm  # fewer parts

Parts, each timed with ``time.perf_counter`` (wall clock), all on the default matrix with the suite's own
settings (ini defaults: every evaluation image, 1 torch thread, the same seeds):

- plain loop: the lower bound. In one process, with the plugin's building blocks and nothing else: each
  base model built once, each (model, pruning) pruned and fine-tuned once, each (model, attack) crafted
  on the base once, each cell's white-box examples crafted on its pruned model, and the forward passes
  the metrics need (base on clean and on its examples once per (model, attack); pruned on clean once,
  on transfer and white-box examples per cell).
- naive loop: the same cells computed one by one, each from scratch (prune, craft on the base, craft on
  the pruned model, evaluate), as a per-cell test without shared fixtures would.
- suite serial / suite -n 2: ``pytest suites/ -m "not advprune_timing" --advprune-no-cache`` in a
  subprocess (interpreter start and collection included), serially and on two xdist workers.
- cold / warm: the same suite with a fresh cache folder, run twice: the second run reads the cache.

Printed: each part's seconds and the ratios the project tracks (suite serial / plain loop, serial / -n 2,
warm / cold). Not a test: timings on a shared machine are noisy, so they are reported, never asserted.
Run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from pytest_advprune.attacks import AttackGenerator
from pytest_advprune.builtins import load_builtins
from pytest_advprune.evaluation import correct_predictions
from pytest_advprune.options import Settings, read_settings
from pytest_advprune.pruning import PruningContext, prune_model
from pytest_advprune.registry import MODELS
from pytest_advprune.seeds import derive_seed
from pytest_advprune.session import AdvPruneSession
from pytest_advprune.specs import AttackSpec, CellSpec, PruningSpec

ROOT = Path(__file__).resolve().parent.parent
SUITE = [sys.executable, "-m", "pytest", "suites/", "-q", "-p", "no:cacheprovider", "-m", "not advprune_timing"]


def suite_settings() -> Settings:
    config = pytest.Config.fromdictargs({}, ["-p", "no:cacheprovider", "--assert=plain"])
    return replace(read_settings(config), cache_dir=None)


class Loop:
    """The building blocks of a cell, with the suite's seeds, for the two hand-written loops."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.session = AdvPruneSession(settings)  # only for its data and base models (built before timing)

    def prune(self, model: str, pruning: PruningSpec) -> torch.nn.Module:
        base = self.session.base_model(model)
        context = PruningContext(
            dataset=self.session.dataset(base.entry.dataset),
            device=self.session.device,
            seed=derive_seed(self.settings.seed, "prune", model, pruning.id),
            normalization=base.entry.normalization,
        )
        return prune_model(base.module, pruning.entry, pruning.amount, context, self.session.fine_tune_settings)

    def craft(self, model: str, module: torch.nn.Module, attack: AttackSpec, seed: int) -> torch.Tensor:
        base = self.session.base_model(model)
        data = self.session.eval_set(base.entry.dataset)
        generator = AttackGenerator.for_spec(attack, base.entry.normalization, seed, self.settings.batch_size)
        return generator(module, data.images, data.labels)

    def correct(self, model: str, module: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
        base = self.session.base_model(model)
        labels = self.session.eval_set(base.entry.dataset).labels
        return correct_predictions(module, images, labels, base.entry.normalization, self.settings.batch_size)

    def base_seed(self, model: str, attack: AttackSpec) -> int:
        return derive_seed(self.settings.seed, "base", model, attack.id)

    def whitebox_seed(self, cell: CellSpec) -> int:
        return derive_seed(self.settings.seed, "whitebox", cell.id)


def plain_loop(loop: Loop) -> None:
    matrix = loop.session.matrix
    for model in matrix.models:
        base = loop.session.base_model(model).module
        images = loop.session.eval_set(MODELS.get(model).dataset).images
        loop.correct(model, base, images)
        crafted = {}
        for attack in matrix.attacks_for(model):
            crafted[attack.id] = loop.craft(model, base, attack, loop.base_seed(model, attack))
            loop.correct(model, base, crafted[attack.id])
        for pruning in matrix.prunings_for(model):
            pruned = loop.prune(model, pruning)
            loop.correct(model, pruned, images)
            for attack in matrix.attacks_for(model):
                cell = CellSpec(model, pruning, attack)
                loop.correct(model, pruned, crafted[attack.id])
                loop.correct(model, pruned, loop.craft(model, pruned, attack, loop.whitebox_seed(cell)))


def naive_loop(loop: Loop) -> None:
    for cell in loop.session.matrix.cells:
        model = cell.model
        base = loop.session.base_model(model).module
        images = loop.session.eval_set(MODELS.get(model).dataset).images
        pruned = loop.prune(model, cell.pruning)
        transfer = loop.craft(model, base, cell.attack, loop.base_seed(model, cell.attack))
        whitebox = loop.craft(model, pruned, cell.attack, loop.whitebox_seed(cell))
        for module, inputs in ((base, images), (pruned, images), (base, transfer), (pruned, transfer)):
            loop.correct(model, module, inputs)
        loop.correct(model, pruned, whitebox)


def timed(function: Callable[[], object]) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def run_suite(*extra: str) -> float:
    start = time.perf_counter()
    done = subprocess.run([*SUITE, *extra], cwd=ROOT, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"the suite failed ({' '.join(extra)}):\n{done.stdout[-3000:]}{done.stderr[-2000:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--skip", default="", help="comma-separated parts to skip: plain, naive, serial, xdist, warm")
    args = parser.parse_args()
    skip = {part.strip() for part in args.skip.split(",") if part.strip()}
    load_builtins()
    settings = suite_settings()
    torch.set_num_threads(settings.threads)
    seconds: dict[str, float] = {}
    if not {"plain", "naive"} <= skip:
        loop = Loop(settings)
        for model in loop.session.matrix.models:  # data and base models are loaded before any timing
            loop.session.eval_set(MODELS.get(model).dataset)
            loop.session.base_model(model)
        if "plain" not in skip:
            seconds["plain loop (lower bound)"] = timed(lambda: plain_loop(loop))
        if "naive" not in skip:
            seconds["naive per-cell loop"] = timed(lambda: naive_loop(loop))
    if "serial" not in skip:
        seconds["suite serial"] = run_suite("--advprune-no-cache")
    if "xdist" not in skip:
        seconds["suite -n 2"] = run_suite("--advprune-no-cache", "-n", "2")
    if "warm" not in skip:
        with tempfile.TemporaryDirectory() as folder:
            seconds["suite cold (fresh cache)"] = run_suite(f"--advprune-cache-dir={folder}")
            seconds["suite warm (cache read)"] = run_suite(f"--advprune-cache-dir={folder}")

    print(f"\ntorch {torch.__version__}, {settings.threads} thread(s), {os.cpu_count()} CPUs, default matrix\n")
    print("| part | seconds |\n|---|---:|")
    for name, value in seconds.items():
        print(f"| {name} | {value:.1f} |")
    ratios = [
        ("suite serial / plain loop", "suite serial", "plain loop (lower bound)"),
        ("naive loop / plain loop", "naive per-cell loop", "plain loop (lower bound)"),
        ("suite serial / suite -n 2 (speedup)", "suite serial", "suite -n 2"),
        ("warm / cold", "suite warm (cache read)", "suite cold (fresh cache)"),
    ]
    print("\n| ratio | value |\n|---|---:|")
    for label, top, bottom in ratios:
        if top in seconds and bottom in seconds:
            print(f"| {label} | {seconds[top] / seconds[bottom]:.2f} |")


if __name__ == "__main__":
    main()
