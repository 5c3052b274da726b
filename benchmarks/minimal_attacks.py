"""The plugin's minimal-perturbation L2 attacks next to torchattacks and foolbox, on every digits zoo model:
median L2 of the successful examples, success rate and seconds.

    python benchmarks/minimal_attacks.py                          # all models, 450 samples, 1 thread
    python benchmarks/minimal_attacks.py --models lenet,mlp --reference-samples 450

Success: the model classifies the clean sample correctly and its adversarial example wrongly (recomputed
here, whatever the attack claims); the rate is over the clean-correct samples, as in ``metrics.py``. The
median L2 is over the successful samples, in pixel space. The strong CW reference (foolbox with the paper's
9 binary-search steps and 1,000 Adam steps each) takes minutes per model, so by default it runs on the first
``--reference-samples`` samples only, next to the plugin's CW examples of the same samples (samples are
independent in both, so those come from its full run). "(same)": a row derived from the row above's run.

Not a test: seconds on a shared machine are noisy, and the numbers are reported, never asserted.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from pytest_advprune import zoo
from pytest_advprune.attacks.cw import carlini_wagner_l2
from pytest_advprune.attacks.deepfool import deepfool_l2
from pytest_advprune.builtins import load_builtins
from pytest_advprune.data import load_digits
from pytest_advprune.evaluation import PixelSpace

with warnings.catch_warnings():
    # foolbox 3.3.4 imports gaussian_filter from scipy.ndimage.filters, deprecated since SciPy 1.8.
    warnings.simplefilter("ignore", DeprecationWarning)
    from foolbox.attacks.base import MinimizationAttack
    from foolbox.attacks.carlini_wagner import L2CarliniWagnerAttack
    from foolbox.attacks.deepfool import L2DeepFoolAttack
    from foolbox.models.pytorch import PyTorchModel

Attack = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Outcome:
    median_l2: float | None
    success_rate: float
    seconds: float
    samples: int


def timed(attack: Attack, model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, float]:
    """``attack``'s adversarial images and the seconds it took."""
    start = time.perf_counter()
    adversarial = attack(model, images, labels).detach()
    return adversarial, time.perf_counter() - start


def judge(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor, adversarial: torch.Tensor, seconds: float
) -> Outcome:
    """Success and median L2 of ``adversarial``, judged by classifying the examples again."""
    with torch.no_grad():
        clean_correct = model(images).argmax(dim=1) == labels
        fooled = model(adversarial).argmax(dim=1) != labels
    success = clean_correct & fooled
    distances = (adversarial - images).flatten(1).norm(dim=1)[success].tolist()
    return Outcome(
        statistics.median(distances) if distances else None,
        100.0 * float(success.sum()) / max(int(clean_correct.sum()), 1),
        seconds,
        len(images),
    )


def report(
    name: str,
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    label: str,
    adversarial: torch.Tensor,
    seconds: float | None,
) -> float | None:
    """Print one row for the first ``len(adversarial)`` samples and return its median L2; ``seconds`` is
    None for a row derived from another row's run."""
    count = len(adversarial)
    outcome = judge(model, images[:count], labels[:count], adversarial, seconds or 0.0)
    median = "-" if outcome.median_l2 is None else f"{outcome.median_l2:.4f}"
    time_text = "(same)" if seconds is None else f"{seconds:.2f}"
    print(f"{name:<11}{label:<46}{count:>8}{median:>11}{outcome.success_rate:>8.1f}%{time_text:>9}", flush=True)
    return outcome.median_l2


def foolbox_attack(attack: MinimizationAttack) -> Attack:
    """A foolbox attack as ``attack(model, images, labels)``: unbounded (``epsilons=None``), on [0, 1]."""

    def run(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        _, adversarial, _ = attack(PyTorchModel(model, bounds=(0, 1)), images, labels, epsilons=None)
        return adversarial

    return run


def torchattacks_deepfool(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    import torchattacks

    adversarial: torch.Tensor = torchattacks.DeepFool(model, steps=50, overshoot=0.02)(images, labels)
    return adversarial


def torchattacks_cw(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    import torchattacks

    adversarial: torch.Tensor = torchattacks.CW(model, c=1, kappa=0, steps=50, lr=0.05)(images, labels)
    return adversarial


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=",".join(zoo.MODEL_NAMES), help="comma-separated zoo models")
    parser.add_argument("--samples", type=int, default=450, help="digits eval samples (450 = all)")
    parser.add_argument("--reference-samples", type=int, default=100, help="samples for the strong CW reference")
    parser.add_argument("--reference-steps", type=int, default=1000, help="Adam steps per binary-search step")
    parser.add_argument("--reference-search-steps", type=int, default=9, help="binary-search steps over c")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    load_builtins()
    data = load_digits()
    images, labels = data.eval_images[: args.samples], data.eval_labels[: args.samples]
    subset = min(args.reference_samples, len(images))
    strong = f"foolbox CW bs={args.reference_search_steps} steps={args.reference_steps} (strong ref)"
    foolbox_deepfool = foolbox_attack(L2DeepFoolAttack(steps=50, overshoot=0.02, candidates=10))
    foolbox_cw = foolbox_attack(
        L2CarliniWagnerAttack(binary_search_steps=args.reference_search_steps, steps=args.reference_steps)
    )

    print(f"torch {torch.__version__}, {args.threads} thread(s), {len(images)} samples, strong ref on {subset}")
    print(f"{'model':<11}{'attack':<46}{'samples':>8}{'median L2':>11}{'success':>9}{'seconds':>9}")
    for name in args.models.split(","):
        model = zoo.load(name).eval()
        normalization = zoo.NORMALIZATION[name]
        pixel_model = PixelSpace(model, normalization).eval() if normalization is not None else model

        row = functools.partial(report, name, pixel_model, images, labels)
        row("deepfool_l2 (ours)", *timed(deepfool_l2, pixel_model, images, labels))
        row("foolbox L2DeepFool", *timed(foolbox_deepfool, pixel_model, images, labels))
        adversarial, seconds = timed(torchattacks_deepfool, pixel_model, images, labels)
        row("torchattacks DeepFool", adversarial, seconds)
        # The plugin's current ``deepfool`` adapter: the same run, total perturbation scaled by (1 + overshoot).
        row("torchattacks DeepFool, total x1.02", (images + 1.02 * (adversarial - images)).clamp(0.0, 1.0), None)
        adversarial, seconds = timed(carlini_wagner_l2, pixel_model, images, labels)
        row("carlini_wagner_l2 (ours)", adversarial, seconds)
        row("torchattacks CW c=1 steps=50 lr=0.05", *timed(torchattacks_cw, pixel_model, images, labels))
        # The plugin's CW treats samples independently: its examples of the first samples are those a run on
        # them alone would give.
        ours = row("carlini_wagner_l2 (ours), same run, ref subset", adversarial[:subset], None)
        reference = row(strong, *timed(foolbox_cw, pixel_model, images[:subset], labels[:subset]))
        if ours is not None and reference is not None:
            print(f"{name:<11}{'  -> ours / strong ref median L2':<46}{'':>8}{ours / reference:>11.3f}", flush=True)


if __name__ == "__main__":
    main()
