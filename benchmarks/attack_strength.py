"""Are the default bounded attacks converged? Each default's robust accuracy on every zoo variant (5 bases,
each with the 3 default prunings) against two strong references, side by side in one run.

    python benchmarks/attack_strength.py                      # the defaults of the matrix, all 20 variants
    python benchmarks/attack_strength.py --models vgg --variants base,channel:0.5
    python benchmarks/attack_strength.py --candidates "apgd_ce:eps=0.1,steps=50,restarts=2"

The references, per norm (eps 0.1 L-inf, 0.5 L2):

- **PGD-100x5**: torchattacks' ``PGD`` (``PGDL2``) with 100 steps of alpha 0.01 (L-inf; 0.05 in L2, the
  same fraction of eps), random start, 5 restarts, each on the samples every earlier one left robust.
  torchattacks is an implementation independent of the plugin's.
- **APGD-CE-100x5**: the plugin's APGD-CE with 100 steps and 5 restarts (the tests check it sample by
  sample against an independent reference, and against torchattacks' ``APGD``).
- **stronger**: the lower of the two robust accuracies, the bar a default must come within 1.5 points of.
- **worst case**: a sample counts as robust only if it survives both references (per sample), a stricter
  bar than either: the two references together are ten diverse starts.

Each number is the white-box robust accuracy (% of the 450 digits evaluation images classified correctly
after the attack). A default converges when it is within 1.5 points of the stronger reference on every
variant; the lines after each table give each attack's largest gap to the stronger reference and to the
per-sample worst case. The pruned models are built and fine-tuned exactly as
the suite builds them (same seeds), through the plugin's session.
"""

from __future__ import annotations

import argparse
import functools
import time
from collections.abc import Callable, Sequence
from dataclasses import replace

import pytest
import torch
from torch import nn

from pytest_advprune.attacks import AttackGenerator
from pytest_advprune.builtins import load_builtins
from pytest_advprune.evaluation import PixelSpace, correct_predictions
from pytest_advprune.matrix import DEFAULT_ATTACKS, DEFAULT_MODELS, DEFAULT_PRUNINGS
from pytest_advprune.options import read_settings
from pytest_advprune.registry import Normalization
from pytest_advprune.session import AdvPruneSession
from pytest_advprune.specs import parse_attack, parse_pruning

REFERENCE_STEPS, REFERENCE_RESTARTS = 100, 5
REFERENCE_ALPHA = {"Linf": 0.01, "L2": 0.05}  # 10% of eps 0.1 (L-inf) and 0.5 (L2)


def torchattacks_pgd(
    model: nn.Module, normalization: Normalization | None, norm: str, eps: float, seed: int
) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """torchattacks' PGD, on the model in pixel space, its random start seeded by ``seed``."""
    import torchattacks

    pixel_model = PixelSpace(model, normalization) if normalization is not None else model
    cls = torchattacks.PGD if norm == "Linf" else torchattacks.PGDL2
    attack = cls(pixel_model, eps=eps, alpha=REFERENCE_ALPHA[norm], steps=REFERENCE_STEPS, random_start=True)

    def run(images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        torch.manual_seed(seed)  # torchattacks draws its random start from the global generator
        adversarial: torch.Tensor = attack(images, labels)
        return adversarial

    return run


def robust_after_restarts(
    model: nn.Module,
    normalization: Normalization | None,
    images: torch.Tensor,
    labels: torch.Tensor,
    attack_for_seed: Callable[[int], Callable[[torch.Tensor, torch.Tensor], torch.Tensor]],
) -> torch.Tensor:
    """Which samples survive every one of the reference's restarts (each on the survivors of the earlier)."""
    robust = correct_predictions(model, images, labels, normalization)
    for restart in range(REFERENCE_RESTARTS):
        index = robust.nonzero().squeeze(1)
        if len(index) == 0:
            break
        adversarial = attack_for_seed(restart)(images[index], labels[index])
        robust[index] = correct_predictions(model, adversarial, labels[index], normalization)
    return robust


def robust_under(
    line: str,
    model: nn.Module,
    normalization: Normalization | None,
    images: torch.Tensor,
    labels: torch.Tensor,
    seed: int,
) -> torch.Tensor:
    """Which samples the plugin's attack ``line`` (a matrix line), seeded by ``seed``, leaves correctly
    classified."""
    generator = AttackGenerator.for_spec(parse_attack(line), normalization, seed=seed)
    adversarial = generator(model, images, labels)
    return correct_predictions(model, adversarial, labels, normalization)


def percent(mask: torch.Tensor) -> float:
    return 100.0 * float(mask.float().mean())


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=",".join(DEFAULT_MODELS))
    parser.add_argument("--variants", default="base," + ",".join(DEFAULT_PRUNINGS), help="base and/or prunings")
    parser.add_argument("--samples", type=int, default=None, help="evaluation images (default: all 450)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--norms", default="Linf,L2", help="which balls to measure: Linf, L2 or both")
    parser.add_argument(
        "--seed",
        type=int,
        default=2,
        help="seed of the measured attacks; the references use others (0 to 4 for torchattacks' PGD restarts, 1 "
        "for APGD-CE), so a default's gap includes the draw-to-draw noise a suite's own seeds meet",
    )
    parser.add_argument(
        "--candidates",
        default=None,
        help="semicolon-separated matrix lines measured next to the defaults (bounded, eps 0.1 L-inf or 0.5 L2)",
    )
    args = parser.parse_args(argv)

    load_builtins()
    torch.set_num_threads(args.threads)
    # The suite's own settings (ini defaults), so the pruned models are the suite's pruned models.
    config = pytest.Config.fromdictargs({}, ["-p", "no:cacheprovider", "--assert=plain"])
    settings = replace(read_settings(config), samples=args.samples, threads=args.threads)
    session = AdvPruneSession(settings)
    lines = [line for line in DEFAULT_ATTACKS if parse_attack(line).name not in ("fgsm", "mifgsm")]
    lines += args.candidates.split(";") if args.candidates else []
    by_norm: dict[str, list[str]] = {}
    for line in lines:
        spec = parse_attack(line)
        assert spec.entry.norm is not None, f"{line} is not a bounded attack"
        by_norm.setdefault(spec.entry.norm, []).append(line)

    for norm, measured in by_norm.items():
        if norm not in args.norms.split(","):
            continue
        eps = float(parse_attack(measured[0]).kwargs["eps"])
        header = ["PGD-100x5 (torchattacks)", "APGD-CE-100x5", "stronger", "worst case", *(f"`{m}`" for m in measured)]
        print(f"\n## {norm}, eps {eps:g}\n")
        print("| variant | " + " | ".join(header) + " |")
        print("|---|" + "---:|" * len(header))
        gaps: dict[str, list[tuple[float, str]]] = {line: [] for line in measured}
        worst_gaps: dict[str, list[tuple[float, str]]] = {line: [] for line in measured}
        seconds: dict[str, float] = dict.fromkeys(header[:2] + header[4:], 0.0)
        apgd_line = (
            f"apgd_ce{'_l2' if norm == 'L2' else ''}:eps={eps:g},steps={REFERENCE_STEPS},restarts={REFERENCE_RESTARTS}"
        )
        for model_name in args.models.split(","):
            base = session.base_model(model_name)
            normalization = base.entry.normalization
            data = session.eval_set(base.entry.dataset)
            x, y = data.images, data.labels
            for variant in args.variants.split(","):
                module = (
                    base.module
                    if variant == "base"
                    else session.pruned_model(model_name, parse_pruning(variant)).module
                )
                module.eval()
                start = time.perf_counter()
                reference = functools.partial(torchattacks_pgd, module, normalization, norm, eps)
                pgd = robust_after_restarts(module, normalization, x, y, reference)
                seconds[header[0]] += time.perf_counter() - start
                start = time.perf_counter()
                apgd = robust_under(apgd_line, module, normalization, x, y, seed=1)
                seconds[header[1]] += time.perf_counter() - start
                worst = pgd & apgd
                row = [percent(pgd), percent(apgd), min(percent(pgd), percent(apgd)), percent(worst)]
                for line, title in zip(measured, header[4:], strict=True):
                    start = time.perf_counter()
                    value = percent(robust_under(line, module, normalization, x, y, seed=args.seed))
                    seconds[title] += time.perf_counter() - start
                    row.append(value)
                    gaps[line].append((value - row[2], f"{model_name}/{variant}"))
                    worst_gaps[line].append((value - row[3], f"{model_name}/{variant}"))
                print(f"| {model_name}/{variant} | " + " | ".join(f"{v:.1f}" for v in row) + " |", flush=True)
        print("| seconds | " + " | ".join(f"{seconds[h]:.0f}" if h in seconds else "" for h in header) + " |\n")
        for line in measured:
            (gap, where), (worst_gap, worst_where) = max(gaps[line]), max(worst_gaps[line])
            print(
                f"`{line}`: largest gap {gap:+.1f} points to the stronger reference ({where}), "
                f"{worst_gap:+.1f} to the worst case ({worst_where})"
            )


if __name__ == "__main__":
    main()
