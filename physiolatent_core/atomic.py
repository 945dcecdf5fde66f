"""Atomic writes: a file or folder appears at its path whole, or not at all.

Everything the library saves (videos, folders of frames, figures, reports, adapter
files) is written to a temporary path beside the target, in the same folder so the
rename cannot cross file systems, and renamed into place once complete::

    with atomic_path(out, overwrite=False) as tmp:   # tmp: ".name.partial-1a2b3c4d.ext"
        fig.savefig(tmp)                                # renamed to ``out`` on success
    write_json(report_path, report)                     # the same, for one JSON document

The temporary name keeps the target's extension, since writers such as FFmpeg choose the
format from it. On an exception the temporary file or folder is removed and the target
is left as it was. The result gets the permissions the umask gives a new file or folder,
whatever made the temporary one (``tempfile.mkstemp`` makes files private).
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .errors import InputError


class AtomicPath:
    """A temporary path ``tmp`` beside ``target`` that ``commit`` renames onto it.

    For writers that cannot live inside one ``with`` block (a video writer opens in one
    call and closes in another); :func:`atomic_path` wraps it for those that can. Nothing
    is created: the caller writes a file or makes a folder at ``tmp``. Replacing an
    existing folder swaps the two folders first, then deletes the old one.
    """

    def __init__(self, target, *, overwrite: bool = True):
        self.target = Path(target)
        self.overwrite = overwrite
        if self.target.exists() and not overwrite:
            raise InputError(f"{self.target} already exists: pass --overwrite (overwrite=True) or choose another path.")
        name, suffix = self.target.name, self.target.suffix
        self.tmp = self.target.parent / f".{name}.partial-{uuid.uuid4().hex[:8]}{suffix}"

    def commit(self) -> Path:
        """Move ``tmp`` onto ``target``, with ordinary permissions; returns ``target``.

        On any failure ``tmp`` is removed and the error raised (``InputError`` when
        ``target`` appeared meanwhile and ``overwrite`` is False).
        """
        try:
            if self.target.exists() and not self.overwrite:
                raise InputError(f"{self.target} appeared while writing: pass --overwrite or choose another path.")
            _ordinary_permissions(self.tmp)
            if self.tmp.is_dir() and self.target.is_dir():  # a rename cannot replace a folder
                old = self.target.parent / f".{self.target.name}.old-{uuid.uuid4().hex[:8]}"
                os.replace(self.target, old)
                os.replace(self.tmp, self.target)
                shutil.rmtree(old)
            else:
                os.replace(self.tmp, self.target)
        except BaseException:
            self.discard()
            raise
        return self.target

    def discard(self) -> None:
        """Remove ``tmp`` (file or folder) if it exists; the target is not touched."""
        if self.tmp.is_dir():
            shutil.rmtree(self.tmp, ignore_errors=True)
        elif self.tmp.exists() or self.tmp.is_symlink():
            self.tmp.unlink()


@contextmanager
def atomic_path(path, *, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on a clean exit it is renamed to ``path``.

    Write a file (or make a folder) at the yielded path inside the block. An exception
    removes it and leaves ``path`` as it was. ``overwrite=False`` refuses an existing
    ``path`` (``InputError``), on entry and again before the rename.
    """
    pending = AtomicPath(path, overwrite=overwrite)
    try:
        yield pending.tmp
    except BaseException:
        pending.discard()
        raise
    pending.commit()


def write_json(path, data, *, overwrite: bool = True) -> str:
    """Write ``data`` as JSON (indent 2, no NaN or infinity, a final newline) atomically;
    returns the path written."""
    with atomic_path(path, overwrite=overwrite) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2, allow_nan=False)
            f.write("\n")
    return str(path)


def _umask() -> int:
    """The process umask, read without changing it where the OS allows (os.umask sets it,
    briefly, for every thread)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _ordinary_permissions(path: Path) -> None:
    """Give ``path`` the mode a new file or folder gets from the umask."""
    os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~_umask())
