"""Where relative paths of a project point: the rootdir of the pytest run, not the working directory.

A model repository's ``conftest.py`` says ``load_model(Net(), "checkpoints/net.pt")`` meaning the file in
the repository, whether pytest was started from the repository root, from ``tests/`` or by an IDE. The
plugin records the rootdir when pytest configures; outside a pytest run, paths resolve against the
working directory.
"""

from __future__ import annotations

import os
from pathlib import Path

PathLike = str | os.PathLike[str]

_rootdir: Path | None = None


def set_rootdir(path: Path | None) -> None:
    """Called by the plugin at configure time (and with ``None`` at unconfigure)."""
    global _rootdir
    _rootdir = None if path is None else Path(path).resolve()


def rootdir() -> Path:
    """The rootdir of the running pytest session, or the working directory outside one."""
    return _rootdir if _rootdir is not None else Path.cwd()


def resolve(path: PathLike) -> Path:
    """``path`` made absolute: unchanged when it already is, else relative to :func:`rootdir`."""
    path = Path(path).expanduser()
    return path if path.is_absolute() else rootdir() / path


def describe(path: PathLike) -> str:
    """How to show a user-given path in an error: as given, plus where it was looked for when relative."""
    given = os.fspath(path)
    resolved = resolve(path)
    if Path(path).expanduser().is_absolute():
        return repr(given)
    return f"{given!r} (looked for {resolved}; relative paths resolve against the rootdir {rootdir()})"
