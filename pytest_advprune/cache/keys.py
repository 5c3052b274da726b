"""Fingerprints of the code that produces a cached result: the plugin's own source, a registered
factory's source, and the source of a model's own module classes.

A cache key holds everything that can change a result (see ``session.py`` for the keys themselves):
data and weights fingerprints, parameters and seeds, device, threads, torch and plugin versions, and
these code fingerprints. A registered function's fingerprint covers its own text and the project code
it reaches through global names, so editing one pruning function (or a helper only it uses) recomputes
that pruning's entries and no other. What code cannot show (files a factory reads, an environment
variable whose name is computed) is not in the key: see docs/explanation/cache.md.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import inspect
import os
import re
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest_advprune

ENVIRONMENT_NAME = re.compile(r"[A-Z][A-Z0-9_]{1,63}")


def _sha(text: str | bytes) -> str:
    return hashlib.sha256(text.encode() if isinstance(text, str) else text).hexdigest()[:32]


@functools.lru_cache(maxsize=1)
def plugin_fingerprint() -> str:
    """The plugin's own Python source (every file of the package): any change to it, released or not,
    gives new keys."""
    root = Path(pytest_advprune.__file__).parent
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:32]


# Folders under the rootdir that hold no project code: hidden ones (.git, .venv, .tox), caches, and
# installed packages; a folder with a pyvenv.cfg is a virtual environment whatever its name.
SKIPPED_FOLDERS = frozenset({"__pycache__", "node_modules", "site-packages"})
MAX_SCANNED_ENTRIES = 200_000  # a rootdir this large (a home folder) is not a project: no reuse at all


def project_sources_fingerprint(rootdir: Path) -> str:
    """Every Python source file under the rootdir, by path and content. A registered function's own
    fingerprint follows the code it reaches by name; this covers what no walk can see: a ``conftest.py``
    that reassigns a project module's attribute, a module imported inside a function, a monkeypatch. Any
    edit to a Python file of the project recomputes every entry: reuse is lost, never correctness."""
    digest = hashlib.sha256()
    scanned = 0
    folders = [rootdir]
    while folders:
        folder = folders.pop()
        try:
            with os.scandir(folder) as listing:
                entries = sorted(listing, key=lambda entry: entry.name)
        except OSError:
            continue  # an unreadable folder holds nothing a run can import either
        scanned += len(entries)
        if scanned > MAX_SCANNED_ENTRIES:
            return _unfingerprinted(digest, f"(more than {MAX_SCANNED_ENTRIES} entries under {rootdir})")
        if any(entry.name == "pyvenv.cfg" for entry in entries) and folder != rootdir:
            continue
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):  # a linked folder is not entered: it may be anywhere
                    if not entry.name.startswith(".") and entry.name not in SKIPPED_FOLDERS:
                        folders.append(Path(entry.path))
                elif entry.name.endswith(".py") and entry.is_file():  # a linked file is read: it is imported
                    content = Path(entry.path).read_bytes()
                    digest.update(Path(entry.path).relative_to(rootdir).as_posix().encode() + b"\0")
                    digest.update(hashlib.sha256(content).digest())
            except OSError:
                digest.update(f"unreadable {entry.path}".encode())
    return digest.hexdigest()[:32]


def code_fingerprint(obj: Any) -> str:
    """A registered function's or class's code and the project code it uses: its source text, the values
    of the module-level constants it reads, and (recursively) the functions, classes and modules of the
    project it refers to by a global name (``helper(model)``, ``recipes.magnitude(...)``, ``SCALE``), so
    that editing a helper recomputes what depends on it; and the current value of every environment
    variable its code names literally (an upper-case string constant such as ``"RECIPE_VARIANT"``). Code of
    installed packages is covered by their versions in the key (torch) or not at all; pytest-advprune's own
    by ``plugin_fingerprint``."""
    parts: list[str] = []
    _collect(obj, parts, set())
    return _sha("\n".join(parts))


def _collect(obj: Any, parts: list[str], seen: set[int]) -> None:
    if id(obj) in seen:
        return
    seen.add(id(obj))
    if isinstance(obj, functools.partial):
        parts.append(f"partial args {_value(obj.args, parts, seen)} {_value(obj.keywords, parts, seen)}")
        _collect(obj.func, parts, seen)
        return
    if inspect.ismethod(obj):  # a bound method (``PRUNER.prune``): its function and the object's state
        parts.append(f"bound to {_value(obj.__self__, parts, seen)}")
        _collect(obj.__func__, parts, seen)
        return
    if inspect.ismodule(obj):
        parts.append(f"module {obj.__name__}: {_source(obj)}")
        return
    if inspect.isfunction(obj) and hasattr(obj, "__wrapped__"):
        # A decorator's wrapper: its own code and what it closes over count too (getsource would show
        # the wrapped function's text for it), then the function it wraps.
        code = obj.__code__
        parts.append(f"wrapper {obj.__qualname__}: {(code.co_code, code.co_consts, code.co_names)!r}")
        _collect_function(obj, parts, seen)
        _collect(obj.__wrapped__, parts, seen)
        return
    parts.append(f"{getattr(obj, '__qualname__', type(obj).__name__)}: {_source(obj)}")
    functions = [obj] if inspect.isfunction(obj) else []
    if inspect.isclass(obj):
        # The class and the project classes it inherits from (a forward defined in a base class), every
        # function of theirs (methods, static and class methods, property accessors), and the values of
        # their class attributes (``K = int(os.environ["RECIPE_K"])`` is computed once, at import).
        for cls in inspect.getmro(obj)[1:]:
            if is_project_code(cls):
                _collect(cls, parts, seen)
        functions = [f for member in vars(obj).values() for f in _functions_of(member)]
        for name, member in sorted(vars(obj).items()):
            if name.startswith("__") or name.startswith("_abc"):
                continue
            if not isinstance(member, (staticmethod, classmethod, property)) and not _functions_of(member):
                parts.append(f"class attribute {name} = {_value(member, parts, seen)}")
    for function in functions:
        _collect_function(function, parts, seen)


def _functions_of(member: Any) -> list[Any]:
    if isinstance(member, (staticmethod, classmethod)):
        member = member.__func__
    if isinstance(member, property):
        return [inspect.unwrap(f) for f in (member.fget, member.fset, member.fdel) if inspect.isfunction(f)]
    return [inspect.unwrap(member)] if inspect.isfunction(member) else []


def _collect_function(function: Any, parts: list[str], seen: set[int]) -> None:
    """What a function reads besides its own text: environment variables it names, the globals it uses
    (and the attributes it names of project modules among them, recursively: ``recipes.helper(model)``,
    ``pkg.cfg.K``), the modules it imports in its body, the variables it closes over (a factory's
    arguments) and its default values."""
    for variable in sorted(_environment_names(function.__code__)):
        parts.append(f"environment {variable} = {os.environ.get(variable)!r}")
    names = sorted(code_names(function.__code__))  # also attribute names: only globals are kept
    used = [(name, function.__globals__[name]) for name in names if name in function.__globals__]
    modules = [(name, value) for name, value in used if inspect.ismodule(value) and is_project_code(value)]
    visited: set[int] = set()
    while modules:
        name, module = modules.pop()
        if id(module) in visited:
            continue
        visited.add(id(module))
        for attribute in names:
            if attribute in vars(module):
                value = vars(module)[attribute]
                used.append((f"{name}.{attribute}", value))
                if inspect.ismodule(value) and is_project_code(value):
                    modules.append((f"{name}.{attribute}", value))
    for module_name in sorted(_imported_modules(function.__code__)):
        parts.append(f"imports {module_name}: {_imported_module_text(module_name)}")
    closure = zip(function.__code__.co_freevars, function.__closure__ or (), strict=False)
    for name, cell in closure:
        try:
            used.append((f"closure {name}", cell.cell_contents))
        except ValueError:  # an empty cell: nothing bound yet
            continue
    used += [(f"default {i}", value) for i, value in enumerate(function.__defaults__ or ())]
    used += [(f"default {key}", value) for key, value in sorted((function.__kwdefaults__ or {}).items())]
    for name, value in used:
        parts.append(f"value {name} = {_value(value, parts, seen)}")


def _imported_modules(code: Any) -> set[str]:
    """The modules a code object (and the code inside it) imports: ``import x`` or ``from x import y``
    in a function body runs when the function does, after its key was made."""
    import dis

    names = {str(i.argval) for i in dis.get_instructions(code) if i.opname == "IMPORT_NAME" and i.argval}
    for constant in code.co_consts:
        if inspect.iscode(constant):
            names |= _imported_modules(constant)
    return names


def _imported_module_text(name: str) -> str:
    """What a module imported in a function body stands for: the files of its top-level package if it is
    the project's (read, not imported, and the same whether or not an earlier call imported it), else its
    library's version."""
    import importlib.util
    import sys

    top = name.split(".")[0]
    loaded = sys.modules.get(top)
    try:  # the top-level package only: finding a submodule would import its parent
        spec = loaded.__spec__ if loaded is not None else importlib.util.find_spec(top)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.origin or spec.origin in ("built-in", "frozen"):
        return f"{top}: not found ({'none' if spec is None else spec.origin})"
    origin = Path(spec.origin).resolve()
    if any(origin.is_relative_to(root) for root in _installation_roots()):
        return _version_of_top_level(top)
    if spec.submodule_search_locations:  # a package of the project: all of its files
        return project_sources_fingerprint(origin.parent)
    try:
        return _sha(origin.read_bytes())
    except OSError:
        return _unfingerprinted(origin, "unreadable")


def stable_value(value: Any) -> str | None:
    """A value's content as text, the same in every run that has the same content; None for an object
    that has none (its repr is a memory address and it has no attributes to compare)."""
    text = _value(value, [], set())
    return None if "unfingerprinted " in text else text


def _value(value: Any, parts: list[str], seen: set[int], depth: int = 0) -> str:
    """A value's fingerprint text, by content: primitives by repr; containers item by item; tensors and
    arrays by the SHA-256 of their bytes (a repr abbreviates them); project functions, classes and modules
    by their code (collected into ``parts``); library ones by ``name==version``; other objects by their
    class and their attributes (dataclass fields, ``vars``), or by a repr without a memory address. What
    has none of these is fingerprinted by identity, which never matches another run, so a result that
    depends on it is never served stale."""
    if isinstance(value, (type(None), bool, int, float, complex, str, bytes)):
        return repr(value)
    if depth >= 8:
        return _unfingerprinted(value, "(nested too deep)")
    if isinstance(value, functools.partial) or is_project_code(value):
        _collect(value, parts, seen)
        return f"code {getattr(value, '__qualname__', None) or getattr(value, '__name__', type(value).__name__)}"
    if inspect.isfunction(value) or inspect.isclass(value) or inspect.ismodule(value) or inspect.isbuiltin(value):
        name = value.__name__ if inspect.ismodule(value) else f"{value.__module__}.{value.__qualname__}"
        return f"library {name}: {_library_version(value)}"
    if isinstance(value, (tuple, list, set, frozenset)):
        items = [_value(item, parts, seen, depth + 1) for item in value]
        return f"{type(value).__name__}({', '.join(sorted(items) if isinstance(value, (set, frozenset)) else items)})"
    if isinstance(value, dict):
        entries = [
            f"{_value(k, parts, seen, depth + 1)}: {_value(v, parts, seen, depth + 1)}" for k, v in value.items()
        ]
        return f"{type(value).__name__}({', '.join(sorted(entries))})"
    cls = type(value)
    kind = f"{cls.__module__}.{cls.__qualname__}"
    if is_project_code(cls):
        _collect(cls, parts, seen)  # a method of the object's class is code the recipe calls
    contents = _array_contents(value)
    if contents is not None:
        return f"{kind} {contents}"
    if _is_torch_module(value):
        # A teacher model, a mask network: its structure (repr), its weights and every submodule's own
        # plain attributes (a threshold ``k`` a forward reads).
        own = {
            name: {key: item for key, item in vars(sub).items() if not key.startswith("_")}
            for name, sub in value.named_modules()
        }
        contents = _value({"weights": dict(value.state_dict()), "attributes": own}, parts, seen, depth + 1)
        return f"{kind} {value!r} {contents}"
    attributes = getattr(value, "__dict__", None)
    # The project's own objects (a dataclass's fields and anything set on it later) by their attributes;
    # a library's objects (a logger, a device) by a repr without a memory address, which is their
    # identity. A library object with an address in its repr keeps its state where this cannot see it
    # (random.Random): it never matches another run.
    if isinstance(attributes, dict) and (is_project_code(cls) or dataclasses.is_dataclass(value)):
        return f"{kind} {_value(dict(attributes), parts, seen, depth + 1)}"
    if dataclasses.is_dataclass(value):  # with slots: its fields are all it holds
        fields = {f.name: getattr(value, f.name, None) for f in dataclasses.fields(value)}
        return f"{kind} {_value(fields, parts, seen, depth + 1)}"
    text = repr(value)
    if " at 0x" not in text and " object at " not in text:
        return f"{kind} {text}"
    return _unfingerprinted(value, text)


def _is_torch_module(value: Any) -> bool:
    import sys

    torch = sys.modules.get("torch")
    return torch is not None and isinstance(value, torch.nn.Module)


def _array_contents(value: Any) -> str | None:
    """dtype, shape and the SHA-256 of the bytes of a torch tensor or a numpy array; None for anything
    else. A tensor whose bytes cannot be read (sparse, meta, quantized) never matches another run."""
    import sys

    torch = sys.modules.get("torch")
    if torch is not None and isinstance(value, torch.Tensor):
        try:
            tensor = value.detach().cpu().contiguous().reshape(-1)  # a 0-d tensor cannot be viewed as bytes
            data = tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b""
        except (RuntimeError, TypeError, ValueError, NotImplementedError):
            return _unfingerprinted(value, f"tensor of layout {value.layout}")
        return f"{value.dtype} {tuple(value.shape)} {_sha(data)}"
    numpy = sys.modules.get("numpy")
    if numpy is not None and isinstance(value, numpy.ndarray):
        if value.dtype == object:
            return _unfingerprinted(value, "array of objects")
        return f"{value.dtype} {value.shape} {_sha(numpy.ascontiguousarray(value).tobytes())}"
    return None


# Unique to this process: ids repeat between runs where address randomisation is off.
_PROCESS_TOKEN = secrets.token_hex(8)


def _unfingerprinted(value: Any, what: str) -> str:
    """The text of a value without a stable fingerprint: it never matches another process's."""
    return f"unfingerprinted {_PROCESS_TOKEN}-{id(value)} {what}"


def _library_version(value: Any) -> str:
    """``name==version`` of the installed distribution a function, class or module comes from (its code is
    not read: an upgrade changes the version); the Python version for the standard library."""
    module = value.__name__ if inspect.ismodule(value) else str(getattr(value, "__module__", ""))
    return _version_of_top_level(module.split(".")[0])


def _version_of_top_level(top: str) -> str:
    import sys

    if top in sys.stdlib_module_names or top == "builtins":
        return f"python {sys.version_info[:3]}"
    versions = sorted(f"{name}=={_distribution_version(name)}" for name in _packages_distributions().get(top, []))
    return ", ".join(versions) or f"{top} (no installed distribution)"


@functools.lru_cache(maxsize=1)
def _packages_distributions() -> Mapping[str, list[str]]:
    from importlib import metadata

    return metadata.packages_distributions()


def _distribution_version(name: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "unknown"


def _source(obj: Any) -> str:
    """Source text; without it (a builtin, code typed into a REPL), the compiled code; failing that, the
    object's identity, which never matches another run, so nothing stale is ever served."""
    try:
        return inspect.getsource(obj)
    except (OSError, TypeError):
        pass
    code = getattr(obj, "__code__", None)
    if code is not None:
        return repr((code.co_code, code.co_consts, code.co_names))
    return _unfingerprinted(obj, object.__repr__(obj))


def code_names(code: Any) -> set[str]:
    """The names a code object (and the functions, lambdas and comprehensions inside it) refers to: the
    globals it reads, attribute names, and the modules it imports (``co_names``)."""
    names = set(code.co_names)
    for constant in code.co_consts:
        if inspect.iscode(constant):
            names |= code_names(constant)
    return names


def _environment_names(code: Any) -> set[str]:
    """Upper-case string constants in a code object: the names of environment variables it may read
    (``os.environ.get("RECIPE_VARIANT")``), whose values then go into the key."""
    names = {c for c in code.co_consts if isinstance(c, str) and ENVIRONMENT_NAME.fullmatch(c)}
    for constant in code.co_consts:
        if inspect.iscode(constant):
            names |= _environment_names(constant)
    return names


def is_project_code(value: Any) -> bool:
    """A function, class or module of the project under test: defined in a file outside the Python
    installation and its site-packages, and not part of pytest-advprune."""
    if not (inspect.isfunction(value) or inspect.isclass(value) or inspect.ismodule(value)):
        return False
    name = value.__name__ if inspect.ismodule(value) else str(getattr(value, "__module__", ""))
    if name.split(".")[0] == "pytest_advprune":
        return False
    try:
        file = inspect.getsourcefile(value)
    except TypeError:  # a builtin module or class
        return False
    if not file:
        return False
    path = Path(file).resolve()
    return not any(path.is_relative_to(root) for root in _installation_roots())


@functools.lru_cache(maxsize=1)
def _installation_roots() -> tuple[Path, ...]:
    import site
    import sys
    import sysconfig

    roots = {sys.prefix, sys.base_prefix, sys.exec_prefix, *site.getsitepackages(), site.getusersitepackages()}
    roots |= {value for key, value in sysconfig.get_paths().items() if key in ("stdlib", "platstdlib", "purelib")}
    return tuple(Path(root).resolve() for root in roots if root)


def module_state_fingerprint(module: Any) -> str:
    """What a model computes with besides its state dict: every buffer (non-persistent ones too) and each
    submodule's plain attributes and tensor attributes (a ``shift`` its forward reads), by content."""
    import torch

    state = {
        name: {
            key: value
            for key, value in vars(sub).items()
            if not key.startswith("_")
            and (isinstance(value, (bool, int, float, str, type(None), torch.Tensor)) or type(value) in (tuple, list))
        }
        for name, sub in module.named_modules()
    }
    buffers = dict(module.named_buffers())
    return _sha(_value({"buffers": buffers, "attributes": state}, [], set()))


def module_classes_fingerprint(module: Any) -> str:
    """The source of every class in ``module`` (its submodules included) that does not come from torch or
    torchvision: a changed ``forward`` changes what a model computes without changing its weights. Their
    own classes are covered by their versions in the key (``library_versions``)."""
    classes = {type(sub) for sub in module.modules()}
    own = sorted(
        (cls for cls in classes if cls.__module__.split(".")[0] not in ("torch", "torchvision")),
        key=lambda cls: f"{cls.__module__}.{cls.__qualname__}",
    )
    return _sha("\n".join(f"{cls.__module__}.{cls.__qualname__}:{code_fingerprint(cls)}" for cls in own))


# Libraries whose code computes the built-in prunings and attacks, and data transforms: their versions
# go into every key (an upgrade in place must not serve the old results). torchattacks is an extra: it
# stays listed because a project's factory that imports it inside its body shows no version of its own
# (only module globals do); where it is not installed its version reads "unknown".
LIBRARIES = ("torch", "torchvision", "torchattacks", "torch-pruning", "numpy", "scikit-learn")


@functools.lru_cache(maxsize=1)
def library_versions() -> dict[str, str]:
    return {name: _distribution_version(name) for name in LIBRARIES}
