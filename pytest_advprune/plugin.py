"""pytest hooks and fixtures of pytest-advprune. Thin: every decision lives in a module of its own.

torch is imported only once a test needs it, so loading the plugin costs nothing to unrelated runs.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any

import pytest

from pytest_advprune import options, paths
from pytest_advprune.errors import CellError, SetupError
from pytest_advprune.registry import ATTACKS, DATASETS, MODELS, PRUNINGS
from pytest_advprune.reports.run import LATENCY_PROPERTY, VERDICT_PROPERTY, RunReport
from pytest_advprune.seeds import derive_seed

if TYPE_CHECKING:
    import torch
    from torch import nn

    from pytest_advprune.attacks import AttackGenerator
    from pytest_advprune.cell import CellResult
    from pytest_advprune.data import Dataset
    from pytest_advprune.session import AdvPruneSession
    from pytest_advprune.specs import CellSpec, VariantSpec

SESSION_KEY = pytest.StashKey["AdvPruneSession"]()
REPORTER_NAME = "advprune-report"
SNAPSHOT_KEY = pytest.StashKey[list[set[str]]]()
CELL_MARKER = "advprune_cell"
TIMING_MARKER = "advprune_timing"
SLOW_MARKER = "advprune_slow"
CACHE_COUNTS_KEY = "advprune_cache_counts"
SHARD_MODELS_KEY = pytest.StashKey[dict[str, int]]()


def pytest_addoption(parser: pytest.Parser) -> None:
    options.add_options(parser)


@pytest.hookimpl(wrapper=True)
def pytest_cmdline_main(config: pytest.Config) -> Generator[None, object, object]:
    # Before xdist's own hook turns "-n N" without --dist into --dist load.
    from pytest_advprune.scheduling import distribution_for

    if hasattr(config.option, "dist"):
        config.option.dist = distribution_for(getattr(config.option, "numprocesses", None), config.option.dist)
    return (yield)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """(xdist controller) Under --dist loadgroup, also keep each model's cells and timings on one worker."""
    from pytest_advprune.scheduling import LOADGROUP, model_group_scheduler

    if config.getvalue("dist") != LOADGROUP:
        return None
    from pytest_advprune.builtins import load_builtins

    load_builtins()
    return model_group_scheduler(config, log, sorted(MODELS.snapshot()))


def pytest_sessionfinish(session: pytest.Session) -> None:
    """(xdist worker) Send what this worker did with the cache to the controller, for the summary."""
    workeroutput = getattr(session.config, "workeroutput", None)
    cache = session.config.stash[SESSION_KEY].cache
    if workeroutput is not None and cache is not None:
        workeroutput[CACHE_COUNTS_KEY] = cache.counts.as_dict()


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: object) -> None:
    """(xdist controller) Add a finished worker's cache counts to the run's summary."""
    report = node.config.pluginmanager.get_plugin(REPORTER_NAME)
    counts = getattr(node, "workeroutput", {}).get(CACHE_COUNTS_KEY)
    if isinstance(report, RunReport) and isinstance(counts, dict):
        report.worker_cache_counts.add(counts)


@pytest.hookimpl(wrapper=True)
def pytest_load_initial_conftests(early_config: pytest.Config) -> Generator[None, None, None]:
    # Before any conftest.py registers anything: unconfigure forgets what this run registered.
    early_config.stash[SNAPSHOT_KEY] = [DATASETS.snapshot(), MODELS.snapshot(), PRUNINGS.snapshot(), ATTACKS.snapshot()]
    try:
        return (yield)
    except Exception as error:
        _forget_registrations(early_config)  # no unconfigure follows a conftest.py that failed to import
        from pytest_advprune.extras import conftest_import_problem

        problem = conftest_import_problem(error)
        if problem is None:
            raise
    raise pytest.UsageError(problem)  # outside except: no chained traceback


def pytest_configure(config: pytest.Config) -> None:
    from pytest_advprune.session import AdvPruneSession

    config.addinivalue_line("markers", f"{CELL_MARKER}: a model x pruning x attack robustness cell (pytest-advprune)")
    config.addinivalue_line("markers", f"{TIMING_MARKER}: an inference latency benchmark (pytest-advprune)")
    config.addinivalue_line("markers", f"{SLOW_MARKER}: a cell whose attack is slow, such as AutoAttack")
    paths.set_rootdir(config.rootpath)  # relative paths in conftest.py files mean the project's files
    session = AdvPruneSession(options.read_settings(config))
    config.stash[SESSION_KEY] = session
    if config.get_verbosity() >= 1 and not hasattr(config, "workerinput"):  # a worker's output is not shown
        session.progress = lambda line: _write_progress(config, line)
    if not hasattr(config, "workerinput"):  # an xdist worker only runs tests; the controller writes and reports
        config.pluginmanager.register(RunReport(session, config.rootpath), REPORTER_NAME)
        if session.cache is not None:  # before any worker writes: what is left now was left by killed writers
            session.cache.remove_stale_temporaries()


def _write_progress(config: pytest.Config, line: str) -> None:
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(f"advprune: {line}")


@pytest.hookimpl(tryfirst=True)  # before other plugins' unconfigure, which may raise (warnings as errors)
def pytest_unconfigure(config: pytest.Config) -> None:
    paths.set_rootdir(None)
    _forget_registrations(config)


def _forget_registrations(config: pytest.Config) -> None:
    snapshots = config.stash.get(SNAPSHOT_KEY, None)
    if snapshots is not None:
        DATASETS.restore(snapshots[0])
        MODELS.restore(snapshots[1])
        PRUNINGS.restore(snapshots[2])
        ATTACKS.restore(snapshots[3])


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    wants_cell = "advprune_cell" in metafunc.fixturenames
    wants_variant = "advprune_variant" in metafunc.fixturenames
    if not (wants_cell or wants_variant):
        return
    from pytest_advprune.extras import check_matrix
    from pytest_advprune.matrix import MatrixError

    session = metafunc.config.stash[SESSION_KEY]
    problem: str | None = None
    try:
        matrix = session.matrix
        if wants_cell:
            check_matrix(matrix, session.settings)  # attacks that need a missing extra, named together
        session.check_datasets()  # bad data stops the run here, with one message, before any cell runs
    except (MatrixError, SetupError) as error:
        problem = str(error)
    if problem is not None:
        # Every other module of cells would fail the same way: stop collecting there, so the run says it once.
        metafunc.definition.session.shouldstop = "advprune: the matrix cannot run (see the error above)"
        pytest.fail(f"advprune: {problem}", pytrace=False)  # outside except: no chained traceback
    if wants_cell:
        cells = [
            pytest.param(
                cell,
                id=cell.id,
                marks=[getattr(pytest.mark, CELL_MARKER)]
                + ([getattr(pytest.mark, SLOW_MARKER)] if cell.attack.entry.slow else []),
            )
            for cell in matrix.cells
        ]
        metafunc.parametrize("advprune_cell", cells)
    if wants_variant:
        variants = [
            pytest.param(v, id=v.id, marks=getattr(pytest.mark, TIMING_MARKER))
            for v in matrix.variants(session.settings.timing_batch_sizes)
        ]
        metafunc.parametrize("advprune_variant", variants)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Apply the --advprune-models/prunings/attacks filters and --advprune-shard as deselection, so pytest
    reports them."""
    from pytest_advprune.matrix import is_selected
    from pytest_advprune.scheduling import assign_models, shard_of_other_test

    settings = config.stash[SESSION_KEY].settings
    selected: list[pytest.Item] = []
    deselected: list[pytest.Item] = []
    model_of: dict[pytest.Item, str] = {}
    for item in items:
        spec = _spec_of(item)
        if spec is not None:
            model_of[item] = spec.model
        (selected if spec is None or is_selected(spec, settings) else deselected).append(item)
    if settings.shard is not None:
        shard = settings.shard
        weights: dict[str, int] = {}
        for item in selected:
            if item in model_of:
                weights[model_of[item]] = weights.get(model_of[item], 0) + 1
        shard_of_model = assign_models(weights, shard.count)
        config.stash[SHARD_MODELS_KEY] = shard_of_model
        in_shard = [
            item
            for item in selected
            if (shard_of_model[model_of[item]] if item in model_of else shard_of_other_test(item.nodeid, shard.count))
            == shard.index
        ]
        kept = set(in_shard)
        deselected += [item for item in selected if item not in kept]
        selected = in_shard
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = selected


def pytest_report_collectionfinish(config: pytest.Config) -> list[str]:
    """With --advprune-shard, which models this shard runs, so a CI log shows the split."""
    shard = config.stash[SESSION_KEY].settings.shard
    shard_of_model = config.stash.get(SHARD_MODELS_KEY, None)
    if shard is None or shard_of_model is None:
        return []
    mine = sorted(model for model, index in shard_of_model.items() if index == shard.index)
    line = f"advprune shard {shard}: "
    if not mine:
        models = len(shard_of_model)
        return [
            line + f"no model ({models} model{'s' if models != 1 else ''} in {shard.count} shards): use at most "
            f"{models} shard{'s' if models != 1 else ''}"
        ]
    return [line + f"models {', '.join(mine)} (of {len(shard_of_model)} in {shard.count} shards)"]


def _spec_of(item: pytest.Item) -> CellSpec | VariantSpec | None:
    callspec = getattr(item, "callspec", None)
    if callspec is None:
        return None
    spec: CellSpec | VariantSpec | None = callspec.params.get("advprune_cell") or callspec.params.get(
        "advprune_variant"
    )
    return spec


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A cell that cannot be computed honestly (a dataset or model that cannot be built, an attack that
    leaves its threat model, an attack or pruning that changes the base model) fails with the one message
    that says why (which file, which factory, what to do), not with a traceback through the plugin."""
    report = yield
    if call.excinfo is not None and call.excinfo.errisinstance(CellError):
        report.longrepr = f"advprune: {call.excinfo.value}"
    return report


@pytest.hookimpl(optionalhook=True)
def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict[str, Any]) -> None:
    """Record what ran the timings in pytest-benchmark's saved runs and JSON output."""
    from pytest_advprune.timing import device_description

    session = config.stash[SESSION_KEY]
    machine_info["advprune"] = {
        **device_description(session.device),
        "threads": session.settings.threads,
        "dtype": session.settings.dtype,
    }


def runnable_nodeid(nodeid: str, config: pytest.Config) -> str:
    """``nodeid`` (relative to the rootdir) as a path from where pytest was started, so the commands in
    messages work when pasted into the same shell."""
    import os

    from pytest_advprune.scheduling import strip_group

    path, separator, rest = strip_group(nodeid).partition("::")
    try:
        path = os.path.relpath(config.rootpath / path, config.invocation_params.dir)
    except ValueError:  # another drive (Windows): an absolute path works from anywhere
        path = str(config.rootpath / path)
    return path + separator + rest


# --- fixtures -------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def advprune_session(request: pytest.FixtureRequest) -> AdvPruneSession:
    """The session state: settings, matrix and the caches of datasets, models and adversarial examples."""
    return request.config.stash[SESSION_KEY]


@pytest.fixture
def advprune_cell() -> CellSpec:
    """The (model, pruning, attack) of this test; parametrized by the plugin from the matrix."""
    raise pytest.UsageError("advprune_cell is parametrized by pytest-advprune; the matrix is empty for this test.")


@pytest.fixture
def advprune_variant() -> VariantSpec:
    """The (model, pruning or base) of this latency test; parametrized by the plugin from the matrix."""
    raise pytest.UsageError("advprune_variant is parametrized by pytest-advprune; the matrix is empty for this test.")


@pytest.fixture
def advprune_dataset(advprune_session: AdvPruneSession, advprune_cell: CellSpec) -> Dataset:
    """The cell's dataset (images in [0, 1], train and eval splits), loaded once per session."""
    return advprune_session.dataset(advprune_session.base_model(advprune_cell.model).entry.dataset)


@pytest.fixture
def adversarial_attack(advprune_session: AdvPruneSession, advprune_cell: CellSpec) -> AttackGenerator:
    """The cell's attack as a generator: ``adversarial_attack(model, images, labels)`` -> adversarial images."""
    from pytest_advprune.attacks import AttackGenerator

    base = advprune_session.base_model(advprune_cell.model)
    seed = derive_seed(advprune_session.settings.seed, "fixture", advprune_cell.id)
    return AttackGenerator.for_spec(
        advprune_cell.attack, base.entry.normalization, seed, advprune_session.settings.batch_size
    )


@pytest.fixture
def base_model(advprune_session: AdvPruneSession, advprune_cell: CellSpec) -> nn.Module:
    """The cell's trained base model (built once per session; do not modify it)."""
    return advprune_session.base_model(advprune_cell.model).module


@pytest.fixture
def pruned_model(advprune_session: AdvPruneSession, advprune_cell: CellSpec) -> nn.Module:
    """The cell's pruned (and fine-tuned) model, built once per (model, pruning) from a copy of the base."""
    return advprune_session.pruned_model(advprune_cell.model, advprune_cell.pruning).module


@pytest.fixture
def base_adversarial_examples(advprune_session: AdvPruneSession, advprune_cell: CellSpec) -> torch.Tensor:
    """Adversarial examples crafted on the base model, once per (model, attack), shared by all prunings."""
    return advprune_session.base_adversarials(advprune_cell.model, advprune_cell.attack)


@pytest.fixture
def cell_result(advprune_session: AdvPruneSession, advprune_cell: CellSpec) -> CellResult:
    """The cell's measured metrics, per-sample outcomes and provenance."""
    return advprune_session.result(advprune_cell)


@pytest.fixture
def check_baseline(request: pytest.FixtureRequest, advprune_session: AdvPruneSession) -> Callable[[CellResult], None]:
    """``check_baseline(result)`` compares with the stored baseline (or writes it with --update-baselines)
    and fails the test with one line per field when anything is out of tolerance."""
    from pytest_advprune.baselines import BaselineStore
    from pytest_advprune.gate import Verdict, judge
    from pytest_advprune.reports.study import robustness_gaps
    from pytest_advprune.scheduling import strip_group

    settings = advprune_session.settings
    store = BaselineStore(settings.baselines_dir)

    def check(result: CellResult) -> None:
        __tracebackhide__ = True
        try:
            verdict = judge(
                result,
                store,
                advprune_session.settings,
                nodeid=runnable_nodeid(request.node.nodeid, request.config),
                rootdir=request.config.rootpath,
            )
        except Exception as error:  # every cell that ran gets a verdict and a count, even on a plugin bug
            verdict = Verdict("error", (f"advprune: checking cell {result.cell.id} failed: {error!r}",))
        request.node.user_properties.append(
            (
                VERDICT_PROPERTY,
                {
                    "cell": result.cell.id,
                    "nodeid": strip_group(request.node.nodeid),
                    "status": verdict.status,
                    "file": str(store.path_for(result.cell).relative_to(store.root)),
                    "payload": verdict.payload,
                    "environment_changes": list(verdict.environment_changes),
                    "comparisons": list(verdict.comparisons),
                    "violations": list(verdict.violations),
                    "worst": verdict.worst,
                    "failing": list(verdict.failing),
                    "stale_fields": list(verdict.stale_fields),
                    "gaps": robustness_gaps(result.outcomes, 1.0 - settings.alpha),
                    "metrics": result.metrics,
                    "flags": [flag.describe() for flag in result.flags] if settings.sanity != "off" else [],
                    "model": result.cell.model,
                    "pruning": result.cell.pruning.id,
                    "attack": result.cell.attack.name,
                    "attack_id": result.cell.attack.id,
                    "pruning_method": result.cell.pruning.name,
                    "amount": result.cell.pruning.amount,
                    "params": result.cell.attack.kwargs,
                },
            )
        )
        if not verdict.ok:
            raise AssertionError("\n\n".join(verdict.problems))
        if settings.sanity == "fail" and result.flags:
            flags = "\n".join(f"  {flag.describe()}" for flag in result.flags)
            raise AssertionError(
                f"advprune: cell {result.cell.id} raised sanity flags (advprune_sanity = fail):\n{flags}"
            )

    return check


@pytest.fixture
def inference_benchmark(
    request: pytest.FixtureRequest, benchmark: Any, advprune_session: AdvPruneSession, advprune_variant: VariantSpec
) -> Callable[[], None]:
    """``inference_benchmark()`` times one inference batch of this variant with pytest-benchmark."""
    from pytest_advprune.timing import time_inference

    def run() -> None:
        median = time_inference(benchmark, advprune_session, advprune_variant)
        request.node.user_properties.append(
            (
                LATENCY_PROPERTY,
                {
                    "model": advprune_variant.model,
                    "variant": advprune_variant.pruning_id,
                    "median": median,
                    "batch_size": advprune_variant.batch_size,
                },
            )
        )

    return run
