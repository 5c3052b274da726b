"""Where relative paths of a project point: the rootdir of the pytest run, not the working directory.

A model repository's ``conftest.py`` says ``load_model(Net(), "checkpoints/net.pt")`` meaning the file in
the repository, whether pytest was started from the repository root, from ``tests/`` or by an IDE. The
plugin records the rootdir when pytest configures; outside a pytest run, paths resolve against the
working directory.
"""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path
from typing import BinaryIO

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


class NotARegularFile(OSError):
    """A link, folder, FIFO or device where a regular file belongs; ``what`` says which, for messages."""

    def __init__(self, path: Path, what: str) -> None:
        super().__init__(0, what, str(path))
        self.what = what


def open_regular_file(path: Path, *, follow_links: bool = False) -> tuple[BinaryIO, int]:
    """``path`` open for reading, and its size, if it is a regular file. A link is not followed (unless
    ``follow_links``) and a FIFO is not waited on: it is opened without blocking, then refused, as are
    folders and devices (``/dev/zero`` would never end). ``FileNotFoundError`` passes through."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | (0 if follow_links else getattr(os, "O_NOFOLLOW", 0))
    try:
        descriptor = os.open(path, flags)
    except FileNotFoundError:
        raise
    except OSError:
        if not follow_links and path.is_symlink():
            raise NotARegularFile(path, "a symbolic link") from None
        raise
    mode = os.fstat(descriptor).st_mode
    if not stat.S_ISREG(mode):  # checked before fdopen, which refuses a folder with an error of its own
        os.close(descriptor)
        raise NotARegularFile(path, "a folder" if stat.S_ISDIR(mode) else "a FIFO or device")
    file = os.fdopen(descriptor, "rb")
    return file, os.fstat(descriptor).st_size
