"""attacks.py: the threat model (pixel range and eps ball), determinism, and the built-in attacks."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
import pytest
import torch
from conftest import tiny_conv_net
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from torch import nn

from pytest_advprune.attacks import build_attack, craft, project
from pytest_advprune.errors import ThreatModelError
from pytest_advprune.evaluation import normalize
from pytest_advprune.registry import ATTACKS, AttackEntry, Normalization, ParamValue
from pytest_advprune.specs import parse_attack

NORMALIZATION: Normalization = ((0.3,), (0.4,))
NORMALIZATIONS = [pytest.param(None, id="pixels"), pytest.param(NORMALIZATION, id="normalized")]

BOUNDED = [
    "apgd_ce:eps=0.1,steps=3",
    "apgd_dlr:eps=0.1,steps=3,restarts=2",
    "apgd_ce_l2:eps=0.5,steps=3",
    "apgd_dlr_l2:eps=0.5,steps=3",
    "apgd_t:eps=0.1,steps=3",
    "fgsm:0.1",
    "pgd_linf:eps=0.1,steps=3",
    "pgd_l2:eps=0.5,alpha=0.2,steps=3",
    "mifgsm:eps=0.1,steps=3",
    "square:eps=0.1,n_queries=10",
]


def linear_teacher(seed: int = 0) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """A linear model with the images it labels perfectly (its own predictions are the labels)."""
    generator = torch.Generator().manual_seed(seed)
    linear = nn.Linear(64, 10)
    with torch.no_grad():
        linear.weight.copy_(torch.randn(10, 64, generator=generator))
        linear.bias.zero_()
    model = nn.Sequential(nn.Flatten(), linear).eval()
    images = torch.rand(32, 1, 8, 8, generator=generator)
    with torch.no_grad():
        labels = model(images).argmax(1)
    return model, images, labels


def images_and_own_labels(
    model: nn.Module, normalization: Normalization | None, n: int = 12
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random images labelled with the model's own predictions, so every sample starts out correct and the
    attacks (Square in particular, which skips misclassified samples) really perturb them."""
    generator = torch.Generator().manual_seed(1)
    images = torch.rand(n, 1, 8, 8, generator=generator)
    with torch.no_grad():
        labels = model(normalize(images, normalization)).argmax(1)
    return images, labels


def run_attack(
    text: str,
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    normalization: Normalization | None = None,
    seed: int = 0,
    batch_size: int = 256,
) -> torch.Tensor:
    spec = parse_attack(text)
    entry, params = spec.entry, spec.kwargs
    attack = build_attack(entry, params, model, normalization, seed)
    return craft(attack, entry, params, images, labels, normalization, seed, batch_size)


def accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    with torch.no_grad():
        return float((model(images).argmax(1) == labels).float().mean())


def assert_in_threat_model(adv: torch.Tensor, images: torch.Tensor, norm: str | None, eps: float | None) -> None:
    assert adv.shape == images.shape
    assert adv.dtype == images.dtype
    assert torch.isfinite(adv).all()
    assert adv.min().item() >= 0.0
    assert adv.max().item() <= 1.0
    delta = (adv - images).flatten(1).double()
    if norm == "Linf":
        assert eps is not None
        assert delta.abs().max().item() <= eps + 1e-6
    elif norm == "L2":
        assert eps is not None
        assert delta.norm(dim=1).max().item() <= eps + 1e-5


# --- project ------------------------------------------------------------------------------------------


@st.composite
def projection_cases(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, str, float]:
    shape = draw(hnp.array_shapes(min_dims=2, max_dims=4, min_side=1, max_side=5))
    images = draw(hnp.arrays(np.float32, shape, elements=st.floats(0.0, 1.0, width=32)))
    adversarial = draw(
        hnp.arrays(np.float32, shape, elements=st.floats(-1e6, 1e6, width=32, allow_subnormal=False))
        | hnp.arrays(np.float32, shape, elements=st.floats(-2.0, 3.0, width=32))
    )
    norm = draw(st.sampled_from(["Linf", "L2"]))
    eps = draw(st.floats(0.0, 4.0) | st.sampled_from([0.0, 1e-3, 0.1, 0.5]))
    return images, adversarial, norm, eps


@settings(max_examples=300, deadline=None)
@given(case=projection_cases())
def test_project_lands_in_unit_box_and_eps_ball(case: tuple[np.ndarray, np.ndarray, str, float]) -> None:
    images_np, adversarial_np, norm, eps = case
    images, adversarial = torch.from_numpy(images_np), torch.from_numpy(adversarial_np)
    out = project(adversarial, images, norm, eps)
    assert out.shape == images.shape
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    delta = (out - images).flatten(1).double()
    if norm == "Linf":
        assert float(delta.abs().max()) <= eps + 1e-6
    else:
        assert float(delta.norm(dim=1).max()) <= eps + 1e-5


@settings(max_examples=100, deadline=None)
@given(case=projection_cases())
def test_project_keeps_points_already_inside(case: tuple[np.ndarray, np.ndarray, str, float]) -> None:
    images_np, adversarial_np, norm, eps = case
    images = torch.from_numpy(images_np)
    inside = project(torch.from_numpy(adversarial_np), images, norm, eps)
    # Projecting a point that satisfies the threat model does not move it (up to float error).
    again = project(inside, images, norm, eps)
    assert torch.allclose(again, inside, atol=2e-6, rtol=0)


@settings(max_examples=100, deadline=None)
@given(
    adversarial=hnp.arrays(np.float32, (3, 1, 2, 2), elements=st.floats(-5.0, 5.0, width=32)),
    norm=st.sampled_from([None, "Linf", "L2"]),
)
def test_project_without_bound_only_clamps(adversarial: np.ndarray, norm: str | None) -> None:
    images = torch.full((3, 1, 2, 2), 0.5)
    out = project(torch.from_numpy(adversarial), images, norm, None)
    assert np.array_equal(out.numpy(), np.clip(adversarial, 0.0, 1.0))


def test_project_examples() -> None:
    images = torch.tensor([[[[0.5, 0.95, 0.0, 0.2]]]])
    adversarial = torch.tensor([[[[0.9, 1.5, -0.3, 0.25]]]])
    expected_linf = torch.tensor([[[[0.6, 1.0, 0.0, 0.25]]]])
    assert torch.allclose(project(adversarial, images, "Linf", 0.1), expected_linf, atol=1e-7)
    # L2: a perturbation (0.3, 0.4) of norm 0.5 scaled to norm 0.25 is (0.15, 0.2).
    images = torch.tensor([[[[0.1, 0.1]]], [[[0.5, 0.5]]]])
    adversarial = torch.tensor([[[[0.4, 0.5]]], [[[0.6, 0.5]]]])
    out = project(adversarial, images, "L2", 0.25)
    assert torch.allclose(out[0], torch.tensor([[[0.25, 0.3]]]), atol=1e-6)
    assert torch.allclose(out[1], torch.tensor([[[0.6, 0.5]]]), atol=1e-7)  # norm 0.1: already inside
    # Out-of-box values are clamped first, then the remaining perturbation is scaled into the ball.
    out = project(torch.tensor([[[[3.1, 4.1]]]]), images[:1], "L2", 1.0)
    expected = 0.1 + 0.9 / np.sqrt(2 * 0.9**2)
    assert torch.allclose(out, torch.full((1, 1, 1, 2), float(expected)), atol=1e-6)


# --- the built-in attacks -----------------------------------------------------------------------------


@pytest.mark.parametrize("normalization", NORMALIZATIONS)
@pytest.mark.parametrize("text", BOUNDED)
def test_bounded_attacks_respect_the_threat_model(text: str, normalization: Normalization | None) -> None:
    model = tiny_conv_net()
    images, labels = images_and_own_labels(model, normalization)
    before = copy.deepcopy(model.state_dict())
    spec = parse_attack(text)
    adv = run_attack(text, model, images, labels, normalization, seed=3)
    eps = spec.kwargs["eps"]
    assert isinstance(eps, float)
    assert_in_threat_model(adv, images, spec.entry.norm, eps)
    assert not adv.requires_grad
    # The attack perturbs (every built-in moves each sample the model classifies correctly, fooled or not)
    # and leaves the model as it was.
    assert not torch.equal(adv, images)
    assert not model.training
    assert all(torch.equal(before[key], value) for key, value in model.state_dict().items())


@pytest.mark.parametrize("normalization", NORMALIZATIONS)
def test_square_perturbs_within_the_ball(normalization: Normalization | None) -> None:
    model, images, labels = linear_teacher()
    if normalization is not None:
        images, labels = images_and_own_labels(model, normalization, n=32)
    adv = run_attack("square:eps=0.2,n_queries=20", model, images, labels, normalization)
    assert_in_threat_model(adv, images, "Linf", 0.2)
    assert not torch.equal(adv, images)


@pytest.mark.parametrize(
    ("text", "norm", "eps"),
    [
        ("fgsm:0.1", "Linf", 0.1),
        ("pgd_linf:eps=0.1,alpha=0.02,steps=5", "Linf", 0.1),
        ("pgd_l2:eps=1.0,alpha=0.3,steps=5", "L2", 1.0),
        ("mifgsm:eps=0.1,steps=5", "Linf", 0.1),
    ],
)
@pytest.mark.parametrize("normalization", NORMALIZATIONS)
def test_attacks_lower_the_accuracy_of_a_perfect_model(
    text: str, norm: str, eps: float, normalization: Normalization | None
) -> None:
    model, images, labels = linear_teacher()
    if normalization is not None:
        images, labels = images_and_own_labels(model, normalization, n=32)
    assert accuracy(model, normalize(images, normalization), labels) == 1.0
    adv = run_attack(text, model, images, labels, normalization)
    assert_in_threat_model(adv, images, norm, eps)
    assert accuracy(model, normalize(adv, normalization), labels) <= 0.5


@pytest.mark.parametrize("normalization", NORMALIZATIONS)
def test_fgsm_is_one_signed_gradient_step(normalization: Normalization | None) -> None:
    model = tiny_conv_net()
    images, _ = images_and_own_labels(model, normalization)
    labels = torch.arange(len(images)) % 10
    x = images.clone().requires_grad_(True)
    loss = nn.functional.cross_entropy(model(normalize(x, normalization)), labels)
    (gradient,) = torch.autograd.grad(loss, x)
    expected = (images + 0.05 * gradient.sign()).clamp(0.0, 1.0)
    adv = run_attack("fgsm:0.05", model, images, labels, normalization)
    assert torch.allclose(adv, expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("normalization", NORMALIZATIONS)
def test_fgsm_with_zero_eps_returns_the_input(normalization: Normalization | None) -> None:
    model = tiny_conv_net()
    images, labels = images_and_own_labels(model, normalization)
    adv = run_attack("fgsm:0", model, images, labels, normalization)
    assert torch.equal(adv, images)


@pytest.mark.parametrize("normalization", NORMALIZATIONS)
@pytest.mark.parametrize(
    "text",
    ["pgd_linf:eps=0.1,steps=2", "pgd_l2:eps=0.5,steps=2", "square:eps=0.1,n_queries=10", "mifgsm:eps=0.1,steps=2"],
)
def test_crafting_is_deterministic_for_a_seed(text: str, normalization: Normalization | None) -> None:
    model, images, labels = linear_teacher()
    first = run_attack(text, model, images, labels, normalization, seed=7)
    torch.manual_seed(12345)  # the global generator's state must not matter
    torch.rand(100)
    second = run_attack(text, model, images, labels, normalization, seed=7)
    assert torch.equal(first, second)


def test_random_start_depends_on_the_seed() -> None:
    model, images, labels = linear_teacher()
    # One step of size 0 leaves only the random start: different seeds, different starts.
    text = "pgd_linf:eps=0.1,alpha=0,steps=1"
    first = run_attack(text, model, images, labels, seed=1)
    second = run_attack(text, model, images, labels, seed=2)
    assert not torch.equal(first, second)
    assert torch.equal(first, run_attack(text, model, images, labels, seed=1))
    assert_in_threat_model(first, images, "Linf", 0.1)


def test_crafting_in_batches_matches_one_batch() -> None:
    model = tiny_conv_net()
    images, labels = images_and_own_labels(model, None, n=13)
    whole = run_attack("fgsm:0.1", model, images, labels, batch_size=256)
    batched = run_attack("fgsm:0.1", model, images, labels, batch_size=5)
    assert torch.allclose(whole, batched, atol=1e-6, rtol=0)


def test_crafting_no_images_returns_an_empty_tensor() -> None:
    model = tiny_conv_net()
    images, labels = torch.zeros(0, 1, 8, 8), torch.zeros(0, dtype=torch.long)
    adv = run_attack("fgsm:0.1", model, images, labels)
    assert adv.shape == (0, 1, 8, 8)


@pytest.mark.parametrize("normalization", NORMALIZATIONS)
@pytest.mark.parametrize("text", ["cw_l2:steps=3,search_steps=2", "deepfool:steps=3"])
def test_minimal_attacks_run_and_keep_the_shape(text: str, normalization: Normalization | None) -> None:
    model, _, _ = linear_teacher()
    images, labels = images_and_own_labels(model, normalization, n=6)
    adv = run_attack(text, model, images, labels, normalization)
    assert parse_attack(text).entry.minimal
    assert_in_threat_model(adv, images, None, None)


def test_deepfool_flips_a_linear_model() -> None:
    model, images, labels = linear_teacher()
    adv = run_attack("deepfool:steps=10", model, images[:8], labels[:8])
    assert_in_threat_model(adv, images[:8], None, None)
    assert accuracy(model, adv, labels[:8]) < 1.0


# --- build_attack ---------------------------------------------------------------------------------------


class RecordingAttack:
    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs
        self.normalization: dict[str, Any] | None = None

    def set_normalization_used(self, mean: list[float], std: list[float]) -> None:
        self.normalization = {"mean": mean, "std": std}

    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return images + 10.0  # far outside the box and the ball: craft must project it back


def test_build_attack_passes_the_seed_only_to_factories_that_take_it() -> None:
    def with_seed(model: nn.Module, eps: float, seed: int = 0) -> RecordingAttack:
        return RecordingAttack(eps=eps, seed=seed)

    def without_seed(model: nn.Module, eps: float) -> RecordingAttack:
        return RecordingAttack(eps=eps)

    model = tiny_conv_net()
    seeded = build_attack(AttackEntry("s", with_seed, "test"), {"eps": 0.2}, model, None, 42)
    assert isinstance(seeded, RecordingAttack) and seeded.kwargs == {"eps": 0.2, "seed": 42}
    plain = build_attack(AttackEntry("p", without_seed, "test"), {"eps": 0.2}, model, NORMALIZATION, 42)
    assert isinstance(plain, RecordingAttack) and plain.kwargs == {"eps": 0.2}
    assert plain.normalization == {"mean": [0.3], "std": [0.4]}


class ShiftingAttack:
    """Returns the images moved by ``shift`` everywhere: an attack that may leave its threat model."""

    def __init__(self, shift: float) -> None:
        self.shift = shift

    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return images + self.shift


def craft_shifted(shift: float, norm: str | None, eps: float | None, minimal: bool = False) -> torch.Tensor:
    entry = AttackEntry("shifty", lambda model, **params: ShiftingAttack(shift), "conftest.py:7", norm=norm)
    entry = dataclasses.replace(entry, minimal=minimal)
    params: dict[str, Any] = {} if eps is None else {"eps": eps}
    images = torch.full((4, 1, 8, 8), 0.5)
    attack = build_attack(entry, params, tiny_conv_net(), None, 0)
    return craft(attack, entry, params, images, torch.zeros(4, dtype=torch.long), None, 0)


@pytest.mark.parametrize(
    ("shift", "norm", "eps", "largest"),
    [
        (0.6, None, None, "1.1"),
        (-0.7, "Linf", 0.9, "-0.2"),
        (0.2, "Linf", 0.1, "0.2 in Linf"),
        (0.1, "L2", 0.5, "0.8 in L2"),
    ],
)
def test_an_attack_that_leaves_its_threat_model_fails_with_the_largest_violation(
    shift: float, norm: str | None, eps: float | None, largest: str
) -> None:
    with pytest.raises(ThreatModelError) as error:
        craft_shifted(shift, norm, eps)
    assert largest in str(error.value) and "'shifty' (registered by conftest.py:7)" in str(error.value)


def test_float_noise_at_the_edge_of_the_threat_model_is_projected_not_failed() -> None:
    adversarial = craft_shifted(0.1 + 1e-7, "Linf", 0.1)
    assert (adversarial - 0.5).abs().max() <= 0.1 + 1e-7


def test_a_minimal_attacks_eps_is_a_reading_budget_not_a_ball() -> None:
    """DeepFool and CW are unbounded: their examples are measured, never projected into eps."""
    adversarial = craft_shifted(0.3, "Linf", 0.1, minimal=True)
    assert torch.allclose(adversarial, torch.full_like(adversarial, 0.8))


def test_plain_callable_attack_on_a_normalized_model_sees_pixel_space() -> None:
    """A project's own attack (no set_normalization_used) gets the model behind its normalization."""
    from pytest_advprune.evaluation import PixelSpace, forward_in_pixel_space

    normalization = ((0.3,), (0.4,))
    model = tiny_conv_net()
    seen: list[nn.Module] = []

    def sign_step(target: nn.Module, eps: float) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        seen.append(target)

        def attack(images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
            images = images.clone().requires_grad_(True)
            loss = nn.functional.cross_entropy(target(images), labels)
            (grad,) = torch.autograd.grad(loss, images)
            return (images + eps * grad.sign()).clamp(0, 1).detach()

        return attack

    entry = AttackEntry("sign_step", sign_step, "test", {"eps": 0.1}, "eps", "Linf")
    images = torch.rand(6, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    labels = torch.arange(6) % 10
    adversarial = craft(
        build_attack(entry, {"eps": 0.1}, model, normalization, 0),
        entry,
        {"eps": 0.1},
        images,
        labels,
        normalization,
        0,
    )
    assert isinstance(seen[-1], PixelSpace)
    # The same step computed by hand through the normalization, in pixel space.
    pixels = images.clone().requires_grad_(True)
    loss = nn.functional.cross_entropy(forward_in_pixel_space(model, pixels, normalization), labels)
    (grad,) = torch.autograd.grad(loss, pixels)
    expected = (images + 0.1 * grad.sign()).clamp(0, 1)
    assert torch.allclose(adversarial, expected, atol=1e-6)


@pytest.mark.parametrize("attack_class", ["FGSM", "MIFGSM"])
def test_a_plain_callable_on_a_normalized_model_leaves_it_in_eval_mode(attack_class: str) -> None:
    """A torchattacks attack built on the PixelSpace wrapper "restores" the wrapper's mode afterwards;
    a wrapper that started in training mode used to put the wrapped BatchNorm model into training mode."""
    torchattacks = pytest.importorskip("torchattacks")
    from pytest_advprune.evaluation import PixelSpace

    class Plain:  # hides torchattacks' set_normalization_used, so the plugin wraps the model instead
        def __init__(self, attack: Any) -> None:
            self.attack = attack

        def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
            return self.attack(images, labels)  # type: ignore[no-any-return]

    def factory(target: nn.Module, eps: float) -> Plain:
        return Plain(getattr(torchattacks, attack_class)(target, eps=eps))

    params: dict[str, ParamValue] = {"eps": 0.1}
    entry = AttackEntry("plain", factory, "test", params, "eps", "Linf")
    model = tiny_conv_net()
    images, labels = images_and_own_labels(model, NORMALIZATION)
    attack = build_attack(entry, params, model, NORMALIZATION, 0)
    assert isinstance(attack, Plain) and isinstance(attack.attack.model, PixelSpace)
    craft(attack, entry, params, images, labels, NORMALIZATION, 0)
    assert not any(module.training for module in model.modules())


def test_deepfool_examples_stay_adversarial_when_evaluated_again() -> None:
    """torchattacks' DeepFool stops on the decision boundary, where re-evaluating flipped about half of
    the zoo MLP's examples back; with the overshoot applied to the total perturbation none does."""
    from pytest_advprune import zoo
    from pytest_advprune.data import load_digits

    model, data = zoo.load("mlp"), load_digits()
    images, labels = data.eval_images[:24], data.eval_labels[:24]
    entry = ATTACKS.get("deepfool")
    params = dict(parse_attack("deepfool").kwargs)
    adversarial = craft(build_attack(entry, params, model, None, 0), entry, params, images, labels, None, 0)
    with torch.no_grad():
        still_right = (model(adversarial).argmax(1) == labels).float().mean().item()
    assert still_right == 0.0


class MeanClassifier(nn.Module):
    """Class = the tenth of [0, 1] the image's mean pixel falls in: shifting every pixel by 0.1 fools it."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        classes = (images.flatten(1).mean(1) * 10).floor().clamp(0, 9).long()
        return nn.functional.one_hot(classes, 10).float()


class CoinFlipAttack:
    """Fools each sample it is given with probability 1/2 (from the global generator, which ``craft``
    seeds), and records which samples it saw and which it fooled, by their tag pixel."""

    log: ClassVar[list[tuple[set[int], set[int]]]] = []

    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        flips = torch.rand(len(images)) < 0.5
        tags = [round(float(v) * 1000) for v in images[:, 0, 0, 0]]
        CoinFlipAttack.log.append((set(tags), {t for t, f in zip(tags, flips.tolist(), strict=True) if f}))
        shifted = images.clone()
        shifted[flips, :, 1:] += 0.1  # every pixel but the tag row: the mean moves up one class
        return shifted


def test_restarts_run_on_survivors_only_and_keep_the_worst_case_per_sample() -> None:
    from pytest_advprune.attacks import AttackGenerator

    images = torch.full((40, 1, 8, 8), 0.44)
    images[:, 0, 0, 0] = torch.arange(40) / 1000  # a tag per sample; the mean stays in class 4
    labels = MeanClassifier()(images).argmax(1)
    assert (labels == 4).all()
    entry = AttackEntry("coin", lambda model, eps: CoinFlipAttack(), "test", {"eps": 0.1, "restarts": 4}, "eps", "Linf")
    CoinFlipAttack.log = []
    adversarial = AttackGenerator(entry, {"eps": 0.1, "restarts": 4}, None, seed=3)(MeanClassifier(), images, labels)

    assert len(CoinFlipAttack.log) == 4
    survivors = set(range(40))
    for seen, fooled in CoinFlipAttack.log:
        assert seen == survivors  # each start runs on exactly the samples no earlier start fooled
        survivors -= fooled
    robust = MeanClassifier()(adversarial).argmax(1) == labels
    assert set(robust.nonzero().squeeze(1).tolist()) == survivors
    assert 0 < len(survivors) < 40 * 0.5


def test_restarts_without_a_random_start_run_once() -> None:
    """A deterministic attack would repeat the same run on every restart: it runs once."""
    from pytest_advprune.attacks import AttackGenerator

    model = tiny_conv_net()
    images, labels = images_and_own_labels(model, None)
    spec = parse_attack("pgd_linf:eps=0.001,steps=2,random_start=false,restarts=5")
    once = parse_attack("pgd_linf:eps=0.001,steps=2,random_start=false,restarts=1")
    calls: list[int] = []
    entry = dataclasses.replace(spec.entry, factory=lambda m, **p: counted(spec.entry.factory(m, **p), calls))
    adversarial = AttackGenerator(entry, spec.kwargs, None, 0)(model, images, labels)
    assert (model(adversarial).argmax(1) == labels).any()  # survivors a restart would have run on
    assert len(calls) == 1
    assert torch.equal(
        AttackGenerator.for_spec(spec, None, 0)(model, images, labels),
        AttackGenerator.for_spec(once, None, 0)(model, images, labels),
    )


def counted(attack: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], calls: list[int]) -> Any:
    def run(images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        calls.append(len(images))
        return attack(images, labels)

    return run


@pytest.mark.parametrize("text", ["pgd_linf:eps=0.05,alpha=0.01,steps=10", "pgd_l2:eps=0.3,alpha=0.05,steps=10"])
def test_early_stopping_keeps_the_first_fooling_iterate_and_leaves_the_others_alone(text: str) -> None:
    """With early stopping, a sample fooled at some iterate keeps that iterate (inside the threat model
    and misclassified); every sample the full run does not fool follows the same trajectory as without
    early stopping; and no sample the full run fools escapes (each step depends on its own gradient)."""
    from pytest_advprune import zoo
    from pytest_advprune.attacks import AttackGenerator
    from pytest_advprune.data import load_digits

    model, data = zoo.load("mlp").eval(), load_digits()
    images, labels = data.eval_images[:120], data.eval_labels[:120]
    spec = parse_attack(text + ",restarts=1")
    full = parse_attack(text + ",restarts=1,early_stop=false")
    stopped = AttackGenerator.for_spec(spec, None, 0)(model, images, labels)
    complete = AttackGenerator.for_spec(full, None, 0)(model, images, labels)
    with torch.no_grad():
        stopped_right = model(stopped).argmax(1) == labels
        complete_right = model(complete).argmax(1) == labels
    assert_in_threat_model(stopped, images, spec.entry.norm, float(spec.kwargs["eps"]))
    assert not (stopped_right & ~complete_right).any()  # fooled by the full run -> fooled here too
    same = (stopped - complete).flatten(1).abs().amax(1) < 1e-6
    assert same[stopped_right].all()  # survivors: identical trajectories
    assert (~same).any()  # some samples were frozen early...
    assert not stopped_right[~same].any()  # ...each at an iterate that fools the model
