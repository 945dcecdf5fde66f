"""Shared plumbing for the PhysioLatent nodes: tensor <-> numpy at the node boundary,
input checks that raise clear errors, and the few ComfyUI services nodes use
(progress bar, interrupts, devices, model/output folders).

ComfyUI types at the boundary:
    IMAGE  torch.float32 [T, H, W, C] in 0..1 (C = 3; an alpha channel is dropped)
    MASK   torch.float32 [T, H, W] or [H, W] in 0..1
The library (``physiolatent_core``) takes numpy float32 [T, H, W, 3] / [T, H, W].

ComfyUI modules (``comfy``, ``folder_paths``) are imported lazily. When the ``comfy``
package does not exist at all (host-less tests, scripts) the helpers fall back to
no-op progress, CPU devices and folders from environment variables; any other import
failure inside a real host propagates, so nothing degrades silently there.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

import numpy as np
import torch

from physiolatent_core import rppg
from physiolatent_core.errors import InputError

# Name of the extra model folder this pack registers: ComfyUI/models/physiolatent
ADAPTER_FOLDER = "physiolatent"
# Host-less fallback folders (tests, scripts). Never used inside ComfyUI.
ENV_MODELS_DIR = "PHYSIOLATENT_MODELS_DIR"
ENV_OUTPUT_DIR = "PHYSIOLATENT_OUTPUT_DIR"


# --------------------------------------------------------------------------- host access
def host_module(name: str) -> ModuleType | None:
    """Import a ComfyUI module, or return None when ComfyUI itself is absent.

    Only a missing top-level package counts as "no host"; an import error inside an
    installed ComfyUI is a real failure and is raised.
    """
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as err:
        if err.name in (name, name.split(".")[0]):
            return None
        raise


def check_interrupt() -> None:
    """Raise ComfyUI's interrupt exception if the user pressed Cancel."""
    mm = host_module("comfy.model_management")
    if mm is not None:
        mm.throw_exception_if_processing_interrupted()


class Progress:
    """ComfyUI progress bar that also honours interrupts; a no-op outside the host."""

    def __init__(self, total: int):
        utils = host_module("comfy.utils")
        self._bar = utils.ProgressBar(total) if utils is not None else None

    def update(self, n: int = 1) -> None:
        check_interrupt()
        if self._bar is not None:
            self._bar.update(n)


def torch_device() -> torch.device:
    """Device models run on: ComfyUI's choice in the host, CUDA if present otherwise."""
    mm = host_module("comfy.model_management")
    if mm is not None:
        return mm.get_torch_device()
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def intermediate_device() -> torch.device:
    """Device for tensors passed between nodes (CPU unless the host says otherwise)."""
    mm = host_module("comfy.model_management")
    if mm is not None:
        return mm.intermediate_device()
    return torch.device("cpu")


def free_memory() -> None:
    """Give cached accelerator memory back after a model ran."""
    mm = host_module("comfy.model_management")
    if mm is not None:
        mm.soft_empty_cache()
    elif torch.cuda.is_available():
        torch.cuda.empty_cache()


# --------------------------------------------------------------------------- folders
def register_model_folder() -> None:
    """Register ComfyUI/models/physiolatent for adapter weights (idempotent)."""
    fp = host_module("folder_paths")
    if fp is None:
        return
    # is_default puts models/physiolatent first; paths from extra_model_paths.yaml stay.
    fp.add_model_folder_path(ADAPTER_FOLDER, os.path.join(fp.models_dir, ADAPTER_FOLDER), is_default=True)
    paths, _exts = fp.folder_names_and_paths[ADAPTER_FOLDER]
    fp.folder_names_and_paths[ADAPTER_FOLDER] = (paths, {".safetensors"})


def model_folder_paths(kind: str) -> list[str]:
    """Folders searched for model files of ``kind`` ("vae" or "physiolatent")."""
    fp = host_module("folder_paths")
    if fp is not None:
        register_model_folder()
        return list(fp.get_folder_paths(kind))
    root = os.environ.get(ENV_MODELS_DIR)
    return [os.path.join(root, kind)] if root else []


def list_model_files(kind: str) -> list[str]:
    """File names shown in a loader's dropdown (``.safetensors`` only: no pickle)."""
    fp = host_module("folder_paths")
    if fp is not None:
        register_model_folder()
        names = fp.get_filename_list(kind)
    else:
        names = []
        for folder in model_folder_paths(kind):
            if os.path.isdir(folder):
                for base, _dirs, files in os.walk(folder):
                    rel = os.path.relpath(base, folder)
                    names += [os.path.normpath(os.path.join(rel, f)) for f in files]
    return sorted(n for n in names if n.lower().endswith(".safetensors"))


def resolve_model_file(kind: str, name: str, what: str) -> str:
    """Full path of ``name`` in the ``kind`` model folders, or a ModelFileError that says
    which folder to put which file in."""
    from physiolatent_core.errors import ModelFileError

    folders = model_folder_paths(kind)
    if not name or name.strip() == "":
        raise ModelFileError(
            f"No {what} selected: put a .safetensors file into {folders or ['ComfyUI/models/' + kind]} "
            "and press 'r' in ComfyUI to refresh the list."
        )
    if not name.lower().endswith(".safetensors"):
        raise ModelFileError(
            f"{what}: '{name}' is not a .safetensors file; only safetensors weights are loaded "
            "(pickled .ckpt/.pt/.bin files are refused for safety)."
        )
    for folder in folders:
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            return path
    raise ModelFileError(
        f"{what} file '{name}' was not found in {folders or ['ComfyUI/models/' + kind]}. "
        f"Put it there (see docs/COMFYUI.md) and refresh."
    )


def output_directory() -> str:
    """ComfyUI's output folder in the host; $PHYSIOLATENT_OUTPUT_DIR outside it."""
    fp = host_module("folder_paths")
    if fp is not None:
        return fp.get_output_directory()
    out = os.environ.get(ENV_OUTPUT_DIR)
    if not out:
        raise InputError(
            f"Not running inside ComfyUI: set {ENV_OUTPUT_DIR} to the folder where videos should go."
        )
    os.makedirs(out, exist_ok=True)
    return out


# --------------------------------------------------------------------------- conversions
def image_to_numpy(image: torch.Tensor, name: str = "images") -> np.ndarray:
    """ComfyUI IMAGE [T,H,W,C] -> numpy float32 [T,H,W,3] in 0..1.

    For a CPU float32 RGB tensor this is a view of the upstream node's output, which
    ComfyUI caches: never modify the result in place.
    """
    if not isinstance(image, torch.Tensor) or image.ndim != 4:
        shape = tuple(image.shape) if hasattr(image, "shape") else type(image).__name__
        raise InputError(f"'{name}' must be an IMAGE batch [frames, height, width, channels]; got {shape}.")
    if image.shape[-1] not in (3, 4):
        raise InputError(f"'{name}' must have 3 (RGB) or 4 (RGBA) channels; got {image.shape[-1]}.")
    if image.shape[0] < 1:
        raise InputError(f"'{name}' holds no frames.")
    # Alpha carries no pulse; drop it rather than refuse RGBA sources.
    return np.ascontiguousarray(image[..., :3].detach().to("cpu", torch.float32).numpy())


def numpy_to_image(frames: np.ndarray) -> torch.Tensor:
    """numpy [T,H,W,3] -> ComfyUI IMAGE tensor float32 on the intermediate device."""
    arr = np.ascontiguousarray(np.clip(frames, 0.0, 1.0), dtype=np.float32)
    return torch.from_numpy(arr).to(intermediate_device())


def mask_to_numpy(mask: torch.Tensor | None, frames: np.ndarray, name: str = "mask") -> np.ndarray | None:
    """ComfyUI MASK [T,H,W] (or one [H,W]/[1,H,W] mask for every frame) -> numpy [T,H,W].

    Raises InputError when its frame count or size does not match ``frames``.
    """
    if mask is None:
        return None
    m = mask.detach().to("cpu", torch.float32).numpy()
    if m.ndim == 2:
        m = m[None]
    if m.ndim != 3:
        raise InputError(f"'{name}' must be a MASK [frames, height, width]; got shape {m.shape}.")
    t, h, w = frames.shape[:3]
    if m.shape[1:] != (h, w):
        raise InputError(
            f"'{name}' is {m.shape[2]}x{m.shape[1]} but the frames are {w}x{h}: "
            "make the mask from these same frames (e.g. with PhysioLatent Face Mask)."
        )
    if m.shape[0] == 1 and t > 1:
        m = np.broadcast_to(m, (t, h, w))
    elif m.shape[0] != t:
        raise InputError(
            f"'{name}' has {m.shape[0]} frames but the video has {t}: "
            "give one mask per frame (or a single mask for all frames)."
        )
    return np.ascontiguousarray(np.clip(m, 0.0, 1.0), dtype=np.float32)


def numpy_to_mask(mask: np.ndarray) -> torch.Tensor:
    """numpy [T,H,W] -> ComfyUI MASK tensor."""
    return torch.from_numpy(np.ascontiguousarray(mask, dtype=np.float32)).to(intermediate_device())


# --------------------------------------------------------------------------- checks
def check_fps(fps: float) -> float:
    """fps must be a positive finite number (ComfyUI's GetVideoComponents gives it)."""
    fps = float(fps)
    if not np.isfinite(fps) or fps <= 0:
        raise InputError(
            f"fps must be > 0; got {fps}. Connect the 'fps' output of Get Video Components "
            "(or type the clip's real frame rate)."
        )
    return fps


def check_duration(frames: np.ndarray, fps: float, what: str, min_seconds: float = rppg.MIN_DURATION_S) -> None:
    """Heart rate needs a few beats: the library's check (``rppg.check_duration``), told in
    the node's (``what``) words, with where more frames come from."""
    n = frames.shape[0]
    try:
        rppg.check_duration(n, fps, min_duration_s=min_seconds)
    except InputError as err:
        raise InputError(
            f"{what} needs at least {min_seconds:g} s of video ({int(np.ceil(min_seconds * fps))} frames at "
            f"{fps:g} fps); got {n} frames ({n / fps:.2f} s). Load more frames (Load Video's frame cap, "
            "or a longer clip)."
        ) from err


def check_same_shape(a: np.ndarray, b: np.ndarray, name_a: str, name_b: str) -> None:
    """Two clips meant to be combined frame by frame must match in length and size."""
    if a.shape != b.shape:
        raise InputError(
            f"'{name_a}' is {a.shape[0]} frames of {a.shape[2]}x{a.shape[1]} but '{name_b}' is "
            f"{b.shape[0]} frames of {b.shape[2]}x{b.shape[1]}: they must match. Resize/trim one of them, "
            "or connect the clip that the edit was made from."
        )


def parse_methods(text: str) -> list[str]:
    """'pos, chrom' (or 'pos; chrom') -> ['pos', 'chrom']; '' or 'all' -> every reader of
    ``rppg.METHODS``. ``rppg.resolve_methods`` checks the names; unknown ones are an error."""
    names = [s.strip() for s in text.replace(";", ",").split(",") if s.strip()]
    try:
        return rppg.resolve_methods(names or None)
    except InputError as err:
        unknown = [n for n in names if n.lower() not in rppg.METHODS]
        raise InputError(f"Unknown rPPG estimator(s) {unknown}; choose from {list(rppg.METHODS)} or 'all'.") from err


def json_summary(obj, max_list: int = 32) -> dict:
    """A JSON-able summary of a result object (dataclass or dict): scalars, strings and
    short lists are kept; arrays longer than ``max_list`` (frames, waveforms) are left out."""
    import dataclasses

    if dataclasses.is_dataclass(obj):
        items = {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
    elif isinstance(obj, dict):
        items = obj
    else:
        items = {k: v for k, v in vars(obj).items() if not k.startswith("_")}
    out = {}
    for key, value in items.items():
        if isinstance(value, (np.ndarray, torch.Tensor)):
            n = value.size if isinstance(value, np.ndarray) else value.numel()
            if n <= max_list:
                out[key] = value.tolist()
        elif isinstance(value, (np.floating, np.integer, np.bool_)):
            out[key] = value.item()
        elif isinstance(value, (str, int, float, bool)) or value is None:
            out[key] = value
        elif isinstance(value, (list, tuple)) and len(value) <= max_list:
            out[key] = [v.item() if isinstance(v, np.generic) else v for v in value]
        elif isinstance(value, dict) or dataclasses.is_dataclass(value):
            out[key] = json_summary(value, max_list)
    return out
