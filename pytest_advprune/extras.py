"""Optional dependencies: which registered code needs a module that only an extra installs, and the one
message a run gets when that module is missing.

torchattacks is an extra (``pip install 'pytest-advprune[torchattacks]'``), not a plain dependency: its
3.5.1 pins ``requests~=2.25.1``, which a model repository on ``requests>=2.32`` cannot install. The
built-in ``autoattack`` and a project's own torchattacks registrations need it. An attack whose factory
names the module (``import torchattacks`` in its body, a module global bound to it, a helper of the
project that does either) is found when the matrix is built, so a run without the extra stops once,
naming every such attack, instead of failing every cell with a traceback. A factory that imports it in a
way the code does not show (``importlib.import_module``) gets the same message when it is built.
"""

from __future__ import annotations

import functools
import importlib.util
import inspect
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from pytest_advprune.errors import MissingExtraError
from pytest_advprune.registry import AttackEntry

if TYPE_CHECKING:
    from pytest_advprune.matrix import Matrix
    from pytest_advprune.options import Settings

# Top-level module -> the extra of pytest-advprune that installs it.
EXTRAS: Mapping[str, str] = {"torchattacks": "torchattacks"}


def install_command(module: str) -> str:
    return f"pip install 'pytest-advprune[{EXTRAS[module]}]'"


def is_importable(module: str) -> bool:
    """Whether ``import module`` can find it, without importing it (torchattacks pulls in scipy)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a finder that refuses it; a module in sys.modules without a spec
        return False


def _top(name: str) -> str:
    return name.split(".")[0]


def referenced_names(factory: Any) -> set[str]:
    """The names a factory's code refers to (``co_names``: the modules it imports, in its body or in nested
    functions, the globals it reads, attribute names), a dotted name by its first part; the top-level
    modules its globals and closure variables are or come from; and the same for the functions and
    classes of the project (or of the plugin) it reaches through them. A module of an extra among them
    means the factory needs that extra."""
    names: set[str] = set()
    _walk(factory, names, set())
    return names


def _walk(obj: Any, names: set[str], seen: set[int]) -> None:
    if id(obj) in seen:
        return
    seen.add(id(obj))
    if isinstance(obj, functools.partial):
        _walk(obj.func, names, seen)
        return
    if inspect.ismodule(obj):
        names.add(_top(obj.__name__))
        return
    target = inspect.unwrap(obj) if callable(obj) else obj
    names.add(_top(str(getattr(target, "__module__", None) or type(target).__module__)))
    if not _is_own_code(target):
        return  # an installed library's code: its module is what counts, not what it imports in turn
    if inspect.isclass(target):
        for member in vars(target).values():
            function = member.__func__ if isinstance(member, (staticmethod, classmethod)) else member
            if inspect.isfunction(function):
                _walk(function, names, seen)
        return
    if not inspect.isfunction(target):
        return
    from pytest_advprune.cache.keys import code_names

    referenced = code_names(target.__code__)
    names |= {_top(name) for name in referenced}
    values = [target.__globals__[name] for name in sorted(referenced) if name in target.__globals__]
    for cell in target.__closure__ or ():
        try:
            values.append(cell.cell_contents)
        except ValueError:  # an empty cell: nothing bound yet
            continue
    for value in values:
        if inspect.ismodule(value) or inspect.isfunction(value) or inspect.isclass(value):
            _walk(value, names, seen)


def _is_own_code(value: Any) -> bool:
    from pytest_advprune.cache.keys import is_project_code

    module = str(getattr(value, "__module__", ""))
    return _top(module) == "pytest_advprune" or is_project_code(value)


def missing_modules(entry: AttackEntry) -> list[str]:
    """The modules of extras that ``entry``'s factory names and that cannot be imported here."""
    needed = referenced_names(entry.factory) & EXTRAS.keys()
    return sorted(module for module in needed if not is_importable(module))


def check_attacks(entries: Iterable[AttackEntry]) -> None:
    """Raise ``MissingExtraError`` naming every attack of ``entries`` that needs a missing extra."""
    by_name = {entry.name: entry for entry in entries}
    needing: dict[str, list[AttackEntry]] = {}
    for name in sorted(by_name):
        for module in missing_modules(by_name[name]):
            needing.setdefault(module, []).append(by_name[name])
    if needing:
        raise MissingExtraError("\n".join(describe(module, needing[module]) for module in sorted(needing)))


def describe(module: str, entries: Sequence[AttackEntry]) -> str:
    """The message for attacks that need ``module``: each with where it was registered, then the fix."""

    def origin(entry: AttackEntry) -> str:
        return f"{'built in' if entry.builtin else 'registered by'} {entry.origin}"

    if len(entries) == 1:
        head = f"{module} is not installed, and attack {entries[0].name!r} ({origin(entries[0])}) needs it."
        them = "it"
    else:
        lines = [f"{module} is not installed, and {len(entries)} attacks need it:"]
        lines += [f"  {entry.name!r} ({origin(entry)})" for entry in entries]
        head = "\n".join(lines)
        them = "them"
    return (
        f"{head}\npytest-advprune installs {module} only with its extra: {install_command(module)} "
        f"(or take {them} out of the matrix: advprune_attacks, --advprune-attacks)."
    )


def missing_extra(error: ModuleNotFoundError, entry: AttackEntry) -> MissingExtraError | None:
    """The error to raise instead of ``error``, raised while building ``entry``, when the module it could not
    find is one an extra installs; None for any other module."""
    module = _top(error.name or "")
    if module not in EXTRAS:
        return None
    return MissingExtraError(describe(module, [entry]))


def conftest_import_problem(error: BaseException) -> str | None:
    """The message for pytest's failure to import a conftest.py (``ConftestImportFailure``, which carries the
    file as ``path`` and the original error as ``cause``) because a module of an extra is missing; None for
    any other failure, which pytest then reports as usual."""
    cause, path = getattr(error, "cause", None), getattr(error, "path", None)
    if not isinstance(cause, ModuleNotFoundError) or path is None:
        return None
    module = _top(cause.name or "")
    if module not in EXTRAS:
        return None
    return (
        f"{path} imports {module} (itself or through a module it imports), which is not installed. "
        f"pytest-advprune installs {module} only with its extra: {install_command(module)}"
    )


def check_matrix(matrix: Matrix, settings: Settings) -> None:
    """``check_attacks`` for the attacks of the cells that run: one that the ``--advprune-*`` filters
    deselect everywhere needs nothing."""
    from pytest_advprune.matrix import is_selected

    check_attacks(cell.attack.entry for cell in matrix.cells if is_selected(cell, settings))
