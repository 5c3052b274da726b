"""The secret that authenticates cache entries, kept outside the cache.

Every entry carries an HMAC-SHA256 of its key and payload under this secret, and a read accepts only
entries whose HMAC checks out. So whoever can write the cache folder but does not hold the secret (a
restored CI cache, a shared folder, a pull request's files) can make a run recompute (by deleting or
damaging entries), and nothing else: a forged or swapped entry is rejected like a corrupt one. Whoever
holds the secret can make cached numbers lie; reading an entry never runs code either way (see
``payloads.py``).

The secret is the environment variable ``ADVPRUNE_CACHE_KEY`` when it is set (CI: a repository secret,
so that jobs on fresh machines can read what earlier jobs wrote), else a random key in the user's
configuration folder, made on first use and readable by that user only.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

from pytest_advprune.errors import AdvPruneError
from pytest_advprune.paths import NotARegularFile, open_regular_file

ENVIRONMENT_VARIABLE = "ADVPRUNE_CACHE_KEY"
KEY_BYTES = 32
MIN_SECRET_CHARACTERS = 16  # a shorter secret can be guessed: every entry could then be forged


class CacheKeyError(AdvPruneError):
    """The key file cannot be read or made: the cache is off for the run."""


def key_file() -> Path:
    """``$XDG_CONFIG_HOME/pytest-advprune/cache-key``, by default under ``~/.config``."""
    config_home = os.environ.get("XDG_CONFIG_HOME")
    if not config_home:
        try:
            config_home = str(Path.home() / ".config")
        except RuntimeError:  # no HOME and a user without a home folder (a bare container)
            raise CacheKeyError(
                f"there is no home folder for its key file. Set {ENVIRONMENT_VARIABLE} to a secret of your own, "
                "or XDG_CONFIG_HOME to a folder for the key file"
            ) from None
    return Path(config_home) / "pytest-advprune" / "cache-key"


def secret_from_environment() -> bytes | None:
    value = os.environ.get(ENVIRONMENT_VARIABLE, "")
    if value and len(value.strip()) < MIN_SECRET_CHARACTERS:
        raise CacheKeyError(
            f"{ENVIRONMENT_VARIABLE} holds {len(value.strip())} characters, too few to keep entries from being "
            f"forged. Use at least {MIN_SECRET_CHARACTERS}, e.g. the output of "
            "python -c 'import secrets; print(secrets.token_hex(32))'"
        )
    return value.strip().encode() if value else None


def cache_secret() -> bytes:
    """The secret: ``ADVPRUNE_CACHE_KEY``, or the key file's contents (made if missing)."""
    return secret_from_environment() or _read_or_make_key_file(key_file())


def _read_or_make_key_file(path: Path) -> bytes:
    try:
        return _read_key(path)
    except FileNotFoundError:
        pass
    except OSError as error:
        raise CacheKeyError(
            f"its key file {path} cannot be read ({error.strerror or error}). Make it readable, or set "
            f"{ENVIRONMENT_VARIABLE} to a secret of your own"
        ) from None
    # Two processes (xdist workers, two runs) may make it at once: each writes a whole key to a file of
    # its own and links it into place; the link fails for all but the first, and every process then reads
    # the one that won.
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as file:
            file.write(secrets.token_hex(KEY_BYTES).encode())
        try:
            os.link(temporary, path)
        except FileExistsError:
            pass  # another process made it first: use that one
        except OSError:  # a file system without hard links: rename, unless a simultaneous maker won
            if not path.exists():
                os.replace(temporary, path)
        return _read_key(path)
    except OSError as error:
        raise CacheKeyError(
            f"its key file {path} cannot be made or read ({error.strerror or error}). Make its folder writable, "
            f"or set {ENVIRONMENT_VARIABLE} to a secret of your own"
        ) from None
    finally:
        with contextlib.suppress(OSError):
            temporary.unlink()


def _read_key(path: Path) -> bytes:
    # Without blocking, and only from a regular file: a FIFO would hang the run, /dev/zero give a key
    # anyone can guess.
    try:
        file, _ = open_regular_file(path, follow_links=True)  # a linked dotfile is fine
    except NotARegularFile as error:
        raise CacheKeyError(
            f"its key file {path} is {error.what}. Delete it: a new one is made on the next run"
        ) from None
    with file:
        key = file.read(1024).strip()
    if len(key) < KEY_BYTES:  # an empty or truncated file would make every entry easy to forge
        raise CacheKeyError(f"its key file {path} holds no usable key. Delete it: a new one is made on the next run")
    return key
