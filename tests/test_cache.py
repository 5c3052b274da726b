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
from pytest_advprune.cache.store import DAMAGED, FOREIGN_KEY, MAGIC, NOT_A_FILE, canonical_json

KEY = {"model": "lenet", "seed": 3, "params": {"eps": 0.1}}
SECRET = b"k" * 32


def entry_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def test_an_entry_reads_back_only_under_its_own_key(tmp_path: Path) -> None:
    cache = DiskCache(tmp_path, secret=SECRET)
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
    cache = DiskCache(root, secret=SECRET)
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
    assert list(cache.counts.rejected.values()) == [1] and set(cache.counts.rejected) <= {DAMAGED, FOREIGN_KEY}


def test_an_entry_copied_under_another_key_is_refused(tmp_path: Path) -> None:
    cache = DiskCache(tmp_path, secret=SECRET)
    cache.store("kind", KEY, b"payload")
    other = {**KEY, "seed": 99}
    target = cache.path_for("kind", other)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(cache.path_for("kind", KEY).read_bytes())
    assert cache.load("kind", other) is None


def test_without_reads_entries_are_written_but_never_read(tmp_path: Path) -> None:
    writer = DiskCache(tmp_path, secret=SECRET, reads=False)
    writer.store("kind", KEY, b"payload")
    assert writer.load("kind", KEY) is None
    assert DiskCache(tmp_path, secret=SECRET).load("kind", KEY) == b"payload"


def test_a_failed_write_is_recorded_not_raised(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    cache = DiskCache(blocker, secret=SECRET)
    cache.store("kind", KEY, b"payload")
    assert cache.counts.write_errors and "file" in cache.counts.write_errors[0]


def _hammer(root: str, payload: bytes, rounds: int) -> None:
    cache = DiskCache(Path(root), secret=SECRET)
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
    assert DiskCache(tmp_path, secret=SECRET).load("kind", KEY) == payload
    assert [p.name for p in entry_files(tmp_path)] == [DiskCache(tmp_path, secret=SECRET).path_for("kind", KEY).name]


def test_canonical_json_is_independent_of_order() -> None:
    assert canonical_json({"a": 1, "b": [1, 2]}) == canonical_json({"b": [1, 2], "a": 1})


def test_tensors_and_modules_round_trip_exactly() -> None:
    tensor = torch.rand(5, 1, 8, 8)
    loaded = tensor_from_bytes(tensor_to_bytes(tensor), torch.device("cpu"))
    assert loaded is not None and torch.equal(loaded, tensor)
    assert tensor_from_bytes(b"garbage", torch.device("cpu")) is None

    base = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU())
    module = torch.nn.Sequential(torch.nn.Linear(4, 2), torch.nn.ReLU())  # fewer output channels
    data = module_to_bytes(module, base, torch.rand(3, 4), {"size": {"parameters": 15}})
    assert data is not None
    restored = module_from_bytes(data, base, torch.device("cpu"))
    assert restored is not None
    restored_module, extra = restored
    assert extra == {"size": {"parameters": 15}}
    inputs = torch.rand(2, 4)
    assert torch.equal(restored_module(inputs), module(inputs))


def test_a_module_its_description_cannot_rebuild_is_not_cached() -> None:
    base = torch.nn.Sequential(torch.nn.Linear(2, 2))
    replaced = torch.nn.Sequential(torch.nn.Identity())  # another class: a read could not rebuild it
    added = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.ReLU())  # a submodule the base lacks
    hooked = torch.nn.Sequential(torch.nn.Linear(2, 2))
    hooked[0].register_forward_hook(lambda module, inputs, output: output * 2)  # state no tensor holds
    for module in (replaced, added, hooked):
        assert module_to_bytes(module, base, torch.rand(3, 2), {}) is None


def _load_source(path: Path, source: str, name: str | None = None) -> object:
    """Import ``source`` as a module of its own, as pytest imports a conftest.py (in sys.modules)."""
    import importlib.util
    import sys

    path.write_text(textwrap.dedent(source))
    name = name or f"advprune_test_{path.parent.name}_{path.stem}"
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
        # a 0-d tensor constant (it cannot be viewed as bytes as it is)
        (
            "import torch\nS = torch.tensor(0.5)\ndef prune(m):\n    return m * S\n",
            "import torch\nS = torch.tensor(0.25)\ndef prune(m):\n    return m * S\n",
        ),
        # a bound method registered as the function: the object's state
        (
            "class P:\n    def __init__(self, k):\n        self.k = k\n    def run(self, m):\n"
            "        return m * self.k\nprune = P(1).run\n",
            "class P:\n    def __init__(self, k):\n        self.k = k\n    def run(self, m):\n"
            "        return m * self.k\nprune = P(2).run\n",
        ),
        # a decorator's wrapper and what it closes over
        (
            "import functools\ndef scaled(k):\n    def deco(f):\n        @functools.wraps(f)\n        def wrapper(m):\n"
            "            return f(m) * k\n        return wrapper\n    return deco\n"
            "@scaled(1)\ndef prune(m):\n    return m\n",
            "import functools\ndef scaled(k):\n    def deco(f):\n        @functools.wraps(f)\n        def wrapper(m):\n"
            "            return f(m) * k\n        return wrapper\n    return deco\n"
            "@scaled(2)\ndef prune(m):\n    return m\n",
        ),
        # a class attribute set outside the class body (the class's text is the same)
        (
            "class Cfg:\n    K = 1\ndef prune(m):\n    return m * Cfg.K\n",
            "class Cfg:\n    K = 1\nCfg.K = 2\ndef prune(m):\n    return m * Cfg.K\n",
        ),
        # a plain attribute of a global torch module (its repr and weights are the same)
        (
            "import torch\nNET = torch.nn.Linear(2, 2)\ntorch.nn.init.zeros_(NET.weight)\n"
            "torch.nn.init.zeros_(NET.bias)\nNET.k = 1\n"
            "def prune(m):\n    return m * NET.k\n",
            "import torch\nNET = torch.nn.Linear(2, 2)\ntorch.nn.init.zeros_(NET.weight)\n"
            "torch.nn.init.zeros_(NET.bias)\nNET.k = 2\n"
            "def prune(m):\n    return m * NET.k\n",
        ),
        # an attribute set on a dataclass instance besides its fields
        (
            "from dataclasses import dataclass\n@dataclass\nclass R:\n    a: int\nRECIPE = R(1)\nRECIPE.extra = 1\n"
            "def prune(m):\n    return RECIPE.extra\n",
            "from dataclasses import dataclass\n@dataclass\nclass R:\n    a: int\nRECIPE = R(1)\nRECIPE.extra = 2\n"
            "def prune(m):\n    return RECIPE.extra\n",
        ),
    ],
    ids=[
        "closure",
        "default",
        "container",
        "inherited",
        "staticmethod",
        "scalar-tensor",
        "bound-method",
        "decorator",
        "class-attribute",
        "module-attribute",
        "dataclass-extra",
    ],
)
def test_what_a_function_reads_is_part_of_its_fingerprint(tmp_path: Path, before: str, after: str) -> None:
    # One module name for all three, as one recipe module in three runs (objects are named by their class),
    # each fingerprinted while it is the module of that name.
    fingerprints = [
        code_fingerprint(_load_source(tmp_path / f"{i}.py", source, "advprune_test_recipe").prune)  # type: ignore[attr-defined]
        for i, source in enumerate((before, after, before))
    ]
    assert fingerprints[0] != fingerprints[1]
    assert fingerprints[0] == fingerprints[2]


@pytest.mark.parametrize(
    "source",
    [
        "import threading\nLOCK = threading.Lock()\ndef prune(m):\n    return LOCK\n",
        # its state is not in __dict__: hashing that would serve one seed's numbers for another's
        "import random\nRNG = random.Random(1)\ndef prune(m):\n    return RNG.random()\n",
        "import torch\nS = torch.zeros(3).to_sparse()\ndef prune(m):\n    return m * S\n",
    ],
    ids=["lock", "random", "sparse-tensor"],
)
def test_an_object_without_a_stable_value_never_matches_another_run(tmp_path: Path, source: str) -> None:
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
            "cache: 1 unusable entry recomputed: 1 damaged (truncated, edited or not a cache entry)",
        ]
    )
    run(tiny_project).stdout.fnmatch_lines(["cache: *pruned models: 2 read, 0 computed"])


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


# -- hostile caches: forged entries, code in payloads, links, special files ---------------------------


def _forge(path: Path, payload: bytes, seal: bytes | None = None) -> None:
    """Rewrite the entry at ``path`` around ``payload``, with a consistent length and SHA-256, as someone
    who can write the cache folder can; its HMAC is ``seal`` (by default the old one, which no longer
    matches)."""
    import hashlib

    magic, key, _length, _digest, old_seal, _payload = path.read_bytes().split(b"\n", 5)
    header = [key, str(len(payload)).encode(), hashlib.sha256(payload).hexdigest().encode()]
    path.write_bytes(b"\n".join([magic, *header, seal or old_seal, payload]))


def _seal(secret: bytes, path: Path, payload: bytes) -> bytes:
    import hashlib
    import hmac

    key = path.read_bytes().split(b"\n", 2)[1]
    message = b"\n".join([key, str(len(payload)).encode(), hashlib.sha256(payload).hexdigest().encode()])
    return hmac.new(secret, message, hashlib.sha256).hexdigest().encode()


class _RunsCode:
    """Unpickling this writes a marker file: the payload a tampered cache entry would carry."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        import builtins

        return (builtins.exec, (f"open({str(self.marker)!r}, 'w').write('ran')", "exec"))


def _code_payload(marker: Path) -> bytes:
    import io

    buffer = io.BytesIO()
    torch.save({"module": _RunsCode(marker), "extra": {}}, buffer)
    return buffer.getvalue()


def test_an_entry_forged_without_the_key_is_refused(tmp_path: Path) -> None:
    cache = DiskCache(tmp_path, secret=SECRET)
    cache.store("kind", KEY, b"the real payload")
    _forge(cache.path_for("kind", KEY), b"a payload that lies")
    assert cache.load("kind", KEY) is None
    assert cache.counts.rejected == {FOREIGN_KEY: 1}
    cache.store("kind", KEY, b"payload")
    assert DiskCache(tmp_path, secret=b"x" * 32).load("kind", KEY) is None  # another machine's key


def test_reading_a_payload_runs_no_code_even_under_the_right_key(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    payload = _code_payload(marker)
    base = torch.nn.Sequential(torch.nn.Linear(2, 2))
    assert module_from_bytes(payload, base, torch.device("cpu")) is None
    assert tensor_from_bytes(payload, torch.device("cpu")) is None
    assert not marker.exists()


def test_a_tampered_pruned_model_entry_runs_no_code_in_any_mode(tiny_project: pytest.Pytester) -> None:
    run(tiny_project, "--update-baselines").assert_outcomes(passed=4)
    marker = tiny_project.path / "ran"
    secret = (tiny_project.path / ".config" / "pytest-advprune" / "cache-key").read_bytes().strip()
    for mode in ((), ("--advprune-ci", "--advprune-ci-cache")):
        for entry in cache_entries(tiny_project, "pruned_models"):
            payload = _code_payload(marker)
            _forge(entry, payload, seal=_seal(secret, entry, payload))  # even a forger who holds the key
        result = run(tiny_project, *mode)
        result.assert_outcomes(passed=4)
        result.stdout.fnmatch_lines(["cache: *pruned models: 0 read, 2 computed", "*2 intact but no longer loadable*"])
        assert not marker.exists()


def test_a_swapped_example_set_is_refused_in_ci_mode(tiny_project: pytest.Pytester) -> None:
    """Examples of another attack put in place of a cell's (with a consistent hash) would change its
    verdict: without the key they are refused and recomputed, and the gate sees the real numbers."""
    run(tiny_project, "--update-baselines").assert_outcomes(passed=4)
    entries = cache_entries(tiny_project, "adversarials")
    payloads = [entry.read_bytes().split(b"\n", 5)[5] for entry in entries]
    for entry, payload in zip(entries, payloads[1:] + payloads[:1], strict=True):
        _forge(entry, payload)
    result = run(tiny_project, "--advprune-ci", "--advprune-ci-cache")
    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines(
        [
            "*4 cells: 4 passed*",
            "cache: crafted example sets: 0 read, 6 computed; *",
            "cache: 6 unusable entries recomputed: 6 not written with this cache key*",
        ]
    )


def test_links_and_special_files_in_the_cache_are_skipped(tmp_path: Path) -> None:
    root, outside = tmp_path / "cache", tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.json").write_text("{}")
    cache = DiskCache(root, secret=SECRET)
    folder = cache.path_for("kind", KEY).parent
    folder.parent.mkdir(parents=True)
    folder.symlink_to(outside, target_is_directory=True)  # the entry's folder links out of the cache
    cache.store("kind", KEY, b"payload")
    assert sorted(p.name for p in outside.iterdir()) == ["keep.json"]  # nothing written through the link
    assert cache.load("kind", KEY) is None
    cache.reject("kind", KEY)
    assert (outside / "keep.json").exists()

    other = {**KEY, "seed": 4}
    entry = cache.path_for("kind", other)
    entry.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(entry)  # a FIFO where an entry belongs: opening it for reading would wait forever
    assert cache.load("kind", other) is None
    cache.store("kind", other, b"payload")  # replaces it
    assert cache.load("kind", other) == b"payload"
    linked = {**KEY, "seed": 5}
    cache.path_for("kind", linked).parent.mkdir(parents=True, exist_ok=True)
    cache.path_for("kind", linked).symlink_to(outside / "keep.json")
    assert cache.load("kind", linked) is None
    assert (outside / "keep.json").read_text() == "{}"


def test_temporary_files_of_killed_writers_are_removed(tmp_path: Path) -> None:
    cache = DiskCache(tmp_path, secret=SECRET)
    cache.store("kind", KEY, b"payload")
    entry = cache.path_for("kind", KEY)
    dead = multiprocessing.get_context("spawn").Process(target=int)
    dead.start()
    dead.join()
    stale = entry.with_name(f".{entry.name}.{dead.pid}.0a1b2c3d.tmp")  # its writer was killed mid-write
    live = entry.with_name(f".{entry.name}.{os.getppid()}.0a1b2c3d.tmp")  # a writer still at work
    stale.write_bytes(b"half an entry")
    live.write_bytes(b"half an entry")
    cache.remove_stale_temporaries()
    assert not stale.exists() and live.exists() and entry.exists()
    assert cache.counts.stale_temporaries == 1


def test_a_cache_folder_that_is_a_file_turns_the_cache_off_with_one_message(
    tiny_project: pytest.Pytester,
) -> None:
    (tiny_project.path / CACHE_DIR).write_text("not a folder")
    result = run(tiny_project, "--update-baselines", "-W", "default")
    result.assert_outcomes(passed=4, warnings=1)
    result.stdout.fnmatch_lines([f"*the cache is off for this run: *{CACHE_DIR} is a file.*"])
    assert "unusable" not in result.stdout.str()


def test_a_run_without_cells_passes_where_nothing_can_be_written(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read-only checkout (simulated: the tests run as root, whom permissions do not stop) and a
    home folder where no key can be made: the plugin warns and the run passes."""
    pytester.makepyfile("def test_plain():\n    assert True\n")
    original_mkdir = Path.mkdir

    def read_only_mkdir(self: Path, *args: object, **kwargs: object) -> None:
        if self.is_relative_to(pytester.path):
            raise PermissionError(13, "Permission denied", str(self))
        original_mkdir(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "mkdir", read_only_mkdir)
    result = pytester.runpytest("-W", "default")
    result.assert_outcomes(passed=1)
    assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()


# -- keys that edits cannot fool ------------------------------------------------------------------


def test_a_tensor_constant_is_fingerprinted_by_content_not_repr(tmp_path: Path) -> None:
    source = "import torch\nWEIGHTS = torch.ones(5000)\n{edit}\ndef prune(model):\n    return model * WEIGHTS\n"
    plain = _load_source(tmp_path / "t_plain.py", source.format(edit=""))
    edited = _load_source(tmp_path / "t_edited.py", source.format(edit="WEIGHTS[2500] = 0.5"))
    again = _load_source(tmp_path / "t_again.py", source.format(edit=""))
    assert repr(plain.WEIGHTS) == repr(edited.WEIGHTS)  # type: ignore[attr-defined]  # abbreviated: "..."
    assert code_fingerprint(plain.prune) != code_fingerprint(edited.prune)  # type: ignore[attr-defined]
    assert code_fingerprint(plain.prune) == code_fingerprint(again.prune)  # type: ignore[attr-defined]


def test_the_methods_of_an_object_a_recipe_calls_are_in_its_fingerprint(tmp_path: Path) -> None:
    source = """
        from dataclasses import dataclass
        @dataclass
        class Recipe:
            ratio: float
            def apply(self, model):
                return model * self.ratio{tail}
        RECIPE = Recipe({ratio})
        def prune(model):
            return RECIPE.apply(model)
    """
    variants = {"plain": {"ratio": 0.3, "tail": ""}, "ratio": {"ratio": 0.5, "tail": ""}}
    variants["method"] = {"ratio": 0.3, "tail": " * 2"}
    fingerprints = {
        name: code_fingerprint(_load_source(tmp_path / f"r_{name}.py", textwrap.dedent(source).format(**values)).prune)  # type: ignore[attr-defined]
        for name, values in variants.items()
    }
    assert len(set(fingerprints.values())) == 3


def test_a_module_attribute_reassigned_at_run_time_is_in_the_fingerprint(tmp_path: Path) -> None:
    helpers = _load_source(tmp_path / "helpers.py", "FACTOR = 1.0\ndef scale(model):\n    return model * FACTOR\n")
    recipe = _load_source(tmp_path / "recipe.py", "def prune(model):\n    return helpers.scale(model)\n")
    recipe.helpers = helpers  # type: ignore[attr-defined]  # as ``import helpers`` binds it
    before = code_fingerprint(recipe.prune)  # type: ignore[attr-defined]
    helpers.FACTOR = 0.5  # type: ignore[attr-defined]  # what a conftest.py body does
    assert code_fingerprint(recipe.prune) != before  # type: ignore[attr-defined]


def test_a_chain_of_project_module_attributes_is_followed(tmp_path: Path) -> None:
    package = _load_source(tmp_path / "pkg.py", "")
    package.cfg = _load_source(tmp_path / "cfg.py", "K = 1\n")  # type: ignore[attr-defined]
    recipe = _load_source(tmp_path / "chain.py", "def prune(model):\n    return model * pkg.cfg.K\n")
    recipe.pkg = package  # type: ignore[attr-defined]
    before = code_fingerprint(recipe.prune)  # type: ignore[attr-defined]
    package.cfg.K = 2  # type: ignore[attr-defined]
    assert code_fingerprint(recipe.prune) != before  # type: ignore[attr-defined]


def test_a_module_imported_in_the_body_is_read_from_its_file_loaded_or_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "advprune_lazy_helpers.py").write_text("K = 1\n")
    recipe = _load_source(
        tmp_path / "lazy.py",
        "def prune(model):\n    import advprune_lazy_helpers\n    return advprune_lazy_helpers.K\n",
    )
    before = code_fingerprint(recipe.prune)  # type: ignore[attr-defined]
    recipe.prune(None)  # type: ignore[attr-defined]  # now imported: the same fingerprint
    monkeypatch.delitem(sys.modules, "advprune_lazy_helpers")
    assert code_fingerprint(recipe.prune) == before  # type: ignore[attr-defined]
    (tmp_path / "advprune_lazy_helpers.py").write_text("K = 2\n")
    assert code_fingerprint(recipe.prune) != before  # type: ignore[attr-defined]


def test_an_edit_to_any_python_file_of_the_project_recomputes_and_other_files_do_not(
    tiny_project: pytest.Pytester,
) -> None:
    """A conftest.py that reassigns a project module's attribute changes what a pruning computes while
    the pruning's own code stays the same: every Python file under the rootdir is in the keys."""
    tiny_project.makepyfile(
        advprune_recipes="SCALE = 1.0\ndef scale(model):\n    return model\n",
    )
    conftest = tiny_project.path / "conftest.py"
    original = conftest.read_text()
    conftest.write_text("import advprune_recipes\n" + original)
    run(tiny_project, "--update-baselines").assert_outcomes(passed=4)
    (tiny_project.path / "NOTES.md").write_text("not code")
    run(tiny_project).stdout.fnmatch_lines(["cache: crafted example sets: 6 read, 0 computed; pruned models: 2 read*"])

    conftest.write_text("import advprune_recipes\nadvprune_recipes.SCALE = 0.5\n" + original)
    run(tiny_project).stdout.fnmatch_lines(
        ["cache: crafted example sets: 0 read, 6 computed; pruned models: 0 read, 2 computed"]
    )


def test_a_huge_forged_entry_is_refused_from_its_header(tmp_path: Path) -> None:
    """A sparse file of 1 GiB behind a valid-looking header costs its first lines, not a gigabyte of
    memory: the payload is read only after the header's HMAC checks out."""
    import tracemalloc

    cache = DiskCache(tmp_path, secret=SECRET)
    path = cache.path_for("kind", KEY)
    path.parent.mkdir(parents=True)
    with open(path, "wb") as file:
        file.write(b"\n".join([MAGIC.rstrip(), canonical_json(KEY), str(1 << 30).encode(), b"0" * 64, b"f" * 64, b""]))
        file.truncate(1 << 30)
    tracemalloc.start()
    try:
        assert cache.load("kind", KEY) is None
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20
    assert cache.counts.rejected == {FOREIGN_KEY: 1}


def test_entries_are_plain_files_and_folders_in_their_place_are_skipped(tmp_path: Path) -> None:
    cache = DiskCache(tmp_path, secret=SECRET)
    cache.store("kind", KEY, b"payload")
    assert cache.path_for("kind", KEY).stat().st_mode & 0o777 == 0o644  # never executable
    other = {**KEY, "seed": 7}
    cache.path_for("kind", other).mkdir(parents=True)
    assert cache.load("kind", other) is None
    assert cache.counts.rejected == {NOT_A_FILE: 1}


def test_nothing_is_made_through_a_linked_kind_folder(tmp_path: Path) -> None:
    root, outside = tmp_path / "cache", tmp_path / "outside"
    outside.mkdir()
    root.mkdir()
    (root / "kind").symlink_to(outside, target_is_directory=True)
    cache = DiskCache(root, secret=SECRET)
    cache.store("kind", KEY, b"payload")
    assert not any(outside.iterdir())
    assert cache.counts.write_errors and "symbolic link" in cache.counts.write_errors[0]


@pytest.mark.parametrize("problem", ["fifo", "short-secret", "no-home"])
def test_a_key_that_cannot_be_used_is_one_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, problem: str
) -> None:
    from pytest_advprune.cache.trust import CacheKeyError, cache_secret

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    if problem == "fifo":  # opening it for reading would wait forever
        (tmp_path / "pytest-advprune").mkdir()
        os.mkfifo(tmp_path / "pytest-advprune" / "cache-key")
        match = "is a FIFO or device"
    elif problem == "short-secret":
        monkeypatch.setenv("ADVPRUNE_CACHE_KEY", "hunter2")
        match = "ADVPRUNE_CACHE_KEY holds 7 characters"
    else:
        monkeypatch.delenv("XDG_CONFIG_HOME")
        monkeypatch.delenv("HOME", raising=False)
        monkeypatch.setattr(Path, "home", lambda: (_ for _ in ()).throw(RuntimeError("no home")))
        match = "no home folder"
    with pytest.raises(CacheKeyError, match=match):
        cache_secret()


@pytest.mark.parametrize("layout", ["loop", "file-parent"])
def test_a_cache_folder_that_cannot_be_a_folder_turns_the_cache_off(pytester: pytest.Pytester, layout: str) -> None:
    pytester.makepyfile("def test_plain():\n    assert True\n")
    if layout == "loop":
        (pytester.path / "loop").symlink_to(pytester.path / "loop")
        folder, message = "loop", "*the cache is off for this run: its folder 'loop' cannot be resolved*"
    else:
        (pytester.path / "README").write_text("a file")
        folder, message = "README/sub", "*the cache is off for this run: *README is a file, where its folder*"
    result = pytester.runpytest(f"--advprune-cache-dir={folder}", "-W", "default")
    result.assert_outcomes(passed=1, warnings=1)
    result.stdout.fnmatch_lines([message])
    assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()


def test_a_model_a_read_could_not_give_back_is_not_cached() -> None:
    import numpy as np

    base = torch.nn.Sequential(torch.nn.Linear(2, 2))
    numpy_attribute = torch.nn.Sequential(torch.nn.Linear(2, 2))
    numpy_attribute[0].sparsity = np.float64(0.5)  # type: ignore[assignment]  # weights_only refuses it
    swapped_hook = torch.nn.Sequential(torch.nn.Linear(2, 2))
    hooked_base = torch.nn.Sequential(torch.nn.Linear(2, 2))
    hooked_base[0].register_forward_hook(lambda module, inputs, output: None)
    swapped_hook.load_state_dict(hooked_base.state_dict())
    swapped_hook[0].register_forward_hook(lambda module, inputs, output: output if torch.is_grad_enabled() else None)
    assert module_to_bytes(numpy_attribute, base, torch.rand(3, 2), {}) is None
    assert module_to_bytes(swapped_hook, hooked_base, torch.rand(3, 2), {}) is None


def test_a_models_non_persistent_buffers_and_attributes_are_in_its_state_fingerprint() -> None:
    """Neither is in the state dict, and a forward may read both (a shift a factory reads from a file)."""
    from pytest_advprune.cache.keys import module_state_fingerprint

    def model(shift: float, scale: float) -> torch.nn.Module:
        net = torch.nn.Sequential(torch.nn.Linear(2, 2))
        net[0].register_buffer("shift", torch.tensor(shift), persistent=False)
        net[0].scale = scale  # type: ignore[assignment]
        return net

    plain = module_state_fingerprint(model(1.0, 1.0))
    assert module_state_fingerprint(model(1.0, 1.0)) == plain
    assert module_state_fingerprint(model(0.2, 1.0)) != plain
    assert module_state_fingerprint(model(1.0, 2.0)) != plain
