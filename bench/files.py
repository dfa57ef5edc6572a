"""How the harness writes files: atomically, with the permissions the user's umask gives, into
folders checked before any work.

* :func:`atomic_write`: every file of the store, the reference cache, the leaderboard and the perf
  table is written to a temporary name beside its place, then renamed into it, so a reader never
  sees a partial file and an interruption leaves nothing behind. The temporary file is created
  like :func:`open` creates one (mode ``0666 & ~umask``), not 0600 as :func:`tempfile.mkstemp`
  does: a cache or results folder shared between users (the README's Ray cache) stays readable.
* :data:`USER_RESULTS` and :data:`USER_LEADERBOARD`: where every command reads and writes by
  default, the user's own store under ``runs/`` (ignored by git). A checkout's published
  ``results/`` and ``leaderboard/`` are touched only when named (``--results results --out
  leaderboard``), so a newcomer's first ``bench run`` computes the suite instead of finding it
  all published, and a user's runs never mix with the published ones.
* :func:`check_writable_folder`: ``--results``, ``--cache`` and ``--out`` are checked before
  anything is trained, so a file given as a folder or a read-only folder is an error at once,
  not after the run was computed.

The lowest layer of the package: it imports nothing of ``bench`` (and nothing heavy: the CLI
reads its defaults from here).
"""
from __future__ import annotations

import os
import tempfile
import uuid
from pathlib import Path
from typing import Callable

USER_RESULTS = "runs/results"
USER_LEADERBOARD = "runs/leaderboard"
#: The mode of a new file before the umask applies (what :func:`open` uses).
NEW_FILE_MODE = 0o666


def atomic_write(path: str | Path, write: Callable[[str], None]) -> Path:
    """Create ``path`` (and its folder) through ``write(tmp)``, which fills the temporary file
    ``tmp`` beside it; then rename it into place. Raises what ``write`` or the rename raise, with
    ``path`` untouched and the temporary file removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex}.tmp"
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, NEW_FILE_MODE))  # the umask applies
    try:
        write(str(tmp))
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    """:func:`atomic_write` of UTF-8 ``text`` with ``\\n`` line endings on every platform."""

    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)

    return atomic_write(path, write)


def check_writable_folder(path: str | Path, option: str) -> None:
    """Raise ValueError (saying what to do) unless ``path`` is a folder this process can create
    files in, or can be created as one: its nearest existing ancestor must be a writable folder.
    Writability is tried (a temporary file created and removed), not inferred from mode bits,
    so a read-only mount, an ACL or root's rights are all judged right. Nothing is created."""
    path = Path(path)
    existing = next((p for p in (path, *path.parents) if p.exists()), Path("."))
    if not existing.is_dir():
        what = f"{option} {path}" if existing == path else f"{option} {path}: {existing}"
        raise ValueError(f"{what} is a file, not a folder; pass a folder for {option}")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as err:
        where = "" if existing == path else f" (it would be created in {existing})"
        raise ValueError(f"{option} {path}{where} is not writable ({err.strerror}); pass a folder you can "
                         f"write to for {option}") from err
