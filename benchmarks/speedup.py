"""Real speedups of pruning, measured side by side: median CPU latency of each zoo model and its pruned
versions, interleaved in one run so that machine noise hits both alike.

    python benchmarks/speedup.py                           # all models, channel 0.3/0.5/0.7 + masking
    python benchmarks/speedup.py --models resnet,vgg --repeats 50 --threads 2

Not a test: shared machines are noisy, so speed is reported as ratios of medians, never asserted.
Latency does not depend on the weights' values, so the pruned models are not fine-tuned here.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Sequence

import torch
from torch import nn

from pytest_advprune import zoo
from pytest_advprune.builtins import load_builtins
from pytest_advprune.data import load_digits
from pytest_advprune.evaluation import normalize
from pytest_advprune.pruning import FineTuneSettings, PruningContext, model_size, prune_model
from pytest_advprune.registry import PRUNINGS
from pytest_advprune.timing import timing_batch

WARMUP = 5


def latency_pairs(base: nn.Module, pruned: nn.Module, batch: torch.Tensor, repeats: int) -> tuple[float, float]:
    """Median seconds per forward pass of ``base`` and ``pruned``, measured alternately."""
    times: dict[int, list[float]] = {0: [], 1: []}
    models = (base, pruned)
    with torch.inference_mode():
        for model in models:
            for _ in range(WARMUP):
                model(batch)
        for round_index in range(repeats):
            order = (0, 1) if round_index % 2 == 0 else (1, 0)  # neither always runs first
            for index in order:
                start = time.perf_counter()
                models[index](batch)
                times[index].append(time.perf_counter() - start)
    return statistics.median(times[0]), statistics.median(times[1])


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=",".join(zoo.MODEL_NAMES), help="comma-separated zoo models")
    parser.add_argument("--amounts", default="0.3,0.5,0.7", help="channel pruning amounts")
    parser.add_argument("--batch", type=int, default=256, help="inference batch size")
    parser.add_argument("--repeats", type=int, default=30, help="timed passes per model")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    load_builtins()
    data = load_digits()
    variants = [("channel", float(a)) for a in args.amounts.split(",")] + [("l1_unstructured", 0.5), ("l1_filter", 0.5)]
    print(f"torch {torch.__version__}, {args.threads} thread(s), batch {args.batch}, median of {args.repeats}")
    print(f"{'model':<11}{'pruning':<22}{'params':>9}{'MACs':>11}{'base ms':>10}{'pruned ms':>11}{'speedup':>9}")
    for name in args.models.split(","):
        base = zoo.load(name)
        normalization = zoo.NORMALIZATION[name]
        batch = normalize(timing_batch(data.eval_images, args.batch), normalization)
        context = PruningContext(data, torch.device("cpu"), 0, normalization)
        for method, amount in variants:
            pruned = prune_model(base, PRUNINGS.get(method), amount, context, FineTuneSettings(epochs=0))
            size = model_size(pruned, context.example_inputs)
            base_s, pruned_s = latency_pairs(base, pruned, batch, args.repeats)
            print(
                f"{name:<11}{f'{method}_{amount:g}':<22}{size.parameters:>9,}{size.macs:>11,}"
                f"{base_s * 1e3:>10.3f}{pruned_s * 1e3:>11.3f}{base_s / pruned_s:>8.2f}x"
            )


if __name__ == "__main__":
    main()
