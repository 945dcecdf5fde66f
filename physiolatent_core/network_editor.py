"""The paper's network as an editor: observe / plan / apply over temporal windows.

    face crop (one fixed square for the clip) -> per window: VAE encode -> fusion with the
    HR condition -> FiLM decode -> uncrop -> composite inside the skin mask

The 3D causal VAE sees ``Windows.frames`` frames at once. The clip is cut into blocks of
``Windows.block`` frames; each block is encoded with up to ``Windows.context`` frames
that precede it, whose outputs are dropped: the causal encoder starts each block with
the face's recent past instead of from rest, and a block needs no frames after it, so
the editor streams (``apply`` takes the blocks in order, one per call) and device memory
is one window whatever the clip's length. The ComfyUI node chain (VAE Encode ->
Fusion -> FiLM Decode) cuts its windows with the same :func:`window_spans` and runs the
same :func:`encode_crops` / :func:`fuse_latent` / :func:`decode_latent`, so the nodes and
the command line give the same frames.

The face is cropped with one square for the whole clip (``face.crop_squares(...,
fixed=True)``), as the network was trained: a crop that moved would add its own colour
signal.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from einops import rearrange

from .errors import InputError
from .model import PhysioLatent, check_hr_bpm

MODES = ("edit", "remove")
CROP_MARGIN = 0.25  # border around the face box, a fraction of its size (face.crop_faces' default)


@dataclass(frozen=True)
class Windows:
    """How the network cuts a clip in time: ``frames`` per VAE call (1 + 4k suits the
    causal VAE), of which the first ``context`` repeat the previous block's last frames."""

    frames: int = 49
    context: int = 8

    def __post_init__(self):
        if not 0 <= self.context < self.frames:
            raise InputError(f"context frames must be 0 <= context < window frames; got {self.context} and "
                             f"{self.frames}.")

    @property
    def block(self) -> int:
        """New frames per window."""
        return self.frames - self.context


@dataclass(frozen=True)
class Span:
    """One window: input frames ``source .. stop``, of which ``start .. stop`` are its output."""

    source: int
    start: int
    stop: int

    @property
    def context(self) -> int:
        return self.start - self.source


def window_spans(num_frames: int, windows: Windows = Windows()) -> list[Span]:
    """The windows of a ``num_frames``-frame clip, in order."""
    return [Span(max(0, a - windows.context), a, min(a + windows.block, num_frames))
            for a in range(0, num_frames, windows.block)]


def encode_crops(vae, crops: np.ndarray, device) -> torch.Tensor:
    """crops [t,S,S,3] float 0..1 -> latent z [1,C,t',h,w] float32 on ``device``."""
    video = rearrange(torch.from_numpy(np.ascontiguousarray(crops, np.float32)), "t h w c -> 1 c t h w") * 2 - 1
    return vae.encode(video.to(device=device, dtype=vae.dtype)).float()


def fuse_latent(adapter, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """z [1,C,t',h,w], c [1,cond_dim] -> z' (the edited latent), float32."""
    return adapter.fusion(z.float(), c).float()


def decode_latent(model: PhysioLatent, z: torch.Tensor, c: torch.Tensor, num_frames: int,
                  context: int = 0) -> np.ndarray:
    """z' of a window of ``num_frames`` frames -> its output crops [num_frames - context,S,S,3]
    float32 0..1 (the context frames' outputs are dropped)."""
    video = model.decode(z, c, num_frames=num_frames).float().clamp(-1, 1)
    return rearrange((video[:, :, context:].cpu() + 1) / 2, "1 c t h w -> t h w c").numpy()


@dataclass
class NetworkEditor:
    """``editors.ChunkEditor`` for a PhysioLatent model (frozen VAE + trained adapter).

    ``mode``: ``"edit"`` (conditioned on ``target_hr_bpm``) or ``"remove"`` (the adapter's
    learned removal condition). ``plan(track)`` needs the clip's face track; ``apply``
    then takes blocks of ``chunk_frames`` frames in order.
    """

    model: PhysioLatent
    fps: float
    mode: str = "edit"
    target_hr_bpm: float | None = None
    crop_size: int = 256
    device: str | torch.device = "cpu"
    windows: Windows = field(default_factory=Windows)

    def __post_init__(self):
        if self.mode not in MODES:
            raise InputError(f"mode must be 'edit' or 'remove'; got {self.mode!r}.")
        if not self.fps or self.fps <= 0:
            raise InputError(f"fps must be positive; got {self.fps}.")
        if self.mode == "edit":
            if self.target_hr_bpm is None:
                raise InputError("mode='edit' needs target_hr_bpm (e.g. 90).")
            check_hr_bpm(self.target_hr_bpm)
        if self.crop_size % self.model.vae.spatial_ratio:
            raise InputError(f"crop_size must be a multiple of {self.model.vae.spatial_ratio}; got {self.crop_size}.")
        self.chunk_frames = self.windows.block
        self._observed = 0
        self._next = 0
        self._squares: np.ndarray | None = None  # [T,4] the crop square of every frame (one square)
        self._c: torch.Tensor | None = None
        self._context = np.zeros((0, self.crop_size, self.crop_size, 3), np.float32)

    @classmethod
    def from_files(cls, vae_path, adapter_path, fps: float, mode: str, target_hr_bpm: float | None = None,
                   clip_path=None, device: str = "auto", crop_size: int = 256) -> "NetworkEditor":
        """Load the user's VAE and adapter files (bf16 on CUDA, float32 on the CPU)."""
        from .model import load_adapter, load_vae

        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        dtype = torch.bfloat16 if str(device).startswith("cuda") else torch.float32
        vae = load_vae(vae_path, dtype=dtype, device=device)
        adapter = load_adapter(adapter_path, vae, clip_path=clip_path, device=device)
        return cls(PhysioLatent(vae, adapter), fps, mode, target_hr_bpm, crop_size, device)

    def observe(self, frames: np.ndarray, face_mask: np.ndarray) -> None:
        self._observed += len(frames)

    def plan(self, track=None) -> None:
        from .face import crop_squares

        if track is None:
            raise InputError("the network editor crops the face with its track: pass the clip's face.FaceTrack "
                             "to plan().")
        if len(track) != self._observed:
            raise InputError(f"the face track has {len(track)} frames but {self._observed} were observed: track "
                             "the clip you edit.")
        self._squares = crop_squares(track, CROP_MARGIN, fixed=True)
        torch.nn.Module.to(self.model.vae.model, device=self.device)  # dtype kept
        self.model.adapter.to(self.device)
        hr = torch.tensor([60.0 if self.mode == "remove" else self.target_hr_bpm], dtype=torch.float32,
                          device=self.device)
        with torch.inference_mode():
            self._c = self.model.condition(hr, self.mode == "remove")

    def apply(self, frames: np.ndarray, face_mask: np.ndarray, start: int, inplace: bool = False) -> np.ndarray:
        from .face import composite, cut_crops, uncrop_faces

        if self._squares is None:
            raise RuntimeError("call plan(track) after observing every chunk, before apply().")
        stop = start + len(frames)
        if start != self._next or (len(frames) != self.chunk_frames and stop != self._observed):
            raise InputError(f"the network editor takes blocks of {self.chunk_frames} frames in order; got frames "
                             f"{start}..{stop} (next is {self._next}).")
        self._next = stop
        crops, info = cut_crops(frames, self._squares[start:stop], self.crop_size)
        window = np.concatenate([self._context, crops])
        try:
            with torch.inference_mode():
                z = encode_crops(self.model.vae, window, self.device)
                edited = decode_latent(self.model, fuse_latent(self.model.adapter, z, self._c), self._c, len(window),
                                       context=len(self._context))
        except torch.OutOfMemoryError as exc:
            raise InputError(f"out of GPU memory editing {self.crop_size}x{self.crop_size} crops in "
                             f"{self.windows.frames}-frame windows ({exc}): use a smaller crop size (e.g. 128) or a "
                             "GPU with more memory.") from exc
        self._context = window[len(window) - self.windows.context:] if self.windows.context else self._context
        return composite(frames, uncrop_faces(edited, info, frames), face_mask)

    @property
    def info(self) -> dict:
        return {"method": "physiolatent", "mode": self.mode, "target_hr_bpm": self.target_hr_bpm,
                "crop_size": self.crop_size, "window_frames": self.windows.frames,
                "context_frames": self.windows.context, "device": str(self.device),
                "dtype": str(self.model.vae.dtype)}


@dataclass
class ModelEditResult:
    """Output of :func:`edit_with_model`."""

    frames: np.ndarray  # [T,H,W,3] float32 0..1
    mask: np.ndarray  # [T,H,W] float32, where the decoder output was composited
    fps: float
    target_hr_bpm: float | None
    mode: str
    info: dict = field(default_factory=dict)


def edit_with_model(frames: np.ndarray, fps: float, target_hr_bpm: float | None, model: PhysioLatent,
                    face_mask: np.ndarray | None = None, crop_size: int = 256, mode: str = "edit", device="cpu",
                    window_frames: int = 49, context_frames: int = 8, track=None) -> ModelEditResult:
    """Edit (or remove) the pulse of an in-memory clip ``frames [T,H,W,3]`` float 0..1 with
    a PhysioLatent model: :class:`NetworkEditor` driven by ``editors.run_editor``. The face
    is tracked and masked here unless ``track`` / ``face_mask`` are given."""
    from . import face
    from .editors import run_editor

    editor = NetworkEditor(model, fps, mode, target_hr_bpm, crop_size, device, Windows(window_frames, context_frames))
    frames = np.asarray(frames, dtype=np.float32)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise InputError(f"frames must be [T,H,W,3] float 0..1; got shape {frames.shape}.")
    if track is None:
        track = face.track_face(frames, fps)
    if face_mask is None:
        face_mask = face.skin_mask(frames, track)
    face_mask = np.asarray(face_mask, dtype=np.float32)
    out = run_editor(editor, frames, face_mask, track)
    return ModelEditResult(frames=out, mask=face_mask, fps=float(fps),
                           target_hr_bpm=None if mode == "remove" else float(target_hr_bpm), mode=mode,
                           info=editor.info)
