"""What each built-in attack costs: CPU seconds to craft adversarial examples for 1,000 digits samples, per
zoo model, at the attack's default parameters.

    python benchmarks/attack_cost.py                              # every built-in attack, every zoo model
    python benchmarks/attack_cost.py --models lenet,mlp --attacks fgsm,deepfool --samples 100 --repeats 1

Each row is one built-in attack (as registered, default parameters, restarts included); each column one
base model; each number the median wall time (``time.perf_counter``) of ``--repeats`` crafting calls on the
first ``--samples`` digits evaluation images, scaled to 1,000 samples; the last column sums the models.
"implementation" says whether the attack the registry's factory builds is a torchattacks attack or the
plugin's own. Only the crafting call (``AttackGenerator`` applied to model, images, labels, exactly as the
session calls it, same seeds) is timed, after one untimed warm-up call on 8 images. The last line estimates
a full default-shaped matrix with every measured attack: per model, one base craft and three prunings'
white-box crafts per attack (4 x the measured time), excluding pruning, fine-tuning and evaluation.

Not a test: seconds on a shared machine are noisy, and the numbers are reported, never asserted.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Sequence

import torch
from torch import nn

from pytest_advprune.attacks import AttackGenerator, build_attack
from pytest_advprune.builtins import load_builtins
from pytest_advprune.data import load_digits
from pytest_advprune.matrix import DEFAULT_MODELS, DEFAULT_PRUNINGS
from pytest_advprune.registry import ATTACKS, MODELS, ModelEntry
from pytest_advprune.specs import AttackSpec, derive_seed, parse_attack

WARMUP_SAMPLES = 8
SEED = 0  # the plugin's default --advprune-seed


def base_module(entry: ModelEntry) -> nn.Module:
    """The registered base model, prepared as the session prepares it (eval mode, parameters with grad)."""
    module = entry.factory().eval()
    for parameter in module.parameters():
        parameter.requires_grad_(True)
    return module


def implementation(spec: AttackSpec, model: nn.Module, entry: ModelEntry) -> str:
    """``torchattacks.<Class>`` if the registry's factory builds a torchattacks attack, else ``plugin``."""
    import torchattacks

    attack = build_attack(spec.entry, spec.kwargs, model, entry.normalization, SEED)
    if isinstance(attack, torchattacks.attack.Attack):
        return f"torchattacks.{type(attack).__name__}"
    return "plugin"


def craft_seconds(
    spec: AttackSpec,
    model_name: str,
    images: torch.Tensor,
    labels: torch.Tensor,
    repeats: int,
    batch_size: int,
) -> float:
    """Median seconds of ``repeats`` crafting calls of ``spec`` on the base model ``model_name``."""
    entry = MODELS.get(model_name)
    module = base_module(entry)
    seed = derive_seed(SEED, "base", model_name, spec.id)  # the session's seed for a base model's examples
    generator = AttackGenerator.for_spec(spec, entry.normalization, seed, batch_size)
    generator(module, images[:WARMUP_SAMPLES], labels[:WARMUP_SAMPLES])  # lazy initialisation, untimed
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        generator(module, images, labels)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=",".join(DEFAULT_MODELS), help="comma-separated zoo models")
    parser.add_argument("--attacks", default=None, help="comma-separated attacks (default: every built-in)")
    parser.add_argument("--samples", type=int, default=450, help="first digits eval samples (450 = all)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--repeats", type=int, default=3, help="timed crafting calls per cell (median reported)")
    parser.add_argument("--batch-size", type=int, default=AttackGenerator.batch_size, help="attack batch size")
    args = parser.parse_args(argv)
    if args.samples < 1 or args.repeats < 1 or args.batch_size < 1:
        parser.error("--samples, --repeats and --batch-size must be positive")

    torch.set_num_threads(args.threads)
    load_builtins()
    data = load_digits()
    images, labels = data.eval_images[: args.samples], data.eval_labels[: args.samples]
    count = len(images)
    models = args.models.split(",")
    names = args.attacks.split(",") if args.attacks else [e.name for e in ATTACKS.entries() if e.builtin]
    specs = [parse_attack(name) for name in names]

    print(
        f"torch {torch.__version__}, {args.threads} thread(s), {count} samples, {args.repeats} repeat(s), "
        f"batch size {args.batch_size}: seconds per 1,000 samples (median of repeats, CPU)\n"
    )
    print("| attack | implementation | " + " | ".join(models) + " | sum |")
    print("|---|---|" + "---:|" * (len(models) + 1))
    total = 0.0
    first = MODELS.get(models[0])
    for spec in specs:
        kind = implementation(spec, base_module(first), first)
        row = [craft_seconds(spec, model, images, labels, args.repeats, args.batch_size) for model in models]
        total += sum(row)
        per_thousand = [1000.0 * seconds / count for seconds in row]
        cells = " | ".join(f"{value:.2f}" for value in per_thousand)
        print(f"| `{spec.id}` | {kind} | {cells} | {sum(per_thousand):.2f} |", flush=True)

    crafts = 1 + len(DEFAULT_PRUNINGS)
    print(
        f"\nestimate: a default-shaped matrix ({len(models)} model(s) x {crafts} crafts: base + "
        f"{len(DEFAULT_PRUNINGS)} prunings' white-box) with these {len(specs)} attack(s) at {count} samples spends "
        f"{crafts * total / 60.0:.2f} min crafting (excludes pruning, fine-tuning and evaluation)"
    )


if __name__ == "__main__":
    main()
