"""The files a command writes: where they may go, and what a failed write says.

Every command that writes calls `check_output` on its output path before any work starts, so an
unwritable or impossible location (a path under a file, a read-only or virtual file system) is one
line at once rather than a traceback after an hour of training. `save_guard` wraps the writes
themselves: a full disk or a vanished directory becomes one line naming the file and what was
kept, and the caller's own cleanup (temporary files, staging directories) still runs.
"""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from albert.errors import AlbertError


def _existing_ancestor(path: Path, flag: str) -> Path:
    """The nearest existing directory above `path`; an existing file on the way is an error."""
    for parent in path.absolute().parents:
        if parent.is_dir():
            return parent
        if parent.exists():
            raise AlbertError(
                f"{flag} {path}: {parent} is a file, not a directory; choose an {flag} outside it"
            )
    raise AlbertError(f"{flag} {path}: no existing directory above it; choose another {flag}")


def check_output(path: str | os.PathLike, *, directory: bool, flag: str = "--output") -> Path:
    """Refuse an output location that cannot be written, before anything is computed.

    `directory`: the command writes a directory at `path` (else a file, which may not be a
    directory). Writability is tested by creating and removing a probe file in the nearest
    existing directory, which also catches read-only and virtual file systems (e.g. /proc),
    where permission bits say nothing (or the user is root)."""
    target = Path(path).expanduser()
    if not str(path).strip():
        raise AlbertError(f"{flag} is empty; pass a path")
    if directory and target.exists() and not target.is_dir():
        raise AlbertError(
            f"{flag} {target} is a file; pass a directory path (a new one, or its own earlier output)"
        )
    if not directory and target.is_dir():
        raise AlbertError(f"{flag} {target} is a directory; pass a file path")
    where = target if directory and target.is_dir() else _existing_ancestor(target, flag)
    try:
        fd, probe = tempfile.mkstemp(dir=where, prefix=".albert-write-check-")
    except OSError as e:
        raise AlbertError(
            f"cannot write to {where} ({e.strerror or e}); choose an {flag} in a writable directory"
        ) from None
    os.close(fd)
    os.unlink(probe)
    return target


@contextmanager
def save_guard(target: str | os.PathLike, kept: str = "") -> Iterator[None]:
    """Turn an OSError while writing `target` (a full disk, above all) into one AlbertError naming
    the file and `kept` (what is still intact, e.g. "the previous checkpoint in DIR is intact")."""
    try:
        yield
    except OSError as e:
        target = e.filename or target  # the exact file, where the OS says which
        reason = "the disk is full" if e.errno in (errno.ENOSPC, errno.EDQUOT) else (e.strerror or str(e))
        advice = (
            "free some space and run again" if e.errno in (errno.ENOSPC, errno.EDQUOT) else "check the path"
        )
        tail = f"; {kept}" if kept else ""
        raise AlbertError(f"could not write {target} ({reason}){tail}; {advice}") from None
