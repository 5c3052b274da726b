"""Where relative paths of a project point: the rootdir of the pytest run, not the working directory.

A model repository's ``conftest.py`` says ``load_model(Net(), "checkpoints/net.pt")`` meaning the file in
the repository, whether pytest was started from the repository root, from ``tests/`` or by an IDE. The
plugin records the rootdir when pytest configures; outside a pytest run, paths resolve against the
working directory.
"""

from __future__ import annotations

import os
import time
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


STRAY_TEMP_SECONDS = 600.0  # a write takes milliseconds: a temp file this old belongs to no live writer


def written_by_live_process(temp: Path, pid_text: str) -> bool:
    """Whether the temp file ``temp``, named with its writer's pid ``pid_text``, may still be renamed into
    place by a running writer, so that deleting it would make that write fail."""
    try:
        age = time.time() - temp.stat().st_mtime
    except FileNotFoundError:
        return True  # its writer already renamed it
    if not pid_text.isdigit() or age > STRAY_TEMP_SECONDS:
        return False  # not named by a writer of this plugin, or far too old (also a writer on another host)
    pid = int(pid_text)
    if pid == os.getpid() or os.name == "nt":  # this process writes one file at a time; Windows: age only
        return pid != os.getpid()
    try:
        os.kill(pid, 0)  # signal 0 only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, under another user
    return True
