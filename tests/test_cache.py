"""The on-disk cache: it can never serve a wrong answer (corrupt entries, edited code, other weights,
CI mode), concurrent writers never corrupt it, and a warm run gives the same verdicts and bytes."""

from __future__ import annotations

import multiprocessing
import os
import textwrap
from pathlib import Path

import pytest
import torch
from conftest import CELL_TEST, TINY_CONFTEST, baseline_tree
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_advprune.cache import DiskCache, code_fingerprint, module_classes_fingerprint
from pytest_advprune.cache.payloads import module_from_bytes, module_to_bytes, tensor_from_bytes, tensor_to_bytes
from pytest_advprune.cache.store import canonical_json

KEY = {"model": "lenet", "seed": 3, "params": {"eps": 0.1}}


def entry_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def test_an_entry_reads_back_only_under_its_own_key(tmp_path: Path) -> None:
    cache = DiskCache(tmp_path)
    cache.store("kind", KEY, b"payload")
    assert cache.load("kind", KEY) == b"payload"
    assert cache.load("kind", {**KEY, "seed": 4}) is None
    assert cache.load("other", KEY) is None
    # key order does not matter: the key is canonical JSON
    assert cache.load("kind", dict(reversed(list(KEY.items())))) == b"payload"


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_a_damaged_entry_is_never_served(tmp_path_factory: pytest.TempPathFactory, data: st.DataObject) -> None:
    root = tmp_path_factory.mktemp("cache")
    cache = DiskCache(root)
    payload = data.draw(st.binary(min_size=1, max_size=64))
    cache.store("kind", KEY, payload)
    path = cache.path_for("kind", KEY)
    raw = bytearray(path.read_bytes())
    damage = data.draw(st.sampled_from(["truncate", "flip", "append"]))
    if damage == "truncate":
        raw = raw[: data.draw(st.integers(0, len(raw) - 1))]
    elif damage == "flip":
        position = data.draw(st.integers(0, len(raw) - 1))
        raw[position] ^= data.draw(st.integers(1, 255))
    else:
        raw += data.draw(st.binary(min_size=1, max_size=8))
    path.write_bytes(bytes(raw))
    assert cache.load("kind", KEY) is None
    assert not path.exists()  # removed, so the recomputed entry replaces it
    assert cache.counts.rejected == {"kind": 1}


def test_an_entry_copied_under_another_key_is_refused(tmp_path: Path) -> None:
    cache = DiskCache(tmp_path)
    cache.store("kind", KEY, b"payload")
    other = {**KEY, "seed": 99}
    target = cache.path_for("kind", other)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(cache.path_for("kind", KEY).read_bytes())
    assert cache.load("kind", other) is None


def test_without_reads_entries_are_written_but_never_read(tmp_path: Path) -> None:
    writer = DiskCache(tmp_path, reads=False)
    writer.store("kind", KEY, b"payload")
    assert writer.load("kind", KEY) is None
    assert DiskCache(tmp_path).load("kind", KEY) == b"payload"


def test_a_failed_write_is_recorded_not_raised(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    cache = DiskCache(blocker)
    cache.store("kind", KEY, b"payload")
    assert cache.counts.write_errors and "file" in cache.counts.write_errors[0]


def _hammer(root: str, payload: bytes, rounds: int) -> None:
    cache = DiskCache(Path(root))
    for _ in range(rounds):
        cache.store("kind", KEY, payload)
        assert cache.load("kind", KEY) in (None, payload)


def test_concurrent_writers_and_readers_see_whole_entries(tmp_path: Path) -> None:
    payload = os.urandom(200_000)
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_hammer, args=(str(tmp_path), payload, 40)) for _ in range(3)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    assert [worker.exitcode for worker in workers] == [0, 0, 0]
    assert DiskCache(tmp_path).load("kind", KEY) == payload
    assert [p.name for p in entry_files(tmp_path)] == [DiskCache(tmp_path).path_for("kind", KEY).name]


def test_canonical_json_is_independent_of_order() -> None:
    assert canonical_json({"a": 1, "b": [1, 2]}) == canonical_json({"b": [1, 2], "a": 1})


def test_tensors_and_modules_round_trip_exactly() -> None:
    tensor = torch.rand(5, 1, 8, 8)
    loaded = tensor_from_bytes(tensor_to_bytes(tensor), torch.device("cpu"))
    assert loaded is not None and torch.equal(loaded, tensor)
    assert tensor_from_bytes(b"garbage", torch.device("cpu")) is None

    module = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU())
    data = module_to_bytes(module, {"size": {"parameters": 15}})
    assert data is not None
    restored = module_from_bytes(data, torch.device("cpu"))
    assert restored is not None
    restored_module, extra = restored
    assert extra == {"size": {"parameters": 15}}
    inputs = torch.rand(2, 4)
    assert torch.equal(restored_module(inputs), module(inputs))


def test_a_module_that_cannot_be_pickled_is_not_cached() -> None:
    module = torch.nn.Linear(2, 2)
    module.hook = lambda x: x  # type: ignore[assignment]  # a lambda cannot be pickled
    assert module_to_bytes(module, {}) is None


def _load_source(path: Path, source: str) -> object:
    """Import ``source`` as a module of its own, as pytest imports a conftest.py (in sys.modules)."""
    import importlib.util
    import sys

    path.write_text(textwrap.dedent(source))
    name = f"advprune_test_{path.parent.name}_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def test_code_fingerprints_follow_the_source(tmp_path: Path) -> None:
    first = _load_source(tmp_path / "a.py", "def prune(model):\n    return model\n")
    same = _load_source(tmp_path / "b.py", "def prune(model):\n    return model\n")
    edited = _load_source(tmp_path / "c.py", "def prune(model):\n    return model  # edited\n")
    assert code_fingerprint(first.prune) == code_fingerprint(same.prune)  # type: ignore[attr-defined]
    assert code_fingerprint(first.prune) != code_fingerprint(edited.prune)  # type: ignore[attr-defined]


def test_code_fingerprints_follow_the_project_code_a_function_uses(tmp_path: Path) -> None:
    source = """
        import torch
        SCALE = {scale}
        def helper(model):
            return model{helper_tail}
        def prune(model):
            return helper(model) if SCALE else torch.nn.Identity()
        def unrelated():
            return {unrelated}
    """
    fingerprints = {}
    for name, values in {
        "plain": {"scale": 1, "helper_tail": "", "unrelated": 1},
        "constant": {"scale": 2, "helper_tail": "", "unrelated": 1},
        "helper": {"scale": 1, "helper_tail": "  # edited", "unrelated": 1},
        "unrelated": {"scale": 1, "helper_tail": "", "unrelated": 2},
    }.items():
        module = _load_source(tmp_path / f"p_{name}.py", source.format(**values))
        fingerprints[name] = code_fingerprint(module.prune)  # type: ignore[attr-defined]
    assert fingerprints["constant"] != fingerprints["plain"]
    assert fingerprints["helper"] != fingerprints["plain"]
    assert fingerprints["unrelated"] == fingerprints["plain"]  # a function it does not use: same entries


def test_environment_variables_named_in_the_code_are_part_of_the_fingerprint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = _load_source(
        tmp_path / "env.py", "import os\ndef prune(model):\n    return model if os.environ.get('RECIPE_X') else None\n"
    )
    monkeypatch.delenv("RECIPE_X", raising=False)
    unset = code_fingerprint(module.prune)  # type: ignore[attr-defined]
    monkeypatch.setenv("RECIPE_X", "1")
    assert code_fingerprint(module.prune) != unset  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("before", "after"),
    [
        # a factory's argument, closed over by the registered function
        (
            "def make(ratio):\n    def prune(m):\n        return ratio\n    return prune\nprune = make(0.3)\n",
            "def make(ratio):\n    def prune(m):\n        return ratio\n    return prune\nprune = make(0.5)\n",
        ),
        # a default value, read when the function is defined
        ("S = 1\ndef prune(m, scale=S):\n    return scale\n", "S = 2\ndef prune(m, scale=S):\n    return scale\n"),
        # a container of settings
        (
            "R = {'iters': 3}\ndef prune(m):\n    return R['iters']\n",
            "R = {'iters': 5}\ndef prune(m):\n    return R['iters']\n",
        ),
        # a method inherited from a project base class
        (
            "class Base:\n    def forward(self):\n        return 1\nclass prune(Base):\n    pass\n",
            "class Base:\n    def forward(self):\n        return 2\nclass prune(Base):\n    pass\n",
        ),
        # a static method's global
        (
            "K = 1\nclass prune:\n    @staticmethod\n    def f():\n        return K\n",
            "K = 2\nclass prune:\n    @staticmethod\n    def f():\n        return K\n",
        ),
    ],
    ids=["closure", "default", "container", "inherited", "staticmethod"],
)
def test_what_a_function_reads_is_part_of_its_fingerprint(tmp_path: Path, before: str, after: str) -> None:
    first = _load_source(tmp_path / "before.py", before)
    second = _load_source(tmp_path / "after.py", after)
    assert code_fingerprint(first.prune) != code_fingerprint(second.prune)  # type: ignore[attr-defined]
    again = _load_source(tmp_path / "again.py", before)
    assert code_fingerprint(first.prune) == code_fingerprint(again.prune)  # type: ignore[attr-defined]


def test_an_object_without_a_stable_value_never_matches_another_run(tmp_path: Path) -> None:
    source = "class Thing:\n    pass\nTHING = Thing()\ndef prune(m):\n    return THING\n"
    first, second = (_load_source(tmp_path / f"o{i}.py", source) for i in range(2))
    assert code_fingerprint(first.prune) != code_fingerprint(second.prune)  # type: ignore[attr-defined]


def test_model_classes_fingerprint_sees_a_changed_forward_not_torch(tmp_path: Path) -> None:
    source = """
        import torch
        class Net(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.layer = torch.nn.Linear(2, 2)
            def forward(self, x):
                return self.layer(x){suffix}
    """
    plain = _load_source(tmp_path / "n1.py", source.format(suffix=""))
    changed = _load_source(tmp_path / "n2.py", source.format(suffix=" * 2"))
    fingerprint = module_classes_fingerprint(plain.Net())  # type: ignore[attr-defined]
    assert fingerprint == module_classes_fingerprint(plain.Net())  # type: ignore[attr-defined]
    assert fingerprint != module_classes_fingerprint(changed.Net())  # type: ignore[attr-defined]
    # torch's own classes are covered by the torch version, not by their source
    assert module_classes_fingerprint(torch.nn.Linear(2, 2)) == module_classes_fingerprint(torch.nn.ReLU())


# --- the cache in runs --------------------------------------------------------------------------------

CACHE_DIR = ".advprune-cache"


def cache_entries(project: pytest.Pytester, kind: str) -> list[Path]:
    return entry_files(project.path / CACHE_DIR / kind)


def run(project: pytest.Pytester, *args: str) -> pytest.RunResult:
    return project.runpytest("-p", "no:cacheprovider", f"--advprune-cache-dir={CACHE_DIR}", *args)


def test_a_warm_run_reads_everything_and_gives_the_same_bytes(tiny_project: pytest.Pytester) -> None:
    cold = run(tiny_project, "--update-baselines")
    cold.assert_outcomes(passed=4)
    cold.stdout.fnmatch_lines(["cache: crafted example sets: 0 read, 6 computed; pruned models: 0 read, 2 computed"])
    cold_tree = baseline_tree(tiny_project.path)
    assert len(cache_entries(tiny_project, "pruned_models")) == 2
    assert len(cache_entries(tiny_project, "adversarials")) == 6  # 2 base crafts + 4 white-box crafts

    warm = run(tiny_project, "--update-baselines")
    warm.assert_outcomes(passed=4)
    warm.stdout.fnmatch_lines(["cache: crafted example sets: 6 read, 0 computed; pruned models: 2 read, 0 computed"])
    warm.stdout.fnmatch_lines(["*4 cells: 4 unchanged*"])
    assert baseline_tree(tiny_project.path) == cold_tree


def test_a_corrupt_entry_is_recomputed(tiny_project: pytest.Pytester) -> None:
    run(tiny_project, "--update-baselines").assert_outcomes(passed=4)
    damaged = cache_entries(tiny_project, "pruned_models")[0]
    damaged.write_bytes(damaged.read_bytes()[:-100])
    result = run(tiny_project)
    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines(
        [
            "cache: crafted example sets: 6 read, 0 computed; pruned models: 1 read, 1 computed",
            "cache: 1 unusable entry (corrupt or unreadable) recomputed and replaced",
        ]
    )
    run(tiny_project).stdout.fnmatch_lines(["cache: *pruned models: 2 read, 0 computed"])


EDITABLE_PRUNING = textwrap.dedent(
    """
    import torch
    import pytest_advprune

    @pytest_advprune.register_pruning("halve", fine_tune=False)
    def halve(model, amount, context):
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.mul_(SCALE)
        return model
    """
)


def test_an_edited_pruning_function_recomputes_only_its_own_entries(tiny_project: pytest.Pytester) -> None:
    conftest = tiny_project.path / "conftest.py"
    tiny_project_conftest = conftest.read_text()
    conftest.write_text(tiny_project_conftest + EDITABLE_PRUNING.replace("SCALE", "1.0"))
    tiny_project.makeini(
        "[pytest]\nadvprune_prunings =\n    l1_unstructured:0.5\n    halve:0.5\nadvprune_attacks = fgsm:0.1\n"
        "advprune_finetune_epochs = 1\nadvprune_max_clean_drop = 100\n"
    )
    run(tiny_project, "--update-baselines").assert_outcomes(passed=2)

    # The same function: everything is read.
    run(tiny_project).stdout.fnmatch_lines(
        ["cache: crafted example sets: 3 read, 0 computed; pruned models: 2 read, 0 computed"]
    )

    # Its code edited (a different result): its pruned model and its white-box examples are computed again,
    # the other pruning's and the base model's are read.
    conftest.write_text(tiny_project_conftest + EDITABLE_PRUNING.replace("SCALE", "0.999"))
    edited = run(tiny_project)
    edited.stdout.fnmatch_lines(["cache: crafted example sets: 2 read, 1 computed; pruned models: 1 read, 1 computed"])


def test_other_weights_recompute_that_models_entries(
    tiny_project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    run(tiny_project, "--update-baselines").assert_outcomes(passed=4)
    monkeypatch.setenv("TINY_SEED", "1")  # the tiny model's conftest reads it: other weights
    result = run(tiny_project)
    result.stdout.fnmatch_lines(["cache: crafted example sets: 0 read, 6 computed; pruned models: 0 read, 2 computed"])


def test_ci_mode_does_not_read_earlier_entries_unless_asked(tiny_project: pytest.Pytester) -> None:
    run(tiny_project, "--update-baselines").assert_outcomes(passed=4)
    ci = run(tiny_project, "--advprune-ci")
    ci.assert_outcomes(passed=4)
    ci.stdout.fnmatch_lines(
        [
            "cache: crafted example sets: 0 read, 6 computed; pruned models: 0 read, 2 computed",
            "cache: CI mode reads no entry an earlier run wrote (--advprune-ci-cache reads them)",
        ]
    )
    trusted = run(tiny_project, "--advprune-ci", "--advprune-ci-cache")
    trusted.stdout.fnmatch_lines(["cache: crafted example sets: 6 read, 0 computed; pruned models: 2 read, 0 computed"])


def test_no_cache_leaves_nothing_behind(tiny_project: pytest.Pytester) -> None:
    result = run(tiny_project, "--update-baselines", "--advprune-no-cache")
    result.assert_outcomes(passed=4)
    assert not (tiny_project.path / CACHE_DIR).exists()
    assert "cache:" not in result.stdout.str()


def test_the_default_cache_lives_in_pytests_cache_directory(tiny_project: pytest.Pytester) -> None:
    tiny_project.runpytest("--update-baselines").assert_outcomes(passed=4)
    assert entry_files(tiny_project.path / ".pytest_cache" / "d" / "advprune" / "pruned_models")


def test_an_attack_that_changes_the_base_model_is_never_cached(pytester: pytest.Pytester) -> None:

    pytester.makeconftest(
        TINY_CONFTEST
        + textwrap.dedent(
            """
            @pytest_advprune.register_attack("vandal", primary="eps", norm="Linf", eps=0.1)
            def vandal(model, eps):
                def attack(images, labels):
                    with torch.no_grad():
                        next(model.parameters()).add_(1.0)
                    return images
                return attack
            """
        )
    )
    pytester.makeini(
        "[pytest]\nadvprune_prunings = l1_unstructured:0.5\nadvprune_attacks = vandal:0.1\n"
        "advprune_finetune_epochs = 1\nadvprune_max_clean_drop = 100\n"
    )
    pytester.makepyfile(test_cells=CELL_TEST)
    for _ in range(2):  # the second run must meet the same failure, not a cached craft
        result = run(pytester, "--update-baselines")
        result.assert_outcomes(errors=1)
        result.stdout.fnmatch_lines(["*attack 'vandal'*changed the base model*"])


def test_a_pytest_cache_that_is_a_file_turns_the_cache_off_with_a_warning(pytester: pytest.Pytester) -> None:
    """Installed, the plugin must not break a run that has no cells: where pytest's cache folder cannot be
    made, pytest itself warns and goes on, and so does the plugin."""
    pytester.makepyfile("def test_plain():\n    assert True\n")
    (pytester.path / ".pytest_cache").write_text("not a folder")
    result = pytester.runpytest_subprocess("-W", "default")
    result.assert_outcomes(passed=1, warnings=2)
    assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()
    result.stdout.fnmatch_lines(["*advprune: the cache is off for this run*--advprune-cache-dir*"])
