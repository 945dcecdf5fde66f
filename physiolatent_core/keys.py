"""Restore keys: what an edit or removal changed, compressed and encrypted, so the original comes back.

``remove IN -o OUT --key-out KEY.json`` (and ``edit``) writes a key that holds, chunk by
chunk, the difference between the input's decoded frames and the output file's decoded
frames (8-bit codes, ``original - output``): for a lossless output exactly what the edit
changed, for H.264 also what the codec changed, so the original's codes come back
exactly from either. Each chunk is compressed (zlib) and encrypted with AES-256-GCM
(``cryptography``; a fresh random key per file, a random 96-bit nonce per chunk). The
associated data of every chunk binds it to the key's header and to the SHA-256 of the
output's decoded frames in that chunk, so a key opens only the file it was made for:
a re-encoded, edited, trimmed or otherwise changed file, a changed key, or a key of
another file is refused before anything is written. A sealed trailer (frame and chunk
counts, the hash of the whole output, and, encrypted, the hash of the original frames)
catches truncated keys and proves the restored frames equal the original's.

Where the input is a video file smaller than those differences (an H.264 input: its
codec's change is in the differences of an H.264 output, 30-90x the input's size), the
key holds the input file's own bytes instead (``"payload": "source"``), encrypted in
pieces and bound to the hash of the output's decoded frames; restoring decodes them,
which gives the input's frames exactly, and checks them against the sealed hash.

The key file holds the AES key beside the ciphertext: whoever has it can restore the
original pulse, so it is as sensitive as the original video. It is JSON, written one
chunk per line so that writing and restoring stream in bounded memory::

    {"format": "physiolatent-key", "version": 1, "header": {...}, "chunks": [
    ["<sha256 of the output chunk>", "<base64 nonce + ciphertext>"],
    ...
    ], "trailer": {...}, "seal": "<base64 nonce + ciphertext>"}
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import os
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from .atomic import AtomicPath
from .errors import InputError

FORMAT = "physiolatent-key"
VERSION = 1
CIPHER = "AES-256-GCM"
NONCE_BYTES = 12  # 96 bits, GCM's native nonce size
SOURCE_PIECE = 4 << 20  # bytes of the input file per encrypted piece of a "source" key
# zlib level 1: the differences are mostly zeros and small values, where higher levels
# gained little and cost several times the time (docs/BENCHMARKS.md, restore keys).
ZLIB_LEVEL = 1
# Frames per key chunk: about 8 Mpixel, as the pipeline's chunks.
CHUNK_PIXELS = 8_000_000
_HEAD = '{"format": "%s", "version": %d, "header": ' % (FORMAT, VERSION)
_AD_PREFIX = b"physiolatent-key/1"


def chunk_frames_for(width: int, height: int) -> int:
    """Frames per key chunk for frames of this size (4..64)."""
    return int(np.clip(CHUNK_PIXELS // max(width * height, 1), 4, 64))


def _canonical(data: dict) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


def _aead(key: bytes):
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    return AESGCM(key)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str, what: str, path) -> bytes:
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (ValueError, UnicodeEncodeError, AttributeError):
        raise InputError(f"{path} is damaged: its {what} is not base64. Use the key file as it was written.") from None


def _chunk_ad(header_digest: bytes, index: int, output_digest: bytes) -> bytes:
    return _AD_PREFIX + header_digest + index.to_bytes(8, "big") + output_digest


# Difference types by their tag byte: the smallest that holds a chunk's differences is
# used (int8 nearly always for 8-bit video; deeper outputs need more).
_DIFF_TYPES = {b"\x01": np.dtype("i1"), b"\x02": np.dtype("<i2"), b"\x04": np.dtype("<i4")}


def _codes(frames: np.ndarray, what: str, dtypes=(np.uint8, np.uint16)) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.dtype not in dtypes or frames.ndim != 4 or frames.shape[-1] != 3:
        raise InputError(f"{what} must be RGB codes [t, H, W, 3] of {'/'.join(np.dtype(d).name for d in dtypes)}; "
                         f"got {frames.dtype} {frames.shape}.")
    return np.ascontiguousarray(frames)


def _wide(codes: np.ndarray):
    """A signed type for differences to ``codes``: int16 for 8-bit (half the memory of int32)."""
    return np.int16 if codes.dtype == np.uint8 else np.int32


def _pack(diff: np.ndarray) -> bytes:
    """Integer differences -> one type tag byte + zlib of the smallest integer type that holds them."""
    low, high = diff.min(initial=0), diff.max(initial=0)
    for tag, dtype in _DIFF_TYPES.items():
        if np.iinfo(dtype).min <= low and high <= np.iinfo(dtype).max:
            return tag + zlib.compress(diff.astype(dtype).tobytes(), ZLIB_LEVEL)
    raise AssertionError("differences of 16-bit codes fit int32")


def _unpack(blob: bytes, shape: tuple, path) -> np.ndarray:
    kind, body = blob[:1], blob[1:]
    dtype = _DIFF_TYPES.get(kind)
    try:
        raw = zlib.decompress(body) if dtype is not None else b""
    except zlib.error:
        raw = b""
    if dtype is None or len(raw) != math.prod(shape) * np.dtype(dtype).itemsize:
        raise InputError(f"{path} is damaged: a chunk does not decompress to its frames.")
    return np.frombuffer(raw, dtype).reshape(shape)


# --------------------------------------------------------------------------- writing


class KeyWriter:
    """Write a key chunk by chunk: ``add(original, output)`` with 8-bit codes [t, H, W, 3]
    of the same frames (the output as its file decodes), then ``close()``. Atomic: the file
    appears only when closed; use as a context manager (an exception discards it).

    ``meta``: what the key describes (mode, file names, fps ...), stored in its header.
    """

    def __init__(self, path, *, width: int, height: int, chunk_frames: int, meta: dict | None = None,
                 overwrite: bool = False):
        self.path = Path(path).expanduser()
        self.width, self.height, self.chunk_frames = int(width), int(height), int(chunk_frames)
        self._key = os.urandom(32)
        self._aes = _aead(self._key)
        self.header = {"cipher": CIPHER, "compression": f"zlib level {ZLIB_LEVEL}", "key": _b64(self._key),
                       "difference": "original - output, RGB codes as decoded, int8/16/32 per chunk",
                       "original_dtype": "uint8",
                       "width": self.width, "height": self.height, "chunk_frames": self.chunk_frames,
                       **(meta or {})}
        self._digest = hashlib.sha256(_canonical(self.header)).digest()
        self._out = AtomicPath(self.path, overwrite=overwrite)
        self._file = open(self._out.tmp, "w", encoding="ascii")
        self._file.write(_HEAD + json.dumps(self.header, allow_nan=False) + ', "chunks": [\n')
        self._output_hash, self._original_hash = hashlib.sha256(), hashlib.sha256()
        self.frames = self.chunks = self.bytes_in = 0

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
        else:
            self.discard()

    def add(self, original: np.ndarray, output: np.ndarray) -> None:
        original, output = _codes(original, "original", (np.uint8,)), _codes(output, "output")
        if original.shape != output.shape or original.shape[1:3] != (self.height, self.width):
            raise InputError(f"the original chunk {original.shape} and the output chunk {output.shape} must both be "
                             f"[t, {self.height}, {self.width}, 3].")
        if len(output) != self.chunk_frames and self._short_seen:
            raise InputError("only the last chunk of a key may be shorter than chunk_frames.")
        self._short_seen = len(output) != self.chunk_frames
        output_digest = hashlib.sha256(output).digest()
        self._output_hash.update(output_digest)
        self._original_hash.update(original)
        diff = original.astype(_wide(output)) - output
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._aes.encrypt(nonce, _pack(diff), _chunk_ad(self._digest, self.chunks, output_digest))
        self._file.write(("" if self.chunks == 0 else ",\n") + json.dumps([output_digest.hex(), _b64(nonce + sealed)]))
        self.frames += len(output)
        self.chunks += 1
        self.bytes_in += len(sealed)

    _short_seen = False

    @property
    def bytes_written(self) -> int:
        return self._file.tell()

    def close(self) -> Path:
        if self.frames == 0:
            self.discard()
            raise InputError("a key needs at least one frame.")
        trailer = {"frames": self.frames, "chunks": self.chunks, "output_sha256": self._output_hash.hexdigest()}
        secret = _canonical({"original_sha256": self._original_hash.hexdigest()})
        nonce = os.urandom(NONCE_BYTES)
        seal = self._aes.encrypt(nonce, secret, _AD_PREFIX + self._digest + b"end" + _canonical(trailer))
        self._file.write('\n], "trailer": ' + json.dumps(trailer) + ', "seal": "' + _b64(nonce + seal) + '"}\n')
        self._file.close()
        return self._out.commit()

    def discard(self) -> None:
        if not self._file.closed:
            self._file.close()
        self._out.discard()


# --------------------------------------------------------------------------- reading


class KeyReader:
    """Open a key written by :class:`KeyWriter` and undo its changes chunk by chunk.

    ``undo(output)`` takes the next chunk of the output's decoded 8-bit codes and returns
    the original's; ``finish()`` checks the sealed trailer (every chunk given, and the
    restored frames' hash equals the original's). Anything that does not fit raises
    ``InputError`` naming what is wrong. ``video`` names the output file in messages.
    """

    def __init__(self, path, video: str = "the video"):
        self.path, self.video = Path(path).expanduser(), video
        if not self.path.is_file():
            raise InputError(f"key file {self.path} does not exist: give the KEY.json written by --key-out.")
        self._file = open(self.path, encoding="ascii", errors="replace")
        first = self._file.readline()
        try:
            head = json.loads(first.rstrip("\n") + "]}")
            if head.get("format") != FORMAT:
                raise ValueError
        except (ValueError, AttributeError):
            self._file.close()
            raise InputError(f"{self.path} is not a PhysioLatent key (written by --key-out), or was reformatted: "
                             "use the key file as it was written.") from None
        if head.get("version") != VERSION:
            self._file.close()
            raise InputError(f"{self.path} is a version {head.get('version')} key; this PhysioLatent reads version "
                             f"{VERSION}: restore with the version that wrote it.")
        self.header = head["header"]
        try:
            self._aes = _aead(_unb64(self.header["key"], "key", self.path))
            self.width, self.height = int(self.header["width"]), int(self.header["height"])
            self.chunk_frames = int(self.header["chunk_frames"])
        except (KeyError, TypeError, ValueError):
            self._file.close()
            raise InputError(f"{self.path} is damaged: its header lacks the key or the frame size.") from None
        self._digest = hashlib.sha256(_canonical(self.header)).digest()
        self._output_hash, self._original_hash = hashlib.sha256(), hashlib.sha256()
        self.frames = self.chunks = 0
        self._tail: dict | None = None
        self.payload = self.header.get("payload", "difference")
        if self.payload not in ("difference", "source"):
            self._file.close()
            raise InputError(f"{self.path} holds a {self.payload!r} payload this PhysioLatent does not know.")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._file.close()

    def _damaged(self, what: str) -> InputError:
        return InputError(f"{self.path} is damaged ({what}): use the key file as it was written.")

    def _next_line(self):
        """The next chunk record [hex, base64], or None at the end of the chunks."""
        if self._tail is not None:
            return None
        line = self._file.readline()
        if not line:
            raise self._damaged("it ends early")
        text = line.strip().rstrip(",")
        if text.startswith("]"):
            try:
                self._tail = json.loads('{"chunks": [' + text)
            except ValueError:
                raise self._damaged("its trailer is not JSON") from None
            return None
        try:
            record = json.loads(text)
            assert isinstance(record, list) and len(record) == 2
            return record
        except (ValueError, AssertionError):
            raise self._damaged(f"chunk {self.chunks} is not a [hash, data] record") from None

    def undo(self, output: np.ndarray) -> np.ndarray:
        output = np.asarray(output)
        if output.dtype not in (np.uint8, np.uint16):
            raise InputError(f"{self.video} has {output.dtype} frames; keys read 8- and 16-bit video.")
        if output.ndim != 4 or output.shape[1] < self.height or output.shape[2] < self.width:
            raise InputError(f"{self.video} is {output.shape[2]}x{output.shape[1]}, but this key was made for a "
                             f"{self.width}x{self.height} video: give the file the key was made with.")
        output = np.ascontiguousarray(output[:, : self.height, : self.width])  # H.264 pads odd sizes
        first = self.frames
        record = self._next_line()
        if record is None:
            raise InputError(f"{self.video} has more frames than the {self.frames} this key was made for: it is "
                             "not the file the key was made with (or was changed since).")
        output_digest = hashlib.sha256(output).digest()
        if record[0] != output_digest.hex():
            raise InputError(f"{self.video} is not the file this key was made for, or it was changed since "
                             f"(re-encoded, edited or trimmed): frames {first}-{first + len(output) - 1} differ. "
                             "Restore from the file exactly as it was written; nothing was written.")
        blob = _unb64(record[1], f"chunk {self.chunks}", self.path)
        from cryptography.exceptions import InvalidTag

        try:
            plain = self._aes.decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:],
                                      _chunk_ad(self._digest, self.chunks, output_digest))
        except (InvalidTag, ValueError):
            raise InputError(f"{self.path} does not open chunk {self.chunks} of {self.video}: the key file was "
                             "changed (its key, header or data) or belongs to another file. Use the key as it "
                             "was written; nothing was written.") from None
        diff = _unpack(plain, output.shape, self.path)
        original = output.astype(_wide(output)) + diff
        if original.min(initial=0) < 0 or original.max(initial=0) > 255:
            raise self._damaged("its differences leave 0..255")
        original = original.astype(np.uint8)
        self._output_hash.update(output_digest)
        self._original_hash.update(original)
        self.frames += len(output)
        self.chunks += 1
        return original

    def check_output(self, outputs: Iterable[np.ndarray]) -> None:
        """A "source" key: the output's decoded chunks [t, H, W, 3] must hash to the header's."""
        digests, frames = hashlib.sha256(), 0
        for output in outputs:
            if output.ndim != 4 or output.shape[1] < self.height or output.shape[2] < self.width:
                raise InputError(f"{self.video} is {output.shape[2]}x{output.shape[1]}, but this key was made for "
                                 f"a {self.width}x{self.height} video: give the file the key was made with.")
            digest = hashlib.sha256(np.ascontiguousarray(output[:, : self.height, : self.width])).digest()
            digests.update(digest)
            self._output_hash.update(digest)
            frames += len(output)
        if digests.hexdigest() != self.header.get("output_sha256") or frames != self.header.get("output_frames"):
            raise InputError(f"{self.video} is not the file this key was made for, or it was changed since "
                             "(re-encoded, edited or trimmed): its frames differ from the key's record. Restore "
                             "from the file exactly as it was written; nothing was written.")

    def source_pieces(self) -> Iterator[bytes]:
        """A "source" key: the input file's bytes, piece by piece (after ``check_output``)."""
        from cryptography.exceptions import InvalidTag

        while (record := self._next_line()) is not None:
            blob = _unb64(record[1], f"piece {self.chunks}", self.path)
            try:
                yield self._aes.decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:],
                                        _chunk_ad(self._digest, self.chunks, b"source"))
            except (InvalidTag, ValueError):
                raise InputError(f"{self.path} does not open piece {self.chunks}: the key file was changed (its "
                                 "key, header or data) or belongs to another file. Nothing was written.") from None
            self.chunks += 1

    def original_seen(self, original: np.ndarray) -> None:
        """A "source" key: count and hash the frames decoded from the input's bytes."""
        self._original_hash.update(np.ascontiguousarray(original))
        self.frames += len(original)

    def finish(self) -> dict:
        """Check the sealed trailer once every chunk went through; returns it."""
        if self._next_line() is not None:
            raise InputError(f"{self.video} has fewer frames ({self.frames}) than this key was made for: it was "
                             "trimmed or is another file. Nothing was written.")
        tail = self._tail or {}
        trailer = tail.get("trailer")
        if not isinstance(trailer, dict):
            raise self._damaged("it has no trailer")
        from cryptography.exceptions import InvalidTag

        blob = _unb64(tail.get("seal", ""), "seal", self.path)
        try:
            secret = json.loads(self._aes.decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:],
                                                  _AD_PREFIX + self._digest + b"end" + _canonical(trailer)))
        except (InvalidTag, ValueError):
            raise InputError(f"{self.path} does not open its trailer: the key file was changed or is cut short. "
                             "Nothing was written.") from None
        if (trailer.get("frames"), trailer.get("chunks")) != (self.frames, self.chunks) \
                or trailer.get("output_sha256") != self._output_hash.hexdigest():
            if self.payload == "source" and trailer.get("frames") != self.frames:
                raise self._damaged("the input it holds decodes to another number of frames")
            raise InputError(f"{self.video} is not the file this key was made for (its frames differ from the "
                             "key's record). Nothing was written.")
        if secret.get("original_sha256") != self._original_hash.hexdigest():
            raise self._damaged("the restored frames differ from the original's hash")
        return trailer


# --------------------------------------------------------------------------- files


def _raw_chunks(path, chunk_frames: int) -> Iterator[np.ndarray]:
    """8-bit chunks upright, as the pipeline reads them (a video stored on its side is
    turned by its display matrix), so a key matches the pipeline's kept frames."""
    from .video import iter_frames, prefetch

    return prefetch(iter_frames(Path(path), chunk_frames=chunk_frames, raw=True, upright=True))


def write_key(key_path, input_path, output_path, *, fps: float | None = None, meta: dict | None = None,
              overwrite: bool = False, chunks: Iterable[np.ndarray] | None = None) -> dict:
    """Write the key that turns ``output_path`` (as it decodes) back into ``input_path``.

    Both files are decoded side by side in chunks (bounded memory). ``chunks``: the
    input's 8-bit chunks [t, H, W, 3] if the caller has them (any chunking); ``fps``: the
    clip's (default: the output's, as probed), kept for the restored file. Returns a
    summary (path, frames, chunks, bytes).
    """
    import itertools

    from .pipeline import rechunk
    from .video import probe_video

    originals = iter(chunks if chunks is not None else _raw_chunks(input_path, 64))
    first = next(originals, None)
    if first is None:
        raise InputError(f"{input_path} holds no frames.")
    if np.asarray(first).dtype != np.uint8:
        raise InputError(f"{input_path} has {np.asarray(first).dtype} frames; a key restores 8-bit frames only "
                         "(convert the input to 8 bit first).")
    height, width = first.shape[1:3]
    frames_per = chunk_frames_for(width, height)
    saved = _raw_chunks(output_path, frames_per)
    meta = {"fps": fps or probe_video(Path(output_path)).fps, **(meta or {})}
    source = Path(input_path)
    limit = source.stat().st_size if source.is_file() else None  # a folder of frames has no one file to hold
    output_hash, original_hash, frames, n_chunks = hashlib.sha256(), hashlib.sha256(), 0, 0
    writer = KeyWriter(key_path, width=width, height=height, chunk_frames=frames_per, meta=meta, overwrite=overwrite)
    try:
        for original in rechunk(itertools.chain([first], originals), frames_per):
            output = next(saved, None)
            if output is None or len(output) != len(original):
                raise InputError(f"{output_path} has fewer frames than {input_path}.")
            output = np.ascontiguousarray(output[:, :height, :width])  # H.264 pads odd sizes
            if writer is not None:
                writer.add(original, output)
                if limit is not None and writer.bytes_written > limit:
                    writer.discard()  # the input file itself is the smaller key
                    writer = None
            output_hash.update(hashlib.sha256(output).digest())
            original_hash.update(np.ascontiguousarray(original))
            frames, n_chunks = frames + len(output), n_chunks + 1
        if next(saved, None) is not None:
            raise InputError(f"{output_path} has more frames than {input_path}.")
        if writer is not None:
            path = writer.close()
            payload = "difference"
        else:
            path = _write_source_key(key_path, source, width=width, height=height, chunk_frames=frames_per,
                                     meta=meta, overwrite=overwrite, frames=frames,
                                     output_sha256=output_hash.hexdigest(), original_sha256=original_hash.hexdigest())
            payload = "source"
    except BaseException:
        if writer is not None:
            writer.discard()
        raise
    return {"path": str(path), "frames": frames, "chunks": n_chunks, "payload": payload, "bytes": path.stat().st_size}


def _write_source_key(key_path, source: Path, *, width, height, chunk_frames, meta, overwrite, frames,
                      output_sha256, original_sha256) -> Path:
    """A key that holds the input file's bytes (see the module docstring), atomically."""
    key = os.urandom(32)
    aes = _aead(key)
    header = {"cipher": CIPHER, "payload": "source", "compression": "none (the input file's own encoding)",
              "key": _b64(key), "source_name": source.name, "source_bytes": source.stat().st_size,
              "original_dtype": "uint8", "width": width, "height": height, "chunk_frames": chunk_frames,
              "output_frames": frames, "output_sha256": output_sha256, **meta}
    digest = hashlib.sha256(_canonical(header)).digest()
    out = AtomicPath(Path(key_path).expanduser(), overwrite=overwrite)
    try:
        with open(out.tmp, "w", encoding="ascii") as f, open(source, "rb") as src:
            f.write(_HEAD + json.dumps(header, allow_nan=False) + ', "chunks": [\n')
            pieces = 0
            while piece := src.read(SOURCE_PIECE):
                nonce = os.urandom(NONCE_BYTES)
                sealed = aes.encrypt(nonce, piece, _chunk_ad(digest, pieces, b"source"))
                f.write(("" if pieces == 0 else ",\n") + json.dumps(["", _b64(nonce + sealed)]))
                pieces += 1
            trailer = {"frames": frames, "chunks": pieces, "output_sha256": output_sha256}
            nonce = os.urandom(NONCE_BYTES)
            seal = aes.encrypt(nonce, _canonical({"original_sha256": original_sha256}),
                               _AD_PREFIX + digest + b"end" + _canonical(trailer))
            f.write('\n], "trailer": ' + json.dumps(trailer) + ', "seal": "' + _b64(nonce + seal) + '"}\n')
        return out.commit()
    except BaseException:
        out.discard()
        raise


def restore_chunks(video_path, key_path) -> Iterator[np.ndarray]:
    """The original's 8-bit chunks [t, H, W, 3], upright (``iter_frames(upright=True)``),
    from ``video_path`` (the edited file as written) and its key. Raises ``InputError`` at the first chunk that does not fit, and
    after the last if the key's sealed trailer does not: write them atomically, so a file
    or key that does not fit leaves nothing behind."""
    from .video import iter_frames

    with KeyReader(key_path, video=str(video_path)) as key:
        if key.payload == "difference":
            for output in iter_frames(Path(video_path), chunk_frames=key.chunk_frames, raw=True, upright=True):
                yield key.undo(output)
        else:
            yield from _restore_source(key, video_path)
        key.finish()


def _restore_source(key: KeyReader, video_path) -> Iterator[np.ndarray]:
    """A "source" key: check the output, decrypt the input's bytes into a private temporary
    folder (removed afterwards), and decode them."""
    import tempfile

    from .video import iter_frames

    key.check_output(iter_frames(Path(video_path), chunk_frames=key.chunk_frames, raw=True, upright=True))
    with tempfile.TemporaryDirectory(prefix="physiolatent-restore-") as folder:  # mode 0700
        source = Path(folder) / ("source" + Path(str(key.header.get("source_name", ""))).suffix)
        with open(source, "wb") as f:
            f.writelines(key.source_pieces())
        for original in iter_frames(source, chunk_frames=key.chunk_frames, raw=True, upright=True):
            if original.dtype != np.uint8 or original.shape[1:3] != (key.height, key.width):
                raise key._damaged("the input it holds decodes to other frames")
            key.original_seen(original)
            yield original


def read_header(key_path) -> dict:
    """The key's header without its AES key (what it was made from: mode, size, fps ...)."""
    with KeyReader(key_path) as key:
        return {k: v for k, v in key.header.items() if k != "key"}


# --------------------------------------------------------------------------- frames in memory


def level_codes(frames: np.ndarray, block: int = 16) -> np.ndarray | None:
    """uint8 codes of float frames 0..1 [T, ...] that all lie on 8-bit levels k/255 (as
    decoded video does), else None. Such frames are best written as these codes: a
    dither adds nothing to them and its float rounding moves a few by one level
    (190 of 27.6 M values in 30 random 640x480 frames)."""
    frames = np.asarray(frames)
    out = np.empty(frames.shape, np.uint8)
    for at in range(0, len(frames), block):
        scaled = np.asarray(frames[at : at + block], np.float32) * np.float32(255)
        codes = np.rint(scaled)
        # float32 k/255 * 255 lies within ~2e-5 of k; anything further is not a level.
        if scaled.size and (np.max(np.abs(scaled - codes)) > 1e-3 or codes.min() < 0 or codes.max() > 255):
            return None
        out[at : at + block] = codes
    return out


def on_levels(frames: np.ndarray, what: str = "frames") -> np.ndarray:
    """uint8 codes of float frames on 8-bit levels (``level_codes``); ``InputError`` for
    frames off them (a key is bound to exact codes)."""
    codes = level_codes(frames)
    if codes is None:
        raise InputError(f"{what} are not on 8-bit levels (k/255): a key restores frames exactly as a video "
                         "decodes them. Load the file as written (a lossless .mkv), with nothing in between.")
    return codes


def write_key_frames(key_path, original: np.ndarray, output: np.ndarray, *, meta: dict | None = None,
                     overwrite: bool = False) -> dict:
    """The key for clips in memory: ``original`` and ``output`` 8-bit codes [T, H, W, 3]
    (the output exactly as it will be saved and loaded again). Returns a summary."""
    original, output = _codes(original, "original", (np.uint8,)), _codes(output, "output", (np.uint8,))
    if original.shape != output.shape:
        raise InputError(f"the original {original.shape} and the output {output.shape} must have one shape.")
    height, width = original.shape[1:3]
    step = chunk_frames_for(width, height)
    with KeyWriter(key_path, width=width, height=height, chunk_frames=step, meta=meta, overwrite=overwrite) as w:
        for at in range(0, len(original), step):
            w.add(original[at : at + step], output[at : at + step])
    return {"path": str(w.path), "frames": w.frames, "chunks": w.chunks, "bytes": w.path.stat().st_size}


def restore_frames(output: np.ndarray, key_path, video: str = "the frames") -> tuple[np.ndarray, dict]:
    """The original's 8-bit codes [T, H, W, 3] from the output's codes in memory and its key;
    also the key's header without its AES key. ``InputError`` where they do not fit."""
    output = _codes(output, video)
    if KeyReader(key_path, video=video).payload != "difference":
        raise InputError(f"{key_path} holds the input file itself (a command-line key for a lossy input): "
                         "restore with `python -m physiolatent_core restore VIDEO --key KEY -o OUT.mkv`.")
    if len(output) == 0:
        raise InputError(f"{video} hold no frames.")
    with KeyReader(key_path, video=video) as key:
        original = np.concatenate([key.undo(output[at : at + key.chunk_frames])
                                   for at in range(0, len(output), key.chunk_frames)])
        key.finish()
        return original, {k: v for k, v in key.header.items() if k != "key"}
