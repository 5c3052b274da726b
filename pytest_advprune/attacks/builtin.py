"""The built-in attacks: adapters over torchattacks, and the plugin's own where torchattacks departs
from the paper.

Defaults suit images in [0, 1] (the digits are 8x8, so an L-inf epsilon of 0.1 is a visible but
label-preserving change, and an L2 epsilon of 0.5 is the same budget as changing 25 pixels by 0.1).
"""

from __future__ import annotations

import torch
from torch import nn

from pytest_advprune.registry import AttackCallable, register_attack


@register_attack("fgsm", primary="eps", norm="Linf", builtin=True, eps=0.1)
def fgsm(model: nn.Module, eps: float) -> AttackCallable:
    """Fast Gradient Sign Method (Goodfellow et al., 2015): one signed-gradient step of size eps."""
    import torchattacks

    return torchattacks.FGSM(model, eps=eps)  # type: ignore[no-any-return]


@register_attack(
    "pgd_linf", primary="eps", norm="Linf", builtin=True, eps=0.1, alpha=0.02, steps=10, random_start=True, restarts=1
)
def pgd_linf(model: nn.Module, eps: float, alpha: float, steps: int, random_start: bool) -> AttackCallable:
    """Projected Gradient Descent in the L-inf ball (Madry et al., 2018)."""
    import torchattacks

    return torchattacks.PGD(model, eps=eps, alpha=alpha, steps=steps, random_start=random_start)  # type: ignore[no-any-return]


@register_attack(
    "pgd_l2", primary="eps", norm="L2", builtin=True, eps=0.5, alpha=0.1, steps=10, random_start=True, restarts=1
)
def pgd_l2(model: nn.Module, eps: float, alpha: float, steps: int, random_start: bool) -> AttackCallable:
    """Projected Gradient Descent in the L2 ball.

    torchattacks steps by ``alpha * g / (|g| + 1e-10)``, with ``g`` the gradient of the batch-*mean* loss:
    for a confidently classified sample ``|g|`` falls near 1e-10 and its steps shrink (to 18% of alpha on
    the zoo's mlp), by an amount that depends on the batch size and on which batch the sample falls in.
    A negligible guard (1e-30) makes every step alpha long, as in the paper and in foolbox's ``L2PGD``,
    and each sample's example independent of its batch."""
    import torchattacks

    return torchattacks.PGDL2(  # type: ignore[no-any-return]
        model, eps=eps, alpha=alpha, steps=steps, random_start=random_start, eps_for_division=1e-30
    )


@register_attack("mifgsm", primary="eps", norm="Linf", builtin=True, eps=0.1, alpha=0.02, steps=10, decay=1.0)
def mifgsm(model: nn.Module, eps: float, alpha: float, steps: int, decay: float) -> AttackCallable:
    """Momentum Iterative FGSM (Dong et al., 2018), designed for examples that transfer between models."""
    import torchattacks

    return torchattacks.MIFGSM(model, eps=eps, alpha=alpha, steps=steps, decay=decay)  # type: ignore[no-any-return]


def _apgd(model: nn.Module, norm: str, eps: float, steps: int, loss: str, seed: int) -> AttackCallable:
    import torchattacks

    # One start per call: restarts are the crafting layer's (each on the survivors of the earlier ones).
    return torchattacks.APGD(model, norm=norm, eps=eps, steps=steps, n_restarts=1, seed=seed, loss=loss)  # type: ignore[no-any-return]


@register_attack("apgd_ce", primary="eps", norm="Linf", builtin=True, eps=0.1, steps=100, restarts=1)
def apgd_ce(model: nn.Module, eps: float, steps: int, seed: int = 0) -> AttackCallable:
    """Auto-PGD with cross-entropy (Croce & Hein, 2020), L-inf: PGD with momentum and a step size that
    halves when progress stalls, so it needs no step-size tuning."""
    return _apgd(model, "Linf", eps, steps, "ce", seed)


@register_attack("apgd_dlr", primary="eps", norm="Linf", builtin=True, eps=0.1, steps=100, restarts=1)
def apgd_dlr(model: nn.Module, eps: float, steps: int, seed: int = 0) -> AttackCallable:
    """Auto-PGD on the Difference-of-Logits-Ratio loss (untargeted), L-inf: invariant to the logits'
    scale, so it still finds directions where cross-entropy saturates."""
    return _apgd(model, "Linf", eps, steps, "dlr", seed)


@register_attack("apgd_ce_l2", primary="eps", norm="L2", builtin=True, eps=0.5, steps=100, restarts=1)
def apgd_ce_l2(model: nn.Module, eps: float, steps: int, seed: int = 0) -> AttackCallable:
    """Auto-PGD with cross-entropy in the L2 ball."""
    return _apgd(model, "L2", eps, steps, "ce", seed)


@register_attack("apgd_dlr_l2", primary="eps", norm="L2", builtin=True, eps=0.5, steps=100, restarts=1)
def apgd_dlr_l2(model: nn.Module, eps: float, steps: int, seed: int = 0) -> AttackCallable:
    """Auto-PGD on the DLR loss (untargeted) in the L2 ball."""
    return _apgd(model, "L2", eps, steps, "dlr", seed)


@register_attack("cw_l2", primary="c", builtin=True, c=1.0, kappa=0.0, steps=50, lr=0.05)
def cw_l2(model: nn.Module, c: float, kappa: float, steps: int, lr: float) -> AttackCallable:
    """Carlini-Wagner L2 (2017): minimal-perturbation attack, unbounded, trading distance against c."""
    import torchattacks

    return torchattacks.CW(model, c=c, kappa=kappa, steps=steps, lr=lr)  # type: ignore[no-any-return]


@register_attack("deepfool", primary="overshoot", builtin=True, overshoot=0.02, steps=50)
def deepfool(model: nn.Module, overshoot: float, steps: int) -> AttackCallable:
    """DeepFool (Moosavi-Dezfooli et al., 2016): minimal L2 step to the nearest linearized boundary."""
    import torchattacks

    attack = torchattacks.DeepFool(model, steps=steps, overshoot=overshoot)

    def run(images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        adversarial: torch.Tensor = attack(images, labels)
        # torchattacks applies the overshoot to each step, so the last point sits on the decision boundary
        # (logit margins of ~1e-6) where float noise picks the label; the original DeepFool scales the
        # total perturbation by (1 + overshoot), which is what makes its examples stay adversarial.
        return (images + (1 + overshoot) * (adversarial - images)).clamp(0.0, 1.0)

    return run


@register_attack("square", primary="eps", norm="Linf", builtin=True, eps=0.1, n_queries=300, p_init=0.8)
def square(model: nn.Module, eps: float, n_queries: int, p_init: float, seed: int = 0) -> AttackCallable:
    """Square Attack (Andriushchenko et al., 2020): score-based and gradient-free, L-inf."""
    import torchattacks

    return torchattacks.Square(model, norm="Linf", eps=eps, n_queries=n_queries, p_init=p_init, seed=seed)  # type: ignore[no-any-return]


@register_attack("autoattack", primary="eps", norm="Linf", slow=True, builtin=True, eps=0.1, n_classes=10)
def autoattack(model: nn.Module, eps: float, n_classes: int, seed: int = 0) -> AttackCallable:
    """AutoAttack, standard version (Croce & Hein, 2020): APGD-CE, APGD-T, FAB-T and Square. Slow."""
    import torchattacks

    return torchattacks.AutoAttack(model, norm="Linf", eps=eps, version="standard", n_classes=n_classes, seed=seed)  # type: ignore[no-any-return]
