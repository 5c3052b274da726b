"""Command-line and ini options, and their validation into one immutable ``Settings``.

Precedence: command line, then ini (``pytest.ini``, ``pyproject.toml``, ``tox.ini``), then default.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from pytest_advprune.invariants import DEFAULT_INVARIANTS, InvariantError, Invariants, parse_invariants
from pytest_advprune.scheduling import Shard, ShardError, parse_shard

DEFAULT_TOLERANCE = 2.0  # accuracy points; about 9 of 450 digits samples
DEVICE_CHOICES = "cpu, cuda, cuda:N, mps or auto"


DEFAULT_MAX_CELLS = 10_000  # far above a study (the default matrix has 60), far below what exhausts memory


@dataclass(frozen=True)
class Settings:
    device: str
    update_baselines: bool
    baselines_dir: Path
    model_patterns: tuple[str, ...]
    pruning_patterns: tuple[str, ...]
    attack_patterns: tuple[str, ...]
    model_specs: tuple[str, ...] | None  # the matrix, from ini; None = the defaults (see matrix.py)
    pruning_specs: tuple[str, ...] | None
    attack_specs: tuple[str, ...] | None
    samples: int | None
    seed: int
    tolerance: float
    metric_tolerances: dict[str, float]
    finetune_epochs: int
    finetune_learning_rate: float
    threads: int
    batch_size: int
    timing_batch_sizes: tuple[int, ...]
    timing_rounds: int
    gate: str = "both"
    alpha: float = 0.05
    ci_mode: bool = False
    prune_baselines: bool = False
    report_path: Path | None = None
    dtype: str = "float32"
    invariants: Invariants = DEFAULT_INVARIANTS
    accept_regressions: tuple[str, ...] = ()  # cell-id patterns whose regressions an update may write
    retrain_tolerance: float | None = None  # against a baseline of other base weights; None: tolerance
    retrain_metric_tolerances: dict[str, float] = field(default_factory=dict)
    sanity: str = "warn"  # sanity flags: warn (list them), fail (fail the cells and the run) or off
    perturbation_tolerance: float = 10.0  # % relative change of a minimal attack's perturbation norms
    shard: Shard | None = None  # this CI job's part of the matrix (scheduling.py)
    cache_dir: Path | None = None  # the on-disk cache (cache/); None: no cache
    cache_reads: bool = True  # False in CI mode unless asked: entries are written but never read
    max_cells: int = DEFAULT_MAX_CELLS  # the most cells a matrix may have (checked before sweeps are expanded)


def add_options(parser: pytest.Parser) -> None:
    group = parser.getgroup("advprune", "adversarial robustness of pruned models (pytest-advprune)")
    group.addoption(
        "--advprune-device",
        default=None,
        help="Device for models, data and attacks: cpu, cuda, cuda:N, mps or auto. Default: 'cpu'",
    )
    group.addoption(
        "--update-baselines",
        action="store_true",
        default=False,
        help="Write the measured metrics of the selected cells as their new baselines. Default: %(default)r",
    )
    group.addoption(
        "--advprune-baselines-dir",
        default=None,
        help="Folder of baseline files, relative to the rootdir. Default: ini advprune_baselines_dir or 'baselines'",
    )
    for axis in ("models", "prunings", "attacks"):
        group.addoption(
            f"--advprune-{axis}",
            default=None,
            metavar="PATTERNS",
            help=f"Run only the {axis} whose ids match these comma-separated fnmatch patterns. Default: all",
        )
    group.addoption(
        "--advprune-samples",
        default=None,
        help="Number of evaluation samples per cell (a seeded subset). Default: ini advprune_samples or all",
    )
    group.addoption(
        "--advprune-accept-regressions",
        nargs="?",
        const="*",
        default=None,
        metavar="PATTERNS",
        help="With --update-baselines, also write cells whose numbers got worse beyond the gate (all, or the "
        "cells whose ids match these comma-separated fnmatch patterns). Default: refuse them",
    )
    group.addoption(
        "--advprune-ci",
        action="store_true",
        default=False,
        help="CI mode: refuse every baseline write and fail on a missing baseline (also ini advprune_ci, "
        "or ADVPRUNE_CI=1). Default: %(default)r",
    )
    group.addoption(
        "--advprune-prune-baselines",
        action="store_true",
        default=False,
        help="Delete baseline files that no cell of the matrix owns (refused on a filtered run). Default: %(default)r",
    )
    group.addoption(
        "--advprune-report",
        default=None,
        metavar="PATH",
        help="Write every cell's metrics and paired comparison with its baseline to PATH (.json, or .md for "
        "Markdown). Default: no report",
    )
    group.addoption(
        "--advprune-dtype",
        default=None,
        help="Floating-point type of the timed inference: float32, float16 or bfloat16 (robustness cells always "
        "use float32). Default: 'float32'",
    )
    group.addoption(
        "--advprune-gate",
        default=None,
        choices=("tolerance", "significance", "both"),
        help="When a worse metric fails its cell: beyond tolerance, significant (McNemar), or both. Default: 'both'",
    )
    group.addoption(
        "--advprune-shard",
        default=None,
        metavar="K/N",
        help="Run the K-th of N parts of the matrix (one CI job each); a model's cells stay in one part. Default: all",
    )
    group.addoption(
        "--advprune-cache-dir",
        default=None,
        metavar="PATH",
        help="Folder of the cache of pruned models and crafted examples, relative to the rootdir. Default: ini "
        "advprune_cache_dir, or 'advprune' in pytest's cache directory",
    )
    group.addoption(
        "--advprune-no-cache",
        action="store_true",
        default=False,
        help="Compute everything, and neither read nor write the cache. Default: %(default)r",
    )
    group.addoption(
        "--advprune-ci-cache",
        action="store_true",
        default=False,
        help="In CI mode, also read cache entries that earlier runs wrote (a CI cache restored from an earlier "
        "job). Default: CI mode only writes them",
    )
    group.addoption(
        "--advprune-seed", default=None, help="Base seed of every cell's seed. Default: ini advprune_seed or 0"
    )
    group.addoption(
        "--advprune-max-cells",
        default=None,
        metavar="N",
        help="The most cells the matrix may have; a larger one stops before collection. Default: ini "
        f"advprune_max_cells or {DEFAULT_MAX_CELLS}",
    )

    parser.addini(
        "advprune_baselines_dir", "Folder of the baseline files, relative to the rootdir", default="baselines"
    )
    parser.addini("advprune_models", "Model names of the matrix (one per line)", type="linelist")
    parser.addini("advprune_prunings", "Pruning specs of the matrix, e.g. l1_unstructured:0.5", type="linelist")
    parser.addini("advprune_attacks", "Attack specs of the matrix, e.g. pgd_linf:eps=0.1,steps=20", type="linelist")
    parser.addini("advprune_samples", "Number of evaluation samples per cell (empty: all)", default="")
    parser.addini("advprune_seed", "Base seed", default="0")
    parser.addini("advprune_max_cells", "The most cells the matrix may have", default=str(DEFAULT_MAX_CELLS))
    parser.addini(
        "advprune_cache_dir", "Folder of the cache of pruned models and crafted examples, relative to the rootdir"
    )
    parser.addini(
        "advprune_ci_cache", "In CI mode, also read cache entries written by earlier runs (true/false)", default=""
    )
    parser.addini(
        "advprune_ci", "CI mode: refuse every baseline write, fail on a missing baseline (true/false)", default=""
    )
    parser.addini("advprune_gate", "Gate policy: tolerance, significance or both", default="both")
    parser.addini(
        "advprune_alpha", "Significance level of McNemar's test (and 1 - confidence of intervals)", default="0.05"
    )
    parser.addini(
        "advprune_tolerance", "Allowed change of each point metric, in accuracy points", default=str(DEFAULT_TOLERANCE)
    )
    parser.addini(
        "advprune_metric_tolerances", "Per-metric tolerances, e.g. transfer_robust_accuracy=3", type="linelist"
    )
    parser.addini(
        "advprune_sanity",
        "Sanity flags (signs of gradient masking or a broken attack): warn, fail or off",
        default="warn",
    )
    parser.addini(
        "advprune_perturbation_tolerance",
        "Allowed relative decrease of a minimal attack's median and mean perturbation norm, in percent",
        default="10",
    )
    parser.addini(
        "advprune_retrain_tolerance",
        "Allowed change of point metrics against a baseline of other base weights (a retrain), in points "
        "(empty: advprune_tolerance)",
        default="",
    )
    parser.addini(
        "advprune_retrain_metric_tolerances",
        "Per-metric tolerances against a baseline of other base weights, e.g. pruned_robust_accuracy=8",
        type="linelist",
    )
    parser.addini(
        "advprune_max_clean_drop",
        "Largest clean-accuracy loss (points) of a pruned model: 'points [for scope]' per line (default 3)",
        type="linelist",
    )
    parser.addini(
        "advprune_max_robustness_gap",
        "Largest significant drop (points) of pruned white-box / transfer robust accuracy below the base "
        "model's white-box robust accuracy: '[metric =] points [for scope]' per line (default 15)",
        type="linelist",
    )
    parser.addini(
        "advprune_floors",
        "Bounds any metric must keep: 'metric >= value [for scope]' or 'metric <= value [for scope]' per line",
        type="linelist",
    )
    parser.addini("advprune_finetune_epochs", "Fine-tuning epochs after pruning", default="5")
    parser.addini("advprune_finetune_lr", "Fine-tuning learning rate (Adam)", default="0.001")
    parser.addini(
        "advprune_threads", "Torch CPU threads while computing cells (fixed for reproducibility)", default="1"
    )
    parser.addini("advprune_batch_size", "Batch size for attacks and evaluation", default="256")
    parser.addini("advprune_timing_batch_sizes", "Batch sizes of the timed inference, comma-separated", default="256")
    parser.addini("advprune_timing_rounds", "Timed rounds per latency benchmark", default="30")


def parse_number(text: str, name: str, kind: type[int] | type[float], minimum: float, fix: str) -> int | float:
    """``text`` as ``kind`` >= ``minimum``, or a UsageError naming the option, the value and the fix."""
    try:
        value = kind(text)
    except (TypeError, ValueError):
        raise pytest.UsageError(f"{name}={text!r} is not a{'n integer' if kind is int else ' number'}. {fix}") from None
    if not math.isfinite(value) or value < minimum:
        raise pytest.UsageError(f"{name}={text!r} must be >= {minimum}. {fix}")
    return value


def parse_patterns(text: str | None) -> tuple[str, ...]:
    if text is None or not text.strip():
        return ("*",)
    return tuple(p.strip() for p in text.split(",") if p.strip())


def parse_tolerances(lines: list[str], source: str) -> dict[str, float]:
    from pytest_advprune.metrics import POINT_METRICS

    tolerances: dict[str, float] = {}
    for line in lines:
        metric, eq, value = line.partition("=")
        metric = metric.strip()
        if not eq or metric not in POINT_METRICS:
            raise pytest.UsageError(
                f"{source}: {line!r} is not 'metric=points' with a metric from: {', '.join(POINT_METRICS)}."
            )
        tolerances[metric] = float(
            parse_number(value.strip(), f"{source} {metric}", float, 0.0, "Use points, e.g. 2.5.")
        )
    return tolerances


def resolve_device(text: str) -> str:
    """Validate a device name against this machine; ``auto`` picks cuda, then mps, then cpu."""
    text = text.strip().lower()
    if text == "cpu":
        return "cpu"
    import torch

    if text == "auto":
        if torch.cuda.is_available():
            return "cuda"
        mps = getattr(torch.backends, "mps", None)
        return "mps" if mps is not None and mps.is_available() else "cpu"
    available = ["cpu"]
    if torch.cuda.is_available():
        available += ["cuda"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        available.append("mps")
    if text.startswith("cuda") or text == "mps":
        if text in available:
            return text
        if text.startswith("cuda:") and not text[5:].isdigit():
            raise pytest.UsageError(f"--advprune-device={text!r} is malformed: use cuda:N, e.g. cuda:0.")
        raise pytest.UsageError(
            f"--advprune-device={text!r} is not available on this machine "
            f"(torch {torch.__version__}, torch.cuda.is_available()={torch.cuda.is_available()}). "
            f"Available: {', '.join(available)}. Use --advprune-device=cpu, or auto to pick the best one."
        )
    raise pytest.UsageError(f"--advprune-device={text!r} is not a device. Use one of: {DEVICE_CHOICES}.")


TIMING_DTYPES = ("float32", "float16", "bfloat16")


def parse_dtype(text: str) -> str:
    if text not in TIMING_DTYPES:
        raise pytest.UsageError(f"--advprune-dtype={text!r} is not supported. Use one of: {', '.join(TIMING_DTYPES)}.")
    return text


TRUE_WORDS = ("1", "true", "t", "yes", "y", "on", "enable", "enabled")
FALSE_WORDS = ("", "0", "false", "f", "no", "n", "off", "disable", "disabled")


def parse_choice(value: str, name: str, choices: tuple[str, ...]) -> str:
    text = value.strip().lower()
    if text not in choices:
        raise pytest.UsageError(f"ini {name} = {value!r}: use one of {', '.join(choices)}.")
    return text


def parse_yes_no(value: str, name: str) -> bool:
    """A yes/no setting; a value that is neither a usual true word nor a usual false word is refused, so
    that a typo never silently leaves a safety switch off."""
    if value.strip().lower() in TRUE_WORDS:
        return True
    if value.strip().lower() in FALSE_WORDS:
        return False
    raise pytest.UsageError(
        f"{name}={value!r} is not a yes/no value. Use one of {', '.join(TRUE_WORDS)} to turn it on, or one of "
        f"{', '.join(w for w in FALSE_WORDS if w)} (or leave it empty) to turn it off."
    )


def parse_accept_patterns(text: str | None, update: bool) -> tuple[str, ...]:
    if text is None:
        return ()
    if not update:
        raise pytest.UsageError(
            "--advprune-accept-regressions only applies to --update-baselines: add --update-baselines to write "
            "the cells whose numbers got worse."
        )
    if "/" in text or "::" in text or text.endswith(".py") or os.sep in text:
        # nargs='?' takes the next word: 'pytest --update-baselines --advprune-accept-regressions suites/'.
        raise pytest.UsageError(
            f"--advprune-accept-regressions took {text!r} as its cell patterns, which looks like a path. Put "
            "paths before it, or give patterns with '=': --advprune-accept-regressions='resnet-*'."
        )
    return parse_patterns(text)


def check_report_path(text: str) -> Path:
    """The report file, checked before any cell runs: a report that cannot be written is a usage error
    now, not a traceback after an hour of cells."""
    path = Path(text).resolve()
    if path.suffix not in (".json", ".md", ".html"):
        raise pytest.UsageError(
            f"--advprune-report={text!r} must end in .json, .md (Markdown) or .html (one self-contained page)."
        )
    if path.is_dir():
        raise pytest.UsageError(f"--advprune-report={text!r} is a directory. Give a file name, e.g. {text}/report.md.")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise pytest.UsageError(
                    f"--advprune-report={text!r} lies under {str(parent)!r}, which is a file, not a folder."
                )
            break
    return path


def active_filters(config: pytest.Config) -> list[str]:
    """The options of this run that select a subset of the tests (for refusing whole-suite operations)."""
    filters = []
    if config.getoption("keyword", ""):
        filters.append(f"-k {config.getoption('keyword')!r}")
    if config.getoption("markexpr", ""):
        filters.append(f"-m {config.getoption('markexpr')!r}")
    if config.getoption("deselect", None):
        filters.append("--deselect")
    if config.getoption("lf", False) or config.getoption("failedfirst", False):
        filters.append("--lf/--ff")
    if config.getoption("advprune_shard", None):
        filters.append(f"--advprune-shard={config.getoption('advprune_shard')}")
    for axis in ("models", "prunings", "attacks"):
        if config.getoption(f"advprune_{axis}"):
            filters.append(f"--advprune-{axis}")
    if any("::" in str(arg) for arg in config.args):
        filters.append("node ids")
    for override in config.getoption("override_ini", None) or []:
        key = str(override).partition("=")[0].strip()
        if key in ("advprune_models", "advprune_prunings", "advprune_attacks", "advprune_baselines_dir"):
            filters.append(f"-o {key}")
    return filters


def cache_directory(config: pytest.Config) -> Path | None:
    """The cache's folder: --advprune-cache-dir, ini advprune_cache_dir (relative to the rootdir), or
    ``advprune`` in pytest's cache directory; None with --advprune-no-cache, when pytest's cache is off
    (``-p no:cacheprovider``) and no folder was given, and (with a warning) when the folder or the cache's
    key cannot be used."""
    if config.getoption("advprune_no_cache"):
        return None
    given = config.getoption("advprune_cache_dir") or str(config.getini("advprune_cache_dir") or "").strip()
    # Like pytest's own cache, a cache that cannot be used (.pytest_cache a file, a read-only checkout, a
    # key that cannot be made) is turned off with a warning: it never breaks a run, least of all one with
    # no cells.
    if given:
        try:
            folder = (config.rootpath / given).resolve()
        except (OSError, RuntimeError) as error:  # a loop of symbolic links
            reason = f"its folder {given!r} cannot be resolved ({error}). Fix it, or give another folder"
            return _cache_off(config, reason + " with --advprune-cache-dir")
        blocker = next((path for path in (folder, *folder.parents) if path.exists() and not path.is_dir()), None)
        if blocker is not None:
            where = "" if blocker == folder else f", where its folder {folder} should be"
            reason = f"{blocker} is a file{where}. Remove it, or give another folder with --advprune-cache-dir"
            return _cache_off(config, reason)
    else:
        pytest_cache = getattr(config, "cache", None)
        if pytest_cache is None:
            return None
        try:
            folder = Path(pytest_cache.mkdir("advprune"))
        except OSError as error:
            return _cache_off(
                config,
                f"its folder in pytest's cache cannot be made ({error.strerror}: {error.filename}). Fix or remove "
                f"{config.rootpath / '.pytest_cache'}, or give another folder with --advprune-cache-dir",
            )
    from pytest_advprune.cache.trust import CacheKeyError, cache_secret

    try:
        cache_secret()
    except CacheKeyError as error:
        return _cache_off(config, str(error))
    return folder


def baselines_folder(config: pytest.Config, given: str) -> Path:
    """The baselines folder, resolved. One that cannot be (a symbolic link to itself) is a warning, not an
    INTERNALERROR in every run: runs without cells pass, and cells find their baselines unreadable."""
    folder = config.rootpath / given
    try:
        return folder.resolve()
    except (OSError, RuntimeError) as error:
        config.issue_config_time_warning(
            pytest.PytestConfigWarning(
                f"advprune: the baselines folder {folder} (--advprune-baselines-dir / ini advprune_baselines_dir) "
                f"cannot be resolved ({error}): make it a folder, or give another one."
            ),
            stacklevel=2,
        )
        return folder


def _cache_off(config: pytest.Config, reason: str) -> Path | None:
    """Warn that the cache is off, and why; None, the cache folder of a run without a cache."""
    config.issue_config_time_warning(
        pytest.PytestCacheWarning(
            f"advprune: the cache is off for this run: {reason}. (--advprune-no-cache turns it off without "
            "this warning.)"
        ),
        stacklevel=3,
    )
    return None


def read_settings(config: pytest.Config) -> Settings:
    """Read and validate every option once, at configure time, so mistakes stop the run before collection."""

    def option(name: str) -> str | None:
        value = config.getoption(name)
        return None if value is None else str(value)

    def ini(name: str) -> str:
        return str(config.getini(name)).strip()

    def ini_list(name: str) -> tuple[str, ...] | None:
        values = [str(v).strip() for v in config.getini(name) if str(v).strip()]
        return tuple(values) or None

    samples_text = option("advprune_samples") or ini("advprune_samples")
    samples = None
    if samples_text and samples_text.lower() != "all":
        samples = int(parse_number(samples_text, "--advprune-samples", int, 1, "Use a positive integer, or 'all'."))
    baselines = option("advprune_baselines_dir") or ini("advprune_baselines_dir") or "baselines"
    # Every source is read even when another one already turns CI mode on: a bad value is always reported.
    ci_sources = [
        source
        for source, on in (
            ("--advprune-ci", bool(config.getoption("advprune_ci"))),
            ("ini advprune_ci", parse_yes_no(ini("advprune_ci"), "ini advprune_ci")),
            (
                f"ADVPRUNE_CI={os.environ.get('ADVPRUNE_CI', '')!r}",
                parse_yes_no(os.environ.get("ADVPRUNE_CI", ""), "ADVPRUNE_CI"),
            ),
        )
        if on
    ]
    ci_mode = bool(ci_sources)
    update = bool(config.getoption("update_baselines"))
    prune = bool(config.getoption("advprune_prune_baselines"))
    if ci_mode and (update or prune):
        flag = "--update-baselines" if update else "--advprune-prune-baselines"
        raise pytest.UsageError(
            f"{flag} is refused in CI mode (turned on by {' and '.join(ci_sources)}): CI never writes "
            "baselines. Update them on a development machine and commit the files."
        )
    if prune:
        filters = active_filters(config)
        if filters:
            raise pytest.UsageError(
                f"--advprune-prune-baselines refuses a filtered run ({', '.join(filters)}): files of the cells left "
                "out would look unused. Run it on the whole suite, without filters."
            )
    gate = option("advprune_gate") or ini("advprune_gate") or "both"
    if gate not in ("tolerance", "significance", "both"):
        raise pytest.UsageError(f"advprune_gate={gate!r} is not a policy. Use tolerance, significance or both.")
    alpha = float(parse_number(ini("advprune_alpha"), "advprune_alpha", float, 0.0, "Use e.g. 0.05."))
    if not 0.0 < alpha < 1.0:
        raise pytest.UsageError(f"advprune_alpha={alpha!r} must be between 0 and 1, e.g. 0.05.")
    report = option("advprune_report")
    try:
        invariants = parse_invariants(
            [str(v) for v in config.getini("advprune_max_clean_drop")],
            [str(v) for v in config.getini("advprune_max_robustness_gap")],
            [str(v) for v in config.getini("advprune_floors")],
        )
    except InvariantError as error:
        raise pytest.UsageError(str(error)) from None
    trust_cache = parse_yes_no(ini("advprune_ci_cache"), "advprune_ci_cache") or bool(
        config.getoption("advprune_ci_cache")
    )
    shard_text = option("advprune_shard")
    try:
        # An empty value (a CI matrix variable that was not set) is an error, never the whole matrix.
        shard = parse_shard(shard_text) if shard_text is not None else None
    except ShardError as error:
        raise pytest.UsageError(str(error)) from None
    return Settings(
        shard=shard,
        cache_dir=cache_directory(config),
        cache_reads=not ci_mode or trust_cache,
        report_path=check_report_path(report) if report else None,
        invariants=invariants,
        accept_regressions=parse_accept_patterns(option("advprune_accept_regressions"), update),
        gate=gate,
        alpha=alpha,
        ci_mode=ci_mode,
        prune_baselines=prune,
        device=resolve_device(option("advprune_device") or "cpu"),
        update_baselines=update,
        baselines_dir=baselines_folder(config, baselines),
        model_patterns=parse_patterns(option("advprune_models")),
        pruning_patterns=parse_patterns(option("advprune_prunings")),
        attack_patterns=parse_patterns(option("advprune_attacks")),
        model_specs=ini_list("advprune_models"),
        pruning_specs=ini_list("advprune_prunings"),
        attack_specs=ini_list("advprune_attacks"),
        samples=samples,
        max_cells=int(
            parse_number(
                option("advprune_max_cells") or ini("advprune_max_cells"),
                "--advprune-max-cells",
                int,
                1,
                "Use a whole number of cells, e.g. 20000.",
            )
        ),
        seed=int(
            parse_number(
                option("advprune_seed") or ini("advprune_seed"), "--advprune-seed", int, 0, "Use an integer >= 0."
            )
        ),
        tolerance=float(
            parse_number(ini("advprune_tolerance"), "advprune_tolerance", float, 0.0, "Use points, e.g. 2.0.")
        ),
        metric_tolerances=parse_tolerances(
            list(config.getini("advprune_metric_tolerances")), "advprune_metric_tolerances"
        ),
        retrain_tolerance=(
            float(
                parse_number(ini("advprune_retrain_tolerance"), "advprune_retrain_tolerance", float, 0.0, "Use points.")
            )
            if ini("advprune_retrain_tolerance")
            else None
        ),
        retrain_metric_tolerances=parse_tolerances(
            list(config.getini("advprune_retrain_metric_tolerances")), "advprune_retrain_metric_tolerances"
        ),
        sanity=parse_choice(ini("advprune_sanity"), "advprune_sanity", ("warn", "fail", "off")),
        perturbation_tolerance=float(
            parse_number(
                ini("advprune_perturbation_tolerance"),
                "advprune_perturbation_tolerance",
                float,
                0.0,
                "Use percent, e.g. 10.",
            )
        ),
        finetune_epochs=int(
            parse_number(ini("advprune_finetune_epochs"), "advprune_finetune_epochs", int, 0, "Use an integer >= 0.")
        ),
        finetune_learning_rate=float(
            parse_number(ini("advprune_finetune_lr"), "advprune_finetune_lr", float, 0.0, "Use e.g. 0.001.")
        ),
        threads=int(parse_number(ini("advprune_threads"), "advprune_threads", int, 1, "Use a positive integer.")),
        batch_size=int(
            parse_number(ini("advprune_batch_size"), "advprune_batch_size", int, 1, "Use a positive integer.")
        ),
        timing_batch_sizes=tuple(
            int(
                parse_number(text.strip(), "advprune_timing_batch_sizes", int, 1, "Use positive integers, e.g. 1, 256.")
            )
            for text in ini("advprune_timing_batch_sizes").split(",")
            if text.strip()
        )
        or (256,),
        dtype=parse_dtype(option("advprune_dtype") or "float32"),
        timing_rounds=int(
            parse_number(ini("advprune_timing_rounds"), "advprune_timing_rounds", int, 1, "Use a positive integer.")
        ),
    )
