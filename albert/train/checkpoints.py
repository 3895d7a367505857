"""Atomic checkpoint directories: written under a temporary name, fsynced, marked `COMPLETE`
last and renamed into place, so a crash (even `kill -9` mid-save) never leaves a directory
that looks finished but is not."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from albert.errors import AlbertError

logger = logging.getLogger("albert")

COMPLETE_MARKER = "COMPLETE"
_STEP_DIR = re.compile(r"^step-(\d+)$")


def _fsync_path(path: Path) -> None:
    """Flush a file (or a directory entry list) to disk; best effort on filesystems that refuse."""
    flags = os.O_RDONLY | (os.O_DIRECTORY if path.is_dir() and hasattr(os, "O_DIRECTORY") else 0)
    try:
        fd = os.open(path, flags)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _remove_tree(path: Path) -> None:
    """Rename away first, then delete: a half-deleted directory never keeps its real name."""
    doomed = path.with_name(f".tmp-delete-{path.name}-{uuid.uuid4().hex[:8]}")
    os.rename(path, doomed)
    shutil.rmtree(doomed, ignore_errors=True)


@dataclass
class CheckpointInfo:
    step: int
    path: Path


class CheckpointDirectory:
    """`ROOT/step-N/` directories, each complete or absent.

    `save(step, write)` calls `write(tmp_dir)`, fsyncs what it wrote, records every file and its
    size in `COMPLETE` (written last), then renames `.tmp-step-N-<random>` to `step-N`.
    A directory counts as a checkpoint only when `COMPLETE` exists and the files it lists have
    the recorded sizes; anything else is reported and ignored."""

    def __init__(self, root: str | os.PathLike, keep: int | None = None) -> None:
        self.root = Path(root)
        if keep is not None and keep < 1:
            raise AlbertError(f"--keep must be at least 1 (got {keep})")
        self.keep = keep

    def save(self, step: int, write: Callable[[Path], None], extra: dict[str, Any] | None = None) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / f".tmp-step-{step}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        try:
            write(tmp)
            files = {}
            for file in sorted(p for p in tmp.rglob("*") if p.is_file()):
                _fsync_path(file)
                files[file.relative_to(tmp).as_posix()] = file.stat().st_size
            marker = {"step": step, "time": time.time(), "files": files, **(extra or {})}
            (tmp / COMPLETE_MARKER).write_text(json.dumps(marker, indent=1) + "\n", encoding="utf-8")
            _fsync_path(tmp / COMPLETE_MARKER)
            _fsync_path(tmp)
            final = self.root / f"step-{step}"
            if final.exists():
                _remove_tree(final)  # an older save of the same step (e.g. an incomplete one)
            os.rename(tmp, final)
            _fsync_path(self.root)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        self.prune()
        return final

    @staticmethod
    def problem(path: Path) -> str | None:
        """Why `path` is not a complete checkpoint, or None if it is."""
        marker = path / COMPLETE_MARKER
        if not marker.is_file():
            return f"no {COMPLETE_MARKER} marker (interrupted while saving?)"
        try:
            files = json.loads(marker.read_text(encoding="utf-8"))["files"]
        except (json.JSONDecodeError, KeyError, UnicodeDecodeError, TypeError):
            return f"unreadable {COMPLETE_MARKER} marker"
        for name, size in files.items():
            file = path / name
            if not file.is_file():
                return f"{name} is missing"
            if file.stat().st_size != size:
                return f"{name} has {file.stat().st_size} bytes, expected {size} (truncated?)"
        return None

    def scan(self) -> tuple[list[CheckpointInfo], list[tuple[Path, str]]]:
        """(complete checkpoints oldest first, [(incomplete path, why)])."""
        complete, incomplete = [], []
        if not self.root.is_dir():
            return [], []
        for path in self.root.iterdir():
            if path.name.startswith(".tmp-"):
                incomplete.append((path, "temporary directory left by an interrupted save"))
                continue
            match = _STEP_DIR.match(path.name)
            if not match or not path.is_dir():
                continue
            why = self.problem(path)
            if why is None:
                complete.append(CheckpointInfo(int(match.group(1)), path))
            else:
                incomplete.append((path, why))
        return sorted(complete, key=lambda c: c.step), sorted(incomplete)

    def latest(self, report: Callable[[str], None] | None = None) -> CheckpointInfo | None:
        complete, incomplete = self.scan()
        for path, why in incomplete:
            (report or logger.warning)(f"ignoring incomplete checkpoint {path}: {why}")
        return complete[-1] if complete else None

    def prune(self) -> None:
        if self.keep is None:
            return
        complete, _ = self.scan()
        for old in complete[: -self.keep]:
            _remove_tree(old.path)

    def remove_leftovers(self) -> list[Path]:
        """Delete temporary directories of interrupted saves (call when no save is running)."""
        removed = []
        if self.root.is_dir():
            for path in self.root.iterdir():
                if path.name.startswith(".tmp-") and path.is_dir():
                    shutil.rmtree(path, ignore_errors=True)
                    removed.append(path)
        return removed
