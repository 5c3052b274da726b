"""How converged are the default attacks? Robust accuracy of each zoo model (base and pruned) under each
bounded default attack, against more steps, more restarts and APGD, side by side in one run.

    python benchmarks/attack_strength.py                          # every zoo model, base + every default pruning
    python benchmarks/attack_strength.py --models vgg --variants base,channel:0.5 --attacks pgd_linf --threads 2

Each row is one attack configuration; each column one model variant; each number the robust accuracy
(% of the 450 digits evaluation images classified correctly after the attack, white-box). A default is
converged when it is within 1 point of the strongest configuration measured on every column. Restarts
are the plugin's: each new start runs only on the samples every earlier start left robust, and a
sample counts as robust only if it survives every start. The pruned models are built and fine-tuned
exactly as the suite builds them (same seeds), through the plugin's session.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from dataclasses import replace

import pytest
import torch

from pytest_advprune.attacks import AttackGenerator
from pytest_advprune.builtins import load_builtins
from pytest_advprune.evaluation import correct_predictions
from pytest_advprune.matrix import DEFAULT_ATTACKS, DEFAULT_MODELS, DEFAULT_PRUNINGS
from pytest_advprune.options import read_settings
from pytest_advprune.session import AdvPruneSession
from pytest_advprune.specs import parse_attack, parse_pruning

# (steps, restarts) of the PGD configurations measured. The step size follows Madry et al.'s
# 2.5 * eps / steps, so every configuration can cross the ball 2.5 times; the strongest ones (100 steps,
# 10 restarts; APGD-CE with 5) are the references a default must come within 1 point of.
PGD_GRID = ((10, 1), (10, 5), (10, 10), (20, 5), (20, 10), (50, 10), (100, 10))


def configurations(attack: str) -> list[str]:
    """The matrix lines measured for one default attack; the default's own line comes first."""
    spec = parse_attack(attack)
    eps = float(spec.kwargs["eps"])
    name = spec.name
    lines = [attack]
    if name in ("pgd_linf", "pgd_l2"):
        for steps, restarts in PGD_GRID:
            lines.append(f"{name}:eps={eps:g},steps={steps},alpha={2.5 * eps / steps:.6g},restarts={restarts}")
        suffix = "_l2" if name == "pgd_l2" else ""
        lines.append(f"apgd_ce{suffix}:eps={eps:g},steps=100,restarts=5")
        lines.append(f"apgd_dlr{suffix}:eps={eps:g},steps=100")
        if not suffix:  # torchattacks' APGD-T is the L-inf one of AutoAttack
            lines.append(f"apgd_t:eps={eps:g},steps=100")
    elif name == "mifgsm":
        for steps in (10, 20, 50, 100):
            lines.append(f"mifgsm:eps={eps:g},steps={steps},alpha={eps / steps:.6g}")
    elif name == "fgsm":  # one step by definition: the reference shows how far it is from a strong attack
        lines.append(f"pgd_linf:eps={eps:g},steps=100,alpha={2.5 * eps / 100:.6g},restarts=10")
    return lines


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=",".join(DEFAULT_MODELS))
    parser.add_argument("--variants", default="base," + ",".join(DEFAULT_PRUNINGS), help="base and/or prunings")
    parser.add_argument("--attacks", default=",".join(a.split(":")[0] for a in DEFAULT_ATTACKS))
    parser.add_argument("--samples", type=int, default=None, help="evaluation images (default: all 450)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--configurations", default=None, help="semicolon-separated matrix lines to measure instead of the grid"
    )
    args = parser.parse_args(argv)

    load_builtins()
    torch.set_num_threads(args.threads)
    # The suite's own settings (ini defaults), so the pruned models are the suite's pruned models.
    config = pytest.Config.fromdictargs({}, ["-p", "no:cacheprovider", "--assert=plain"])
    settings = replace(read_settings(config), samples=args.samples, threads=args.threads)
    session = AdvPruneSession(settings)
    defaults = {line.split(":")[0]: line for line in DEFAULT_ATTACKS}
    models = args.models.split(",")
    variants = args.variants.split(",")
    groups = {family: configurations(defaults[family]) for family in args.attacks.split(",")}
    if args.configurations:  # the first line plays the default's part: its gap to the strongest is printed
        groups = {"chosen configurations": args.configurations.split(";")}
    for title, lines in groups.items():
        columns = [f"{m}/{v}" for m in models for v in variants]
        print(f"\n## {title} (first line: {lines[0]})\n")
        print("| configuration | " + " | ".join(columns) + " | seconds |")
        print("|---|" + "---:|" * (len(columns) + 1))
        table: dict[str, list[float]] = {}
        for line in lines:
            spec = parse_attack(line)
            row, seconds = [], 0.0
            for model in models:
                base = session.base_model(model)
                data = session.eval_set(base.entry.dataset)
                for variant in variants:
                    module = (
                        base.module if variant == "base" else session.pruned_model(model, parse_pruning(variant)).module
                    )
                    generator = AttackGenerator.for_spec(spec, base.entry.normalization, seed=1)
                    start = time.perf_counter()
                    adversarial = generator(module, data.images, data.labels)
                    seconds += time.perf_counter() - start
                    hits = correct_predictions(module, adversarial, data.labels, base.entry.normalization)
                    row.append(100.0 * float(hits.float().mean()))
            table[line] = row
            print(f"| `{line}` | " + " | ".join(f"{v:.1f}" for v in row) + f" | {seconds:.1f} |", flush=True)
        strongest = [min(column) for column in zip(*table.values(), strict=True)]
        gaps = [d - s for d, s in zip(table[lines[0]], strongest, strict=True)]
        print("| **strongest** | " + " | ".join(f"{v:.1f}" for v in strongest) + " | |")
        print(f"\nfirst line's largest gap to the strongest: {max(gaps):.1f} points ({columns[gaps.index(max(gaps))]})")


if __name__ == "__main__":
    main()
