"""Where each test runs: one xdist worker per base model, and the matrix split into CI shards by model.

Everything expensive in a cell is shared by the cells of its base model: the base model itself, its
pruned (fine-tuned) versions, the examples crafted on it. Keeping a model's cells on one worker (xdist)
or in one job (shards) is what makes each of those happen once.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pytest_advprune.errors import AdvPruneError

# xdist's --dist value that keeps tests of one ``xdist_group`` on one worker
LOADGROUP = "loadgroup"


def distribution_for(numprocesses: object, dist: str) -> str:
    """The xdist distribution mode to use: ``loadgroup`` when workers were asked for (``-n``) but no
    ``--dist`` was chosen (xdist would pick ``load``, which scatters a model's cells over every worker and
    so builds each pruned model and crafts each base attack once per worker); otherwise ``dist``."""
    return LOADGROUP if numprocesses and dist == "no" else dist


def strip_group(nodeid: str) -> str:
    """``nodeid`` without the ``@group`` suffix xdist's loadgroup mode adds (pytest cannot select by it)."""
    at, bracket = nodeid.rfind("@"), nodeid.rfind("]")
    return nodeid[:at] if at > bracket and "::" in nodeid[:at] else nodeid


def model_of_nodeid(nodeid: str, models: Sequence[str]) -> str | None:
    """The model of a parametrized cell or timing test (``...::test_x[lenet-channel_0.5-fgsm_0.1]``): the
    longest registered model name its parameter id starts with, followed by ``-`` (names may hold ``-``)."""
    _, bracket, params = strip_group(nodeid).partition("[")
    if not bracket:
        return None
    matches = [model for model in models if params.startswith(f"{model}-")]
    return max(matches, key=len) if matches else None


def model_group_scheduler(config: Any, log: Any, models: Sequence[str]) -> Any:
    """xdist's loadgroup scheduler, with every test of one model in one group (a work unit that goes to
    one worker). xdist's own groups (``@pytest.mark.xdist_group``) keep working. The controller does not
    collect, so the model is read from the test id, against the models registered when it starts."""
    from xdist.scheduler import LoadGroupScheduling

    class ModelGroupScheduling(LoadGroupScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            scope: str = super()._split_scope(nodeid)
            if scope != nodeid:  # an xdist_group of the project's own
                return scope
            model = model_of_nodeid(nodeid, models)
            return f"advprune model {model}" if model is not None else nodeid

    return ModelGroupScheduling(config, log)


class ShardError(AdvPruneError, ValueError):
    """An ``--advprune-shard`` value that is not ``K/N``."""


# A bound well above any CI matrix (shards hold whole models, so more shards than models run nothing),
# and low enough that no count can make the split or a message about it large.
MAX_SHARDS = 10_000
_SHARD = re.compile(r"\s*([0-9]+)\s*/\s*([0-9]+)\s*")


@dataclass(frozen=True)
class Shard:
    index: int  # 1-based, as users count jobs
    count: int

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse_shard(text: str) -> Shard:
    # Digits only: int() would also take "+1" or "1_0"; and no int() of thousands of digits (a ValueError
    # of its own since Python 3.11): a number of more than nine digits is above the bound anyway.
    match = _SHARD.fullmatch(text)
    fix = "the K-th of N CI jobs, e.g. --advprune-shard=1/3 in the first of three jobs"
    if match is None:
        what = "is empty" if not text.strip() else "is not a shard"
        raise ShardError(f"--advprune-shard={text!r} {what}. Use K/N with 1 <= K <= N <= {MAX_SHARDS:,}: {fix}.")
    index_digits, count_digits = (digits.lstrip("0") or "0" for digits in match.groups())
    if len(count_digits) > 9 or int(count_digits) > MAX_SHARDS:
        raise ShardError(
            f"--advprune-shard={text!r} asks for {count_digits} shards; at most {MAX_SHARDS:,} are allowed (a shard "
            f"runs whole models: use at most as many shards as models). Use K/N with 1 <= K <= N: {fix}."
        )
    index, count = (int(index_digits) if len(index_digits) <= 9 else MAX_SHARDS + 1), int(count_digits)
    if not 1 <= index <= count:
        raise ShardError(f"--advprune-shard={text!r} is not a shard. Use K/N with 1 <= K <= N: {fix}.")
    return Shard(index, count)


def assign_models(weights: Mapping[str, int], count: int) -> dict[str, int]:
    """Shard (1-based) of each model: heaviest first onto the lightest shard so far (ties: by name), so
    every job gets whole models and about the same number of tests. Deterministic, so every job of a CI
    matrix computes the same split from the same collection."""
    # Only the first len(weights) shards can receive a model (each empty shard is lighter than any
    # loaded one, lowest number first), so the work and memory follow the models, never ``count``.
    loads = [0] * min(count, len(weights))
    assignment: dict[str, int] = {}
    for model in sorted(weights, key=lambda name: (-weights[name], name)):
        lightest = min(range(len(loads)), key=lambda shard: (loads[shard], shard))
        loads[lightest] += weights[model]
        assignment[model] = lightest + 1
    return assignment


def shard_of_other_test(nodeid: str, count: int) -> int:
    """Shard (1-based) of a test that is not a cell of the matrix: a stable hash of its id, so each such
    test runs in exactly one job."""
    return zlib.crc32(strip_group(nodeid).encode()) % count + 1
