"""What each built-in attack costs: CPU seconds to craft adversarial examples for 1,000 digits samples, per
zoo model, at the attack's default parameters.

    python benchmarks/attack_cost.py                              # every built-in attack, every zoo model
    python benchmarks/attack_cost.py --models lenet,mlp --attacks fgsm,deepfool --samples 100 --repeats 1

Each row is one built-in attack (as registered, default parameters, restarts included); each column one
base model; each number the median wall time (``time.perf_counter``) of ``--repeats`` crafting calls on the
first ``--samples`` digits evaluation images, scaled to 1,000 samples; the last column sums the models.
"implementation" says whether the attack the registry's factory builds is a torchattacks attack or the
plugin's own. Where torchattacks has the same attack (FGSM, MI-FGSM, PGD, APGD, APGD-T, Square), it is timed
side by side on the same model, images and parameters, restarts included (its own ``n_restarts`` where it
has them, else a loop on the survivors as the plugin does): the columns ``torchattacks`` and
``plugin/torchattacks`` (median seconds, summed over the models; below 1 the plugin's is faster).

Only the crafting call (``AttackGenerator`` applied to model, images, labels, exactly as the
session calls it, same seeds) is timed, after one untimed warm-up call on 8 images. The last line estimates
a full default-shaped matrix with every measured attack: per model, one base craft and three prunings'
white-box crafts per attack (4 x the measured time), excluding pruning, fine-tuning and evaluation.

Not a test: seconds on a shared machine are noisy, and the numbers are reported, never asserted.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from pytest_advprune.attacks import AttackGenerator, build_attack
from pytest_advprune.builtins import load_builtins
from pytest_advprune.data import load_digits
from pytest_advprune.matrix import DEFAULT_MODELS, DEFAULT_PRUNINGS
from pytest_advprune.registry import ATTACKS, MODELS, AttackEntry, ModelEntry
from pytest_advprune.seeds import derive_seed
from pytest_advprune.specs import AttackSpec, parse_attack

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
    attack = build_attack(spec.entry, spec.kwargs, model, entry.normalization, SEED)
    if type(attack).__module__.startswith("torchattacks"):
        return f"torchattacks.{type(attack).__name__}"
    return "plugin"


def torchattacks_equivalent(spec: AttackSpec) -> AttackEntry | None:
    """An attack entry whose factory builds the torchattacks attack doing one start of ``spec``'s work, or
    None. It keeps ``spec``'s norm and parameters (``restarts`` included), so the crafting layer runs it
    exactly as it runs the plugin's: the same restarts on the survivors, the same threat-model checks."""
    import torchattacks

    name = spec.entry.name
    norm = spec.entry.norm or "Linf"

    def factory(model: nn.Module, seed: int = 0, **p: Any) -> Any:  # ``seed``: the crafting layer's, per start
        if name == "fgsm":
            return torchattacks.FGSM(model, eps=p["eps"])
        if name == "mifgsm":
            return torchattacks.MIFGSM(model, eps=p["eps"], alpha=p["alpha"], steps=p["steps"], decay=p["decay"])
        if name == "apgd_t":
            return torchattacks.APGDT(
                model, eps=p["eps"], steps=p["steps"], n_restarts=1, n_classes=p["targets"] + 1, seed=seed
            )
        if name.startswith("apgd_"):
            loss = "dlr" if "dlr" in name else "ce"
            return torchattacks.APGD(
                model, norm=norm, eps=p["eps"], steps=p["steps"], n_restarts=1, loss=loss, seed=seed
            )
        if name == "square":
            return torchattacks.Square(model, eps=p["eps"], n_queries=p["n_queries"], p_init=p["p_init"], seed=seed)
        cls = torchattacks.PGD if name == "pgd_linf" else torchattacks.PGDL2
        return cls(model, eps=p["eps"], alpha=p["alpha"], steps=p["steps"], random_start=p["random_start"])

    if name not in ("fgsm", "mifgsm", "apgd_t", "square", "pgd_linf", "pgd_l2") and not name.startswith("apgd_"):
        return None
    # The plugin's own parameters that torchattacks has no counterpart for are dropped from the factory.
    return AttackEntry(f"torchattacks_{name}", factory, "benchmarks/attack_cost.py", spec.entry.defaults, "eps", norm)


def median_seconds(run: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def craft_seconds(
    spec: AttackSpec,
    model_name: str,
    images: torch.Tensor,
    labels: torch.Tensor,
    repeats: int,
    batch_size: int,
    attack: AttackEntry | None = None,
) -> float:
    """Median seconds of ``repeats`` crafting calls of ``spec`` (run by ``attack`` in its place, if given)
    on the base model ``model_name``."""
    entry = MODELS.get(model_name)
    module = base_module(entry)
    seed = derive_seed(SEED, "base", model_name, spec.id)  # the session's seed for a base model's examples
    generator = AttackGenerator(attack or spec.entry, spec.kwargs, entry.normalization, seed, batch_size)
    generator(module, images[:WARMUP_SAMPLES], labels[:WARMUP_SAMPLES])  # lazy initialisation, untimed
    return median_seconds(lambda: generator(module, images, labels), repeats)


def reference_seconds(
    spec: AttackSpec, model_name: str, images: torch.Tensor, labels: torch.Tensor, repeats: int, batch_size: int
) -> float | None:
    """Median seconds of the torchattacks equivalent of ``spec``, crafted exactly as ``craft_seconds``
    crafts the plugin's (same model, images, seed, restarts and checks), or None when there is none."""
    entry = torchattacks_equivalent(spec)
    if entry is None:
        return None
    return craft_seconds(spec, model_name, images, labels, repeats, batch_size, attack=entry)


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
    print("| attack | implementation | " + " | ".join(models) + " | sum | torchattacks | plugin/torchattacks |")
    print("|---|---|" + "---:|" * (len(models) + 3))
    total = 0.0
    first = MODELS.get(models[0])
    for spec in specs:
        kind = implementation(spec, base_module(first), first)
        row = [craft_seconds(spec, model, images, labels, args.repeats, args.batch_size) for model in models]
        total += sum(row)
        per_thousand = [1000.0 * seconds / count for seconds in row]
        cells = " | ".join(f"{value:.2f}" for value in per_thousand)
        theirs = [reference_seconds(spec, model, images, labels, args.repeats, args.batch_size) for model in models]
        side_by_side = " | "
        if None not in theirs and kind == "plugin":
            their_total = 1000.0 * sum(t for t in theirs if t is not None) / count
            side_by_side = f"{their_total:.2f} | {sum(per_thousand) / their_total:.2f}"
        print(f"| `{spec.id}` | {kind} | {cells} | {sum(per_thousand):.2f} | {side_by_side} |", flush=True)

    crafts = 1 + len(DEFAULT_PRUNINGS)
    print(
        f"\nestimate: a default-shaped matrix ({len(models)} model(s) x {crafts} crafts: base + "
        f"{len(DEFAULT_PRUNINGS)} prunings' white-box) with these {len(specs)} attack(s) at {count} samples spends "
        f"{crafts * total / 60.0:.2f} min crafting (excludes pruning, fine-tuning and evaluation)"
    )


if __name__ == "__main__":
    main()
