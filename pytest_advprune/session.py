"""One test session's state: settings, the matrix, and caches that make every expensive thing happen once.

The base model is built once per session, each pruned model once per (model, pruning), the
adversarial examples crafted on a base model once per (model, attack) and reused by every pruning of
that base, as are the base model's predictions on clean and on those examples. Every random choice is
seeded from the names involved and ``--advprune-seed``, so a cell gives the same numbers whatever order
or process it runs in. Pruned models and crafted examples also go to the on-disk cache (``cache/``),
under keys that hold everything they depend on, so a later run reads instead of computing.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from pytest_advprune.cache import DiskCache, code_fingerprint, module_classes_fingerprint
from pytest_advprune.cache.keys import module_state_fingerprint
from pytest_advprune.cache.trust import cache_secret
from pytest_advprune.errors import IntegrityError, SetupError
from pytest_advprune.options import Settings
from pytest_advprune.seeds import derive_seed
from pytest_advprune.specs import AttackSpec, CellSpec, PruningSpec

if TYPE_CHECKING:
    import torch
    from torch import nn

    from pytest_advprune.cell import CellResult
    from pytest_advprune.data import Dataset
    from pytest_advprune.matrix import Matrix
    from pytest_advprune.metrics import SizeFigures
    from pytest_advprune.pruning import FineTuneSettings
    from pytest_advprune.registry import ModelEntry

T = TypeVar("T")


@dataclass(frozen=True)
class EvalSet:
    images: torch.Tensor  # on the session's device
    labels: torch.Tensor
    fingerprint: str


@dataclass(frozen=True)
class BaseModel:
    entry: ModelEntry
    module: nn.Module
    weights_fingerprint: str
    size: SizeFigures
    state: dict[str, torch.Tensor]  # a copy, to restore the model if an attack or pruning changes it
    modes: tuple[tuple[str, bool], ...]  # (module name, training) for every submodule


def training_modes(module: nn.Module) -> tuple[tuple[str, bool], ...]:
    return tuple((name or "(the model)", sub.training) for name, sub in module.named_modules())


@dataclass(frozen=True)
class PrunedModel:
    spec: PruningSpec
    module: nn.Module
    size: SizeFigures
    weights_fingerprint: str
    state: dict[str, torch.Tensor]  # a copy, to restore the model if a white-box attack changes it
    modes: tuple[tuple[str, bool], ...]


def _check_intact(
    module: nn.Module,
    fingerprint: str,
    state: dict[str, torch.Tensor],
    modes: tuple[tuple[str, bool], ...],
    what: tuple[str, str],
    culprit: str,
) -> None:
    """Raise ``IntegrityError`` naming ``culprit`` if ``module`` (``what``: its kind and name) no longer has
    the weights or train/eval flags recorded, after restoring them."""
    now = training_modes(module)
    weights_changed = weights_fingerprint(module) != fingerprint
    if not weights_changed and now == modes:
        return
    changes = []
    if weights_changed:
        changes.append("its weights")
    flipped = [
        f"{name!r} ({'training' if mode else 'eval'})"
        for (name, mode), (_, was) in zip(now, modes, strict=False)  # a pruning may add modules
        if mode != was
    ]
    if flipped:
        changes.append(f"the train/eval mode of {len(flipped)} module(s): {', '.join(flipped[:3])}")
    try:
        module.load_state_dict(state)
        for (_, training), sub in zip(modes, module.modules(), strict=True):
            sub.training = training
        restored = f"The {what[0]} was restored for the other cells."
    except (RuntimeError, ValueError):  # its structure changed too (modules replaced in place)
        restored = "Its structure changed too, so it cannot be restored: its other cells fail as well."
    raise IntegrityError(
        f"{culprit} changed the {what[0]} {what[1]!r}: {' and '.join(changes)}. An attack or pruning must leave "
        "the model it is given as it found it (prune a copy: copy.deepcopy(model); restore model.train(mode) after "
        f"crafting). {restored}"
    )


def weights_fingerprint(module: nn.Module) -> str:
    """SHA-256 over the state dict's tensors in key order, plus a digest of the key names."""
    import hashlib

    from pytest_advprune.data import fingerprint_tensors

    state = module.state_dict()
    keys = sorted(state)
    names = hashlib.sha256("\n".join(keys).encode()).hexdigest()[:16]
    return fingerprint_tensors(*(state[k] for k in keys)) + f"+keys:{names}"


def device_name(device: torch.device) -> str:
    """What computed the numbers, finer than the device type: the CPU's vector instruction set (AVX2 and
    AVX-512 machines round differently, and fine-tuning amplifies that) or the GPU model."""
    import torch

    if device.type == "cuda":
        return str(torch.cuda.get_device_name(device))
    if device.type == "cpu":
        return f"cpu ({torch.backends.cpu.get_cpu_capability()})"
    return device.type


class AdvPruneSession:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._matrix: Matrix | None = None
        self._datasets: dict[str, Dataset] = {}
        self._eval_sets: dict[str, EvalSet] = {}
        self._bases: dict[str, BaseModel] = {}
        self._pruned: dict[tuple[str, str], PrunedModel] = {}
        self._adversarials: dict[tuple[str, str], torch.Tensor] = {}
        self._results: dict[str, CellResult] = {}
        self._model_checks: dict[tuple[str, str], tuple[int, bool]] = {}
        self._base_correct: dict[tuple[str, str], torch.Tensor] = {}  # (model, attack id or "") -> hits
        self._dataset_fingerprints: dict[str, str] = {}
        self.cache = (
            DiskCache(settings.cache_dir, secret=cache_secret(), reads=settings.cache_reads)
            if settings.cache_dir
            else None
        )
        self.progress: Callable[[str], None] | None = None  # with -v: a line per pruned model and per craft

    # -- matrix ------------------------------------------------------------------------------------

    @property
    def matrix(self) -> Matrix:
        if self._matrix is None:
            from pytest_advprune.builtins import load_builtins
            from pytest_advprune.matrix import build_matrix

            load_builtins()
            self._matrix = build_matrix(self.settings)
        return self._matrix

    def check_datasets(self) -> None:
        """Load (and so validate) the dataset of every selected model, and check --advprune-samples against
        them, so that bad data stops the run with one message before any cell runs."""
        from pytest_advprune.matrix import MatrixError, is_selected_model
        from pytest_advprune.registry import MODELS

        names = {MODELS.get(model).dataset for model in self.matrix.models if is_selected_model(model, self.settings)}
        wanted = self.settings.samples
        for name in sorted(names):
            available = len(self.dataset(name).eval_labels)
            if wanted is not None and wanted > available:
                raise MatrixError(
                    f"--advprune-samples={wanted} exceeds the {available} evaluation images of dataset {name!r}. "
                    f"Use at most {available}, or omit it to use all."
                )

    # -- cached building blocks --------------------------------------------------------------------

    @property
    def device(self) -> torch.device:
        import torch

        return torch.device(self.settings.device)

    def threads(self) -> AbstractContextManager[None]:
        from pytest_advprune.pruning import torch_threads

        return torch_threads(self.settings.threads)

    def dataset(self, name: str) -> Dataset:
        if name not in self._datasets:
            from pytest_advprune.checkpoints import CheckpointError
            from pytest_advprune.data import Dataset, DatasetError
            from pytest_advprune.registry import DATASETS

            entry = DATASETS.get(name)
            try:
                dataset = entry.factory()
            except (DatasetError, CheckpointError, OSError) as error:
                raise SetupError(f"dataset {name!r} (registered by {entry.origin}) cannot be used: {error}") from None
            if not isinstance(dataset, Dataset):
                raise SetupError(
                    f"dataset {name!r} (registered by {entry.origin}) returned a {type(dataset).__name__}; a dataset "
                    "factory returns pytest_advprune.Dataset(...) or Dataset.from_splits(...)."
                )
            self._datasets[name] = dataset
        return self._datasets[name]

    def eval_set(self, dataset_name: str) -> EvalSet:
        """The first ``samples`` images of a seeded permutation of the eval split (all, by default)."""
        if dataset_name not in self._eval_sets:
            import torch

            from pytest_advprune.data import fingerprint_tensors

            dataset = self.dataset(dataset_name)
            images, labels = dataset.eval_images, dataset.eval_labels
            wanted = self.settings.samples
            if wanted is not None:
                if wanted > len(images):
                    raise ValueError(
                        f"--advprune-samples={wanted} exceeds the {len(images)} evaluation images of dataset "
                        f"{dataset_name!r}. Use at most {len(images)}, or omit it to use all."
                    )
                generator = torch.Generator().manual_seed(derive_seed(self.settings.seed, "subset", dataset_name))
                chosen = torch.randperm(len(images), generator=generator)[:wanted].sort().values
                images, labels = images[chosen], labels[chosen]
            self._eval_sets[dataset_name] = EvalSet(
                images.to(self.device), labels.to(self.device), fingerprint_tensors(images, labels)
            )
        return self._eval_sets[dataset_name]

    def base_model(self, name: str) -> BaseModel:
        if name not in self._bases:
            from torch import nn

            from pytest_advprune.checkpoints import CheckpointError
            from pytest_advprune.pruning import model_size
            from pytest_advprune.registry import MODELS

            entry = MODELS.get(name)
            try:
                built = entry.factory()
            except (CheckpointError, OSError) as error:
                raise SetupError(f"model {name!r} (registered by {entry.origin}) cannot be built: {error}") from None
            if not isinstance(built, nn.Module):
                raise SetupError(
                    f"model {name!r} (registered by {entry.origin}) returned a {type(built).__name__}, not an "
                    "nn.Module."
                )
            module = built.to(self.device).eval()
            for parameter in module.parameters():
                parameter.requires_grad_(True)
            example = self.dataset(entry.dataset).eval_images[:1].to(self.device)
            with self.threads():  # counting MACs runs a forward pass: keep it off the other cores too
                self._check_forward(entry, module, example)
                size = model_size(module, example)
            state = {key: value.detach().clone() for key, value in module.state_dict().items()}
            self._bases[name] = BaseModel(
                entry, module, weights_fingerprint(module), size, state, training_modes(module)
            )
        return self._bases[name]

    def check_base_intact(self, model: str, culprit: str) -> None:
        """Fail naming ``culprit`` if the base model's weights or train/eval flags changed since it was
        built, after restoring them so that the other cells measure the model that was registered."""
        base = self.base_model(model)
        what = ("base model", model)
        _check_intact(base.module, base.weights_fingerprint, base.state, base.modes, what, culprit)

    def check_pruned_intact(self, model: str, pruning: PruningSpec, culprit: str) -> None:
        """The same for a pruned model, after a white-box craft on it: its other cells (and the cache, keyed
        by its fingerprint) must see the model the pruning built."""
        pruned = self.pruned_model(model, pruning)
        what = ("pruned model", f"{model}-{pruning.id}")
        _check_intact(pruned.module, pruned.weights_fingerprint, pruned.state, pruned.modes, what, culprit)

    def _check_forward(self, entry: ModelEntry, module: nn.Module, example: torch.Tensor) -> None:
        """One image of the model's dataset through the model: a model built for other inputs (channels,
        size, classes) fails here with one message, not deep inside pruning or MAC counting."""
        import torch

        from pytest_advprune.evaluation import forward_in_pixel_space

        classes = self.dataset(entry.dataset).num_classes
        try:
            with torch.no_grad():
                logits = forward_in_pixel_space(module, example, entry.normalization)
        except RuntimeError as error:
            reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise SetupError(
                f"model {entry.name!r} (registered by {entry.origin}) cannot take the images of dataset "
                f"{entry.dataset!r}, of shape {tuple(example.shape[1:])} (C, H, W): {reason}. Build the model for "
                "these inputs, or give the dataset the channels and size the model expects (e.g. "
                "Dataset.from_splits(..., transform=...))."
            ) from None
        if logits.dim() != 2 or logits.shape[1] < classes:  # more outputs than classes can still classify
            raise SetupError(
                f"model {entry.name!r} (registered by {entry.origin}) returns outputs of shape "
                f"{tuple(logits.shape)} for one image, but dataset {entry.dataset!r} has {classes} classes: a "
                f"classifier for it returns logits of shape (N, {classes})."
            )

    def pruned_model(self, model: str, pruning: PruningSpec) -> PrunedModel:
        key = (model, pruning.id)
        if key not in self._pruned:
            import torch

            from pytest_advprune.cache.payloads import module_from_bytes, module_to_bytes
            from pytest_advprune.metrics import SizeFigures
            from pytest_advprune.pruning import PruningContext, model_size, prune_model

            base = self.base_model(model)
            dataset = self.dataset(base.entry.dataset)
            seed = derive_seed(self.settings.seed, "prune", model, pruning.id)

            def cache_key() -> dict[str, Any]:
                return {
                    **self._model_key(base),
                    "pruning": pruning.name,
                    "amount": pruning.amount,
                    "pruning_code": code_fingerprint(pruning.entry.function),
                    "fine_tune": self.fine_tune_settings.__dict__ if pruning.entry.fine_tune else None,
                    "dataset": self.dataset_fingerprint(base.entry.dataset),
                    "seed": seed,
                }

            def decode(data: bytes) -> tuple[nn.Module, SizeFigures] | None:
                loaded = module_from_bytes(data, base.module, self.device)
                if loaded is None:
                    return None
                try:  # a forward pass on one image: an entry that cannot compute is not usable
                    with torch.no_grad():
                        loaded[0](dataset.eval_images[:1].to(self.device))
                    return loaded[0], SizeFigures(**loaded[1]["size"])
                except Exception:  # any failure of a stored model means: recompute it
                    return None

            started = time.perf_counter()
            key_before = cache_key() if self.cache is not None else None
            cached = self._read("pruned_models", key_before, decode)
            if cached is not None:
                module, size = cached
                self._tell(f"pruned {model} with {pruning.id}: read from the cache")
            else:
                context = PruningContext(
                    dataset=dataset, device=self.device, seed=seed, normalization=base.entry.normalization
                )
                with self.threads():
                    module = prune_model(base.module, pruning.entry, pruning.amount, context, self.fine_tune_settings)
                    size = model_size(module, context.example_inputs)
                self.check_base_intact(model, f"pruning {pruning.name!r} (registered by {pruning.entry.origin})")
                if key_before is not None and self._unchanged(key_before, cache_key):
                    with self.threads():  # a read must rebuild exactly this model: checked on examples
                        examples = dataset.eval_images[:16].to(self.device)
                        payload = module_to_bytes(module, base.module, examples, {"size": size.__dict__})
                    self._write("pruned_models", key_before, payload)
                self._tell(f"pruned {model} with {pruning.id} in {time.perf_counter() - started:.1f} s")
            state = {name: value.detach().clone() for name, value in module.state_dict().items()}
            self._pruned[key] = PrunedModel(
                pruning, module, size, weights_fingerprint(module), state, training_modes(module)
            )
        return self._pruned[key]

    @property
    def fine_tune_settings(self) -> FineTuneSettings:
        from pytest_advprune.pruning import FineTuneSettings

        return FineTuneSettings(
            epochs=self.settings.finetune_epochs, learning_rate=self.settings.finetune_learning_rate
        )

    def base_adversarials(self, model: str, attack: AttackSpec) -> torch.Tensor:
        key = (model, attack.id)
        if key not in self._adversarials:
            base = self.base_model(model)
            seed = derive_seed(self.settings.seed, "base", model, attack.id)
            self._adversarials[key] = self._craft(
                base,
                base.module,
                base.weights_fingerprint,
                attack,
                seed,
                check=lambda: self.check_base_intact(
                    model, f"attack {attack.name!r} (registered by {attack.entry.origin})"
                ),
            )
        return self._adversarials[key]

    def pruned_adversarials(self, cell: CellSpec) -> torch.Tensor:
        """The white-box examples of a cell: its attack run on its pruned model (once per cell)."""
        base = self.base_model(cell.model)
        pruned = self.pruned_model(cell.model, cell.pruning)
        seed = derive_seed(self.settings.seed, "whitebox", cell.id)
        culprit = f"attack {cell.attack.name!r} (registered by {cell.attack.entry.origin})"
        return self._craft(
            base,
            pruned.module,
            pruned.weights_fingerprint,
            cell.attack,
            seed,
            check=lambda: self.check_pruned_intact(cell.model, cell.pruning, culprit),
            target=f"{cell.model}-{cell.pruning.id}",
        )

    def _craft(
        self,
        base: BaseModel,
        module: nn.Module,
        weights: str,
        attack: AttackSpec,
        seed: int,
        check: Callable[[], None] | None = None,
        target: str = "",
    ) -> torch.Tensor:
        """``attack`` run on ``module`` (the base model or a pruned one), read from the cache when it holds
        the result; ``check`` runs after computing and before caching, so a failed check is never cached."""
        import torch

        from pytest_advprune.attacks import AttackGenerator
        from pytest_advprune.cache.payloads import tensor_from_bytes, tensor_to_bytes

        data = self.eval_set(base.entry.dataset)

        def cache_key() -> dict[str, Any]:
            return {
                **self._model_key(base),
                "attacked_weights": weights,
                "attacked_code": module_classes_fingerprint(module),
                "attack": attack.name,
                "params": attack.kwargs,
                "attack_code": code_fingerprint(attack.entry.factory),
                "eval_set": data.fingerprint,
                "seed": seed,
                "batch_size": self.settings.batch_size,
            }

        def decode(payload: bytes) -> torch.Tensor | None:
            examples = tensor_from_bytes(payload, self.device)
            if examples is None or (examples.shape, examples.dtype) != (data.images.shape, data.images.dtype):
                return None  # intact, but not examples of these images
            if examples.layout != torch.strided or not bool(torch.isfinite(examples).all()):
                return None
            return examples if float(examples.min()) >= 0.0 and float(examples.max()) <= 1.0 else None

        target = target or f"{base.entry.name} (base)"
        started = time.perf_counter()
        key_before = cache_key() if self.cache is not None else None
        cached = self._read("adversarials", key_before, decode)
        if cached is not None:
            self._tell(f"crafted {attack.id} on {target}: read from the cache")
            return cached
        generator = AttackGenerator.for_spec(attack, base.entry.normalization, seed, self.settings.batch_size)
        with self.threads():
            adversarials = generator(module, data.images, data.labels)
        if check is not None:
            check()
        if key_before is not None and self._unchanged(key_before, cache_key):
            self._write("adversarials", key_before, tensor_to_bytes(adversarials))
        self._tell(f"crafted {attack.id} on {target} in {time.perf_counter() - started:.1f} s")
        return adversarials

    def _tell(self, line: str) -> None:
        if self.progress is not None:
            self.progress(line)

    # -- the on-disk cache -------------------------------------------------------------------------

    def _model_key(self, base: BaseModel) -> dict[str, Any]:
        """What every cached result of ``base`` depends on besides its own inputs."""
        import torch

        from pytest_advprune import __version__
        from pytest_advprune.cache.keys import library_versions, plugin_fingerprint

        return {
            "plugin": __version__,
            "plugin_code": plugin_fingerprint(),
            "project_code": self._project_code,
            "torch": torch.__version__,
            "libraries": library_versions(),
            "device": device_name(self.device),
            "threads": self.settings.threads,
            "model": base.entry.name,
            "model_code": code_fingerprint(base.entry.factory),
            "model_classes": module_classes_fingerprint(base.module),
            "model_state": module_state_fingerprint(base.module),
            "weights": base.weights_fingerprint,
            "normalization": base.entry.normalization,
        }

    @functools.cached_property
    def _project_code(self) -> str:
        """Every Python file under the rootdir, read once per session (the files do not change during it)."""
        from pytest_advprune.cache.keys import project_sources_fingerprint
        from pytest_advprune.paths import rootdir

        return project_sources_fingerprint(rootdir())

    def _unchanged(self, key_before: dict[str, Any], cache_key: Callable[[], dict[str, Any]]) -> bool:
        """Whether what a result depends on is still what its key said when it was computed. Keys are
        made right before computing, never remembered: a value a test changes between two cells is seen.
        A computation that changes its own inputs (a module imported on first call, a global it sets) is
        not written, so no later run reads it under the key of inputs it did not have."""
        return cache_key() == key_before

    def dataset_fingerprint(self, name: str) -> str:
        """Every split of a dataset (fine-tuning reads the train split, attacks the eval split)."""
        if name not in self._dataset_fingerprints:
            from pytest_advprune.data import fingerprint_tensors

            dataset = self.dataset(name)
            self._dataset_fingerprints[name] = fingerprint_tensors(
                dataset.train_images, dataset.train_labels, dataset.eval_images, dataset.eval_labels
            )
        return self._dataset_fingerprints[name]

    def _read(self, kind: str, key: dict[str, Any] | None, decode: Callable[[bytes], T | None]) -> T | None:
        if self.cache is None or key is None:
            return None
        payload = self.cache.load(kind, key)
        value = decode(payload) if payload is not None else None
        if payload is not None and value is None:
            self.cache.reject(kind, key)  # intact bytes that no longer load (a class moved): recompute
        counts = self.cache.counts
        counts.count(counts.read if value is not None else counts.computed, kind)
        return value

    def _write(self, kind: str, key: dict[str, Any], payload: bytes | None) -> None:
        if self.cache is not None and payload is not None:
            self.cache.store(kind, key, payload)

    # -- cells -------------------------------------------------------------------------------------

    def provenance(self, cell: CellSpec) -> dict[str, Any]:
        import torch

        from pytest_advprune import __version__

        base = self.base_model(cell.model)
        data = self.eval_set(base.entry.dataset)
        fine_tune = self.fine_tune_settings
        return {
            "plugin_version": __version__,
            "torch_version": torch.__version__.split("+")[0],
            "device": self.device.type,
            "device_name": device_name(self.device),
            "seed": self.settings.seed,
            "threads": self.settings.threads,
            "samples": len(data.labels),
            "dataset": {"name": base.entry.dataset, "fingerprint": data.fingerprint},
            "model": {"name": cell.model, "weights_fingerprint": base.weights_fingerprint},
            "pruning": {
                **cell.pruning.params(),
                "fine_tune_epochs": fine_tune.epochs if cell.pruning.entry.fine_tune else 0,
                "fine_tune_learning_rate": fine_tune.learning_rate,
            },
            "attack": {"name": cell.attack.name, **cell.attack.kwargs},
        }

    def model_checks(self, model: str, pruning: PruningSpec | None) -> tuple[int, bool]:
        """(samples whose input gradient is exactly zero, outputs look like probabilities) for the base
        model (``pruning`` None) or a pruned one: the per-model inputs of the sanity flags, once each."""
        key = (model, pruning.id if pruning is not None else "")
        if key not in self._model_checks:
            import torch

            from pytest_advprune.evaluation import eval_mode, forward_in_pixel_space
            from pytest_advprune.sanity import looks_like_probabilities, zero_gradient_count

            base = self.base_model(model)
            module = base.module if pruning is None else self.pruned_model(model, pruning).module
            data = self.eval_set(base.entry.dataset)
            normalization = base.entry.normalization
            with self.threads():
                zero = zero_gradient_count(module, data.images, data.labels, normalization, self.settings.batch_size)
                with eval_mode(module), torch.no_grad():
                    logits = forward_in_pixel_space(module, data.images[: self.settings.batch_size], normalization)
            self._model_checks[key] = (zero, looks_like_probabilities(logits))
        return self._model_checks[key]

    def base_correct(self, model: str, attack: AttackSpec | None) -> torch.Tensor:
        """Which samples the base model classifies correctly: clean (``attack`` None), or the examples
        crafted on it by ``attack``. Every pruning of the base shares them."""
        key = (model, attack.id if attack is not None else "")
        if key not in self._base_correct:
            from pytest_advprune.evaluation import correct_predictions

            base = self.base_model(model)
            data = self.eval_set(base.entry.dataset)
            images = data.images if attack is None else self.base_adversarials(model, attack)
            with self.threads():
                self._base_correct[key] = correct_predictions(
                    base.module, images, data.labels, base.entry.normalization, self.settings.batch_size
                )
        return self._base_correct[key]

    def result(self, cell: CellSpec) -> CellResult:
        if cell.id not in self._results:
            from pytest_advprune.cell import evaluate_cell

            base = self.base_model(cell.model)
            pruned = self.pruned_model(cell.model, cell.pruning)
            data = self.eval_set(base.entry.dataset)
            adversarials = self.base_adversarials(cell.model, cell.attack)
            pruned_adversarials = self.pruned_adversarials(cell)
            with self.threads():
                self._results[cell.id] = evaluate_cell(
                    cell,
                    pruned=pruned.module,
                    base_size=base.size,
                    pruned_size=pruned.size,
                    images=data.images,
                    labels=data.labels,
                    base_adversarials=adversarials,
                    pruned_adversarials=pruned_adversarials,
                    base_clean_correct=self.base_correct(cell.model, None),
                    base_adversarial_correct=self.base_correct(cell.model, cell.attack),
                    normalization=base.entry.normalization,
                    batch_size=self.settings.batch_size,
                    provenance=self.provenance(cell),
                    model_checks={
                        "base": self.model_checks(cell.model, None),
                        "pruned": self.model_checks(cell.model, cell.pruning),
                    },
                    alpha=self.settings.alpha,
                )
            self.check_base_intact(
                cell.model, f"attack {cell.attack.name!r} (registered by {cell.attack.entry.origin})"
            )
        return self._results[cell.id]
