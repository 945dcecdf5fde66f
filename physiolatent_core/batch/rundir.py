"""The run directory ``OUT_ROOT/.physiolatent/`` (:class:`RunDir`) and the content hash
that keys each clip's record (:func:`clip_key`)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

from ..errors import InputError
from .layouts import DatasetClip

RUN_DIR = ".physiolatent"  # hidden: the datasets' loaders (ours, rPPG-Toolbox's) glob past it
_HASH_BLOCK = 1 << 22


class RunDir:
    """``OUT_ROOT/.physiolatent/``: the manifest of finished clips and the reports.

    ``manifest.jsonl`` gets one line per finished clip, appended and flushed to disk as
    each clip finishes, so a killed run keeps every clip it finished; the last line of a
    clip wins."""

    def __init__(self, out_root: Path):
        self.path = out_root / RUN_DIR
        self.manifest = self.path / "manifest.jsonl"
        self.reports = self.path / "reports"
        self.staging = self.path / "staging"

    def open(self) -> dict[str, dict]:
        """Create (or reopen) the run, locked to this process; returns the last record of each clip."""
        self.reports.mkdir(parents=True, exist_ok=True)
        self._lock = open(self.path / "lock", "w")
        try:
            import fcntl

            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released by the OS however the run ends
        except ImportError:  # Windows: unlocked
            pass
        except OSError:
            self._lock.close()
            raise InputError(f"another batch run is writing {self.path.parent}: wait for it, or choose another "
                             "output root.") from None
        shutil.rmtree(self.staging, ignore_errors=True)  # work of clips in flight when a run was killed
        records: dict[str, dict] = {}
        if self.manifest.exists():
            for line in self.manifest.read_text(encoding="utf-8").splitlines():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:  # a line cut by a kill: that clip is redone
                    continue
                records[f"{record.get('kind')}:{record['clip']}"] = record
        return records

    def close(self) -> None:
        """Release the run (its lock)."""
        if getattr(self, "_lock", None) is not None:
            self._lock.close()
            self._lock = None

    def append(self, record: dict) -> None:
        from ..verify import jsonable

        with open(self.manifest, "a", encoding="utf-8") as f:
            f.write(json.dumps(jsonable(record), allow_nan=False) + "\n")
            f.flush()
            os.fsync(f.fileno())


def _file_hash(path: Path, cache: dict) -> str:
    """sha256 of a file, cached by (size, mtime) so a rerun does not read the dataset again."""
    stat = path.stat()
    stamp = f"{stat.st_size}:{stat.st_mtime_ns}"
    hit = cache.get(str(path))
    if hit and hit[0] == stamp:
        return hit[1]
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(_HASH_BLOCK):
            digest.update(block)
    cache[str(path)] = (stamp, digest.hexdigest())
    return cache[str(path)][1]


def clip_key(clip: DatasetClip, settings: dict, cache: dict) -> str:
    """Content hash of the clip's input files and the settings its output depends on."""
    digest = hashlib.sha256()
    for name in clip.files:
        digest.update(_file_hash(Path(name), cache).encode())
    digest.update(json.dumps(settings, sort_keys=True, default=str).encode())
    return digest.hexdigest()[:32]
