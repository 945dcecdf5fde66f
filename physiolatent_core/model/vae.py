"""The frozen 3D causal video VAE (CogVideoX), loaded from one local file.

PhysioLatent edits the latent of a pretrained 3D causal VAE. We use diffusers'
`AutoencoderKLCogVideoX` (8x spatial, 4x temporal compression, 16 latent channels),
built from a config in code so nothing is downloaded.

Public API
----------
cogvideox_vae_config() -> dict          the CogVideoX-2B VAE (215.6 M parameters)
tiny_vae_config() -> dict               same structure, few channels (tests, CPU fixture)
build_vae(config=None, dtype=torch.float32, device="cpu", seed=0) -> VAE   random weights
load_vae(path, dtype=torch.float32, device="cpu", scaling_factor=None) -> VAE
    `path`: one .safetensors file (diffusers keys, or the original SAT/CogVideo keys,
    optionally prefixed `vae.` / `first_stage_model.`), or a diffusers folder
    (config.json + diffusion_pytorch_model.safetensors). The config is inferred from
    the weight shapes, so a file alone is enough.
save_vae(vae, path) -> None             diffusers keys, config JSON in the metadata
vae_fingerprint(vae) -> str             identifies the weights an adapter was trained on
sat_to_diffusers_keys(sd) / diffusers_to_sat_keys(sd)   key layout conversion
map_windows(video, fn, window_frames=49, overlap_frames=8) -> video   long clips
window_starts(num_frames, window_frames=49, overlap_frames=8) -> list[int]

class VAE(nn.Module)
    encode(video [B,3,T,H,W] in [-1,1], sample=False, generator=None) -> z [B,16,T',h,w]
        z is multiplied by scaling_factor (unit-variance latent). T' = latent_frames(T).
    decode(z [B,16,T',h,w], num_frames=None) -> video [B,3,T,H,W] (cropped to num_frames)
    reconstruct(video, window_frames=49, overlap_frames=8) -> video, windowed for long clips
    enable_tiling(...)                  diffusers' spatial tiling (large frames)

Frame padding
-------------
The causal VAE maps 1+4k frames to 1+k latents, but diffusers decodes latents in pairs
with the first *three* treated specially, which is only correct for an odd latent count.
So `encode` pads T (replicating the last frame) up to 1+8k frames, giving 1+2k latents;
`decode(..., num_frames=T)` crops exactly back to T. `latent_frames(T)` says how many
latents a clip of T frames becomes.

Long clips
----------
`map_windows` runs any per-window function on overlapping temporal windows (default 49
frames = the CogVideoX training length, at least 8 frames overlap) spread evenly over
the clip, and cross-fades the results linearly in pixel space. Every window has full
length (the last ends at the clip's end). Memory is bounded by one window.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from ..errors import InputError, ModelFileError

# --------------------------------------------------------------------------- configs

_BLOCK = "CogVideoXDownBlock3D"
_UP = "CogVideoXUpBlock3D"


def cogvideox_vae_config() -> dict:
    """The CogVideoX-2B VAE config (diffusers `AutoencoderKLCogVideoX` defaults).

    215,583,907 parameters; decoder 123,368,451; decoder.conv_out 10,371.
    """
    return dict(
        in_channels=3,
        out_channels=3,
        down_block_types=[_BLOCK] * 4,
        up_block_types=[_UP] * 4,
        block_out_channels=[128, 256, 256, 512],
        latent_channels=16,
        layers_per_block=3,
        act_fn="silu",
        norm_eps=1e-6,
        norm_num_groups=32,
        temporal_compression_ratio=4,
        sample_height=480,
        sample_width=720,
        scaling_factor=1.15258426,
        force_upcast=True,
        use_quant_conv=False,
        use_post_quant_conv=False,
    )


def tiny_vae_config() -> dict:
    """Same structure (4 blocks: 8x spatial, 4x temporal, 16 latent channels), ~0.9 M parameters."""
    cfg = cogvideox_vae_config()
    cfg.update(block_out_channels=[16, 32, 32, 32], layers_per_block=1, norm_num_groups=8)
    return cfg


# --------------------------------------------------------------------------- wrapper


class VAE(nn.Module):
    """Frozen CogVideoX VAE with frame padding, cropping and windowing.

    Attributes: `model` (the diffusers AutoencoderKLCogVideoX), `config` (dict),
    `scaling_factor`, `latent_channels`, `spatial_ratio` (8), `temporal_ratio` (4).
    All parameters have requires_grad=False; gradients still flow *through* the VAE
    (the training path needs d(output)/d(latent)).
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model.eval().requires_grad_(False)
        self.config = dict(model.config)
        self.scaling_factor = float(self.config["scaling_factor"])
        self.latent_channels = int(self.config["latent_channels"])
        self.spatial_ratio = 2 ** (len(self.config["block_out_channels"]) - 1)
        self.temporal_ratio = int(self.config["temporal_compression_ratio"])

    def train(self, mode: bool = True):  # the VAE is always frozen, in eval mode
        return super().train(False)

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def decoder(self) -> nn.Module:
        return self.model.decoder

    # ---- geometry
    def padded_frames(self, num_frames: int) -> int:
        """Frames fed to the encoder for a clip of `num_frames`: the next 1+8k."""
        step = 2 * self.temporal_ratio
        return 1 + step * math.ceil((num_frames - 1) / step)

    def latent_frames(self, num_frames: int) -> int:
        """Latent frames T' for a clip of `num_frames` frames (always odd)."""
        return 1 + (self.padded_frames(num_frames) - 1) // self.temporal_ratio

    def _check_video(self, video: torch.Tensor) -> None:
        if video.ndim != 5 or video.shape[1] != 3:
            raise InputError(f"VAE input must be [B,3,T,H,W]; got shape {tuple(video.shape)}.")
        h, w = video.shape[-2:]
        if h % self.spatial_ratio or w % self.spatial_ratio:
            raise InputError(
                f"VAE input height and width must be multiples of {self.spatial_ratio}; got {h}x{w}. "
                "Crop or resize the frames (e.g. a 256x256 face crop)."
            )

    # ---- encode / decode
    def encode(self, video: torch.Tensor, sample: bool = False, generator: torch.Generator | None = None) -> torch.Tensor:
        """video [B,3,T,H,W] in [-1,1] -> z [B,C,T',H/8,W/8] scaled by scaling_factor.

        Pads T to 1+8k by repeating the last frame. `sample=False` returns the posterior
        mean (deterministic), `sample=True` draws from it with `generator`.
        """
        self._check_video(video)
        t = video.shape[2]
        pad = self.padded_frames(t) - t
        if pad:
            video = torch.cat([video, video[:, :, -1:].expand(-1, -1, pad, -1, -1)], dim=2)
        posterior = self.model.encode(video.to(self.dtype)).latent_dist
        z = posterior.sample(generator) if sample else posterior.mode()
        size = (video.shape[-2] // self.spatial_ratio, video.shape[-1] // self.spatial_ratio)
        if tuple(z.shape[-2:]) != size:  # diffusers' tiling mis-sizes small tile layouts
            raise RuntimeError(
                f"VAE encoded a {tuple(video.shape[-2:])} frame to a {tuple(z.shape[-2:])} latent, expected {size}. "
                "Disable tiling (vae.disable_tiling()) or use tiles of at least 32 px on frames of 64 px or more."
            )
        return z * self.scaling_factor

    def decode(self, z: torch.Tensor, num_frames: int | None = None) -> torch.Tensor:
        """z [B,C,T',h,w] (scaled) -> video [B,3,T,8h,8w] in about [-1,1].

        T' must be odd (as `encode` produces). `num_frames` crops to the original length.
        """
        if z.ndim != 5 or z.shape[1] != self.latent_channels:
            raise InputError(f"latent must be [B,{self.latent_channels},T',h,w]; got {tuple(z.shape)}.")
        if z.shape[2] % 2 == 0:
            raise InputError(f"latent frame count must be odd (1+2k); got {z.shape[2]}. Use VAE.encode to make it.")
        video = self.model.decode(z.to(self.dtype) / self.scaling_factor).sample
        full = 1 + (z.shape[2] - 1) * self.temporal_ratio
        if video.shape[2] != full:  # guards against a diffusers change in temporal batching
            raise RuntimeError(f"VAE decoded {video.shape[2]} frames from {z.shape[2]} latents, expected {full}.")
        size = (z.shape[-2] * self.spatial_ratio, z.shape[-1] * self.spatial_ratio)
        if tuple(video.shape[-2:]) != size:  # diffusers' tiling can crop odd tile layouts
            raise RuntimeError(
                f"VAE decoded {tuple(video.shape[-2:])} pixels from a {tuple(z.shape[-2:])} latent, expected {size}. "
                "Disable tiling (vae.disable_tiling()) or choose a tile size that divides the frame."
            )
        return video if num_frames is None else video[:, :, :num_frames]

    def reconstruct(self, video: torch.Tensor, window_frames: int = 49, overlap_frames: int = 8) -> torch.Tensor:
        """decode(encode(video)) in overlapping windows (see `map_windows`)."""
        fn = lambda v: self.decode(self.encode(v), num_frames=v.shape[2])  # noqa: E731
        return map_windows(video, fn, window_frames, overlap_frames)

    def enable_tiling(self, tile_px: int | None = None, overlap: float | None = None) -> None:
        """Spatial tiling for frames larger than `tile_px` (diffusers' tiled encode/decode).

        Without arguments: diffusers' defaults for CogVideoX (240x360 tiles, overlap 1/6
        of the height and 1/5 of the width), the layout it was tuned on for 480x720.
        `encode`/`decode` raise if a tile layout changes the output size.
        """
        if tile_px is None and overlap is None:
            self.model.enable_tiling()
            return
        self.model.enable_tiling(
            tile_sample_min_height=tile_px,
            tile_sample_min_width=tile_px,
            tile_overlap_factor_height=overlap,
            tile_overlap_factor_width=overlap,
        )

    def disable_tiling(self) -> None:
        self.model.use_tiling = False


def window_starts(num_frames: int, window_frames: int, overlap_frames: int) -> list[int]:
    """Start frames of evenly spaced windows covering the clip, each overlapping the next by >= overlap_frames."""
    if num_frames <= window_frames:
        return [0]
    if not 0 <= overlap_frames < window_frames:
        raise InputError(f"overlap_frames must be in [0, window_frames); got {overlap_frames} with window {window_frames}.")
    n = math.ceil((num_frames - overlap_frames) / (window_frames - overlap_frames))
    return [round(i * (num_frames - window_frames) / (n - 1)) for i in range(n)]


def map_windows(
    video: torch.Tensor,
    fn: Callable[[torch.Tensor], torch.Tensor],
    window_frames: int = 49,
    overlap_frames: int = 8,
) -> torch.Tensor:
    """Apply `fn` ([B,C,t,H,W] -> same shape) on overlapping temporal windows and cross-fade.

    Windows of `window_frames` frames are spread evenly over the clip (first at 0, last
    ending at the last frame), consecutive ones overlapping by at least
    `overlap_frames`. Over the frames two neighbours share, one fades out linearly while
    the other fades in (weights sum to 1; normalised by the summed weights in case of
    triple overlaps, only possible when overlap > window/2). So a window's restart of
    the causal VAE fades in instead of showing as a seam. `fn`'s output is
    moved to the input's device, so `fn` may run on another device.
    """
    t = video.shape[2]
    starts = window_starts(t, window_frames, overlap_frames)
    if len(starts) == 1:
        return fn(video)
    def ramp(n: int) -> torch.Tensor:  # n weights rising strictly between 0 and 1
        return torch.linspace(0, 1, n + 2, device=video.device)[1:-1]

    out = weight = None
    for i, s in enumerate(starts):
        piece = fn(video[:, :, s : s + window_frames]).to(video.device, torch.float32)
        w = torch.ones(window_frames, device=video.device)
        if i > 0:  # fade in over the frames shared with the previous window
            ov = starts[i - 1] + window_frames - s
            w[:ov] = ramp(ov)
        if i < len(starts) - 1:  # fade out over the frames shared with the next window
            ov = s + window_frames - starts[i + 1]
            w[-ov:] = torch.minimum(w[-ov:], ramp(ov).flip(0))
        if out is None:
            out = torch.zeros(piece.shape[:2] + (t,) + piece.shape[3:], dtype=torch.float32, device=video.device)
            weight = torch.zeros(t, device=video.device)
        out[:, :, s : s + window_frames] += piece * w.view(1, 1, -1, 1, 1)
        weight[s : s + window_frames] += w
    return (out / weight.view(1, 1, -1, 1, 1)).to(video.dtype)


# --------------------------------------------------------------------------- key layouts

# diffusers <-> SAT (original CogVideo) names. SAT numbers decoder "up" levels from the
# lowest resolution upwards in reverse: SAT up.{3-i} is diffusers up_blocks.{i}.
_COMMON_RENAMES = [  # (diffusers fragment, SAT fragment), applied in this order
    ("conv_shortcut", "nin_shortcut"),
    ("downsamplers.0", "downsample"),
    ("upsamplers.0", "upsample"),
]


def diffusers_to_sat_keys(state_dict: dict, num_up_blocks: int = 4) -> dict:
    """Rename a diffusers AutoencoderKLCogVideoX state dict to the SAT/original layout."""
    out = {}
    for key, value in state_dict.items():
        k = key
        k = re.sub(r"^(encoder|decoder)\.mid_block\.resnets\.(\d+)\.", lambda m: f"{m[1]}.mid.block_{int(m[2]) + 1}.", k)
        k = re.sub(r"^encoder\.down_blocks\.(\d+)\.", r"encoder.down.\1.", k)
        k = re.sub(r"^decoder\.up_blocks\.(\d+)\.", lambda m: f"decoder.up.{num_up_blocks - 1 - int(m[1])}.", k)
        k = k.replace(".resnets.", ".block.")
        for d, s in _COMMON_RENAMES:
            k = k.replace(d, s)
        out[k] = value
    return out


def sat_to_diffusers_keys(state_dict: dict, num_up_blocks: int = 4) -> dict:
    """Rename a SAT/original CogVideoX VAE state dict to diffusers keys (drops `loss.*`)."""
    out = {}
    for key, value in state_dict.items():
        if key.startswith("loss."):  # discriminator / LPIPS weights of the VAE's own training
            continue
        k = key
        k = re.sub(r"^(encoder|decoder)\.mid\.block_(\d+)\.", lambda m: f"{m[1]}.mid_block.resnets.{int(m[2]) - 1}.", k)
        k = re.sub(r"^encoder\.down\.(\d+)\.", r"encoder.down_blocks.\1.", k)
        k = re.sub(r"^decoder\.up\.(\d+)\.", lambda m: f"decoder.up_blocks.{num_up_blocks - 1 - int(m[1])}.", k)
        k = k.replace(".block.", ".resnets.")
        for d, s in _COMMON_RENAMES:
            k = k.replace(s, d)
        out[k] = value
    return out


_PREFIXES = ("first_stage_model.", "vae.", "model.")


def _strip_prefixes(sd: dict) -> dict:
    for prefix in _PREFIXES:
        if any(k.startswith(prefix + "encoder.") for k in sd):
            sd = {k[len(prefix) :]: v for k, v in sd.items() if k.startswith(prefix)}
    return sd


def _is_sat_layout(sd: dict) -> bool:
    return any(k.startswith(("encoder.down.", "decoder.up.", "encoder.mid.block_")) for k in sd)


# --------------------------------------------------------------------------- loading

_VAE_HELP = "put cogvideox_vae.safetensors (the CogVideoX-2B VAE) in ComfyUI/models/vae"


def _read_safetensors(path: Path) -> tuple[dict, dict]:
    from safetensors import safe_open
    from safetensors.torch import load_file

    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
        return load_file(str(path)), metadata
    except Exception as exc:  # safetensors raises several types for truncated/corrupt headers
        raise ModelFileError(
            f"Could not read {path}: {exc}. The file is truncated or corrupt (an interrupted download?); "
            f"download it again. {_VAE_HELP}."
        ) from exc


def _infer_config(sd: dict, base: dict | None = None) -> dict:
    """Rebuild the diffusers config from weight shapes (diffusers keys)."""
    cfg = dict(base or cogvideox_vae_config())
    down = sorted({int(m[1]) for k in sd if (m := re.match(r"encoder\.down_blocks\.(\d+)\.", k))})
    channels = [sd[f"encoder.down_blocks.{i}.resnets.0.conv1.conv.weight"].shape[0] for i in down]
    layers = 1 + max(int(m[1]) for k in sd if (m := re.match(r"encoder\.down_blocks\.0\.resnets\.(\d+)\.", k)))
    latent = sd["decoder.conv_in.conv.weight"].shape[1]
    cfg.update(
        block_out_channels=channels,
        layers_per_block=layers,
        latent_channels=latent,
        down_block_types=[_BLOCK] * len(channels),
        up_block_types=[_UP] * len(channels),
        use_quant_conv="quant_conv.weight" in sd,
        use_post_quant_conv="post_quant_conv.weight" in sd,
    )
    if base is None:
        # GroupNorm groups are not visible in shapes; CogVideoX uses 32, our tiny config 8.
        cfg["norm_num_groups"] = 32 if min(channels) % 32 == 0 and min(channels) >= 64 else 8
        # Scaling factor: CogVideoX-2B's unless the file says otherwise (metadata).
    return cfg


def _build_from_config(cfg: dict, meta: bool):
    from diffusers import AutoencoderKLCogVideoX

    known = set(cogvideox_vae_config()) | {"shift_factor", "latents_mean", "latents_std", "invert_scale_latents"}
    kwargs = {k: v for k, v in cfg.items() if k in known}
    if meta:
        with torch.device("meta"):
            return AutoencoderKLCogVideoX(**kwargs)
    return AutoencoderKLCogVideoX(**kwargs)


def build_vae(config: dict | None = None, dtype: torch.dtype = torch.float32, device="cpu", seed: int = 0) -> VAE:
    """A VAE with random weights (tests, benchmarks, or the start of make_tiny_vae)."""
    torch.manual_seed(seed)
    with torch.device(device):  # initialise directly on the target device (fast for the full model on a GPU)
        model = _build_from_config(config or cogvideox_vae_config(), meta=False)
    return VAE(nn.Module.to(model, device=device, dtype=dtype))  # nn.Module.to: skip diffusers' upcast warning


def load_vae(path, dtype: torch.dtype = torch.float32, device="cpu", scaling_factor: float | None = None) -> VAE:
    """Load the CogVideoX VAE from a .safetensors file or a diffusers folder.

    Raises ModelFileError for: a missing path, a truncated/corrupt file, a Stable
    Diffusion (2D) VAE, a file that is not a VAE, missing or unexpected keys, or shapes
    that do not match. Weights are created on the meta device and assigned directly, so
    loading costs one read of the file. `scaling_factor` overrides the latent scale (a
    bare SAT file does not store it; the default is CogVideoX-2B's 1.15258426, the 5B
    and 1.5 VAEs use 0.7).
    """
    path = Path(path)
    if not path.exists():
        raise ModelFileError(f"VAE file not found: {path}. {_VAE_HELP}.")
    config_base = None
    if path.is_dir():
        cfg_file = path / "config.json"
        candidates = [path / "diffusion_pytorch_model.safetensors", path / "vae" / "diffusion_pytorch_model.safetensors"]
        weights = next((c for c in candidates if c.exists()), None)
        if weights is None:
            raise ModelFileError(f"{path} is a folder without diffusion_pytorch_model.safetensors. {_VAE_HELP}.")
        if not cfg_file.exists():
            cfg_file = weights.parent / "config.json"
        if cfg_file.exists():
            config_base = json.loads(cfg_file.read_text())
        path = weights
    if path.suffix != ".safetensors":
        raise ModelFileError(
            f"{path.name} is not a .safetensors file. PhysioLatent never loads pickled checkpoints (.ckpt/.pt/.bin); "
            f"convert it to safetensors or {_VAE_HELP}."
        )
    sd, metadata = _read_safetensors(path)
    sd = _strip_prefixes(sd)
    if _is_sat_layout(sd):
        sd = sat_to_diffusers_keys(sd)
    _check_is_cogvideox(sd, path)
    if config_base is None and "config" in metadata:
        config_base = json.loads(metadata["config"])
    cfg = _infer_config(sd, config_base)
    if scaling_factor is not None:
        cfg["scaling_factor"] = float(scaling_factor)
    model = _build_from_config(cfg, meta=True)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(sd))
    unexpected = sorted(set(sd) - set(expected))
    if missing or unexpected:
        raise ModelFileError(
            f"{path.name} does not match the CogVideoX VAE layout: {len(missing)} missing keys "
            f"(e.g. {missing[:3]}), {len(unexpected)} unexpected keys (e.g. {unexpected[:3]}). "
            f"Is it a different model or an incomplete export? {_VAE_HELP}."
        )
    bad = [k for k in expected if tuple(expected[k].shape) != tuple(sd[k].shape)]
    if bad:
        k = bad[0]
        raise ModelFileError(
            f"{path.name}: {len(bad)} tensors have unexpected shapes (e.g. {k}: {tuple(sd[k].shape)} vs "
            f"{tuple(expected[k].shape)}). {_VAE_HELP}."
        )
    sd = {k: v.to(dtype) if v.is_floating_point() else v for k, v in sd.items()}
    model.load_state_dict(sd, strict=True, assign=True)
    return VAE(nn.Module.to(model, device=device, dtype=dtype))  # nn.Module.to: skip diffusers' upcast warning


def _check_is_cogvideox(sd: dict, path: Path) -> None:
    """Recognise common wrong files and say what to do."""
    if not any(k.startswith("decoder.") for k in sd) or not any(k.startswith("encoder.") for k in sd):
        sample = sorted(sd)[:3]
        raise ModelFileError(
            f"{path.name} is not a VAE (no encoder/decoder weights; first keys {sample}). {_VAE_HELP}."
        )
    conv_in = sd.get("encoder.conv_in.conv.weight", sd.get("encoder.conv_in.weight"))
    if conv_in is not None and conv_in.ndim == 4:
        raise ModelFileError(
            f"{path.name} is a Stable Diffusion 2D VAE (4-D conv weights), PhysioLatent needs the CogVideoX 3D "
            f"causal VAE, {_VAE_HELP}."
        )
    if "encoder.conv_in.conv.weight" not in sd:
        raise ModelFileError(
            f"{path.name} is a VAE, but not the CogVideoX 3D causal VAE (no encoder.conv_in.conv.weight; "
            f"first keys {sorted(sd)[:3]}). {_VAE_HELP}."
        )


def save_vae(vae: VAE, path) -> None:
    """Write the VAE as one .safetensors file with diffusers keys and its config in the metadata."""
    from safetensors.torch import save_file

    sd = {k: v.detach().contiguous().cpu() for k, v in vae.model.state_dict().items()}
    cfg = {k: (list(v) if isinstance(v, tuple) else v) for k, v in vae.config.items() if not k.startswith("_")}
    from ..atomic import atomic_path

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        save_file(sd, str(tmp), metadata={"config": json.dumps(cfg), "format": "diffusers-AutoencoderKLCogVideoX"})


def vae_fingerprint(vae: VAE) -> str:
    """Short hash of the VAE's structural config and a few weight tensors.

    Two VAEs with the same fingerprint have the same architecture, scaling factor and
    (with overwhelming probability) the same weights. It does not depend on dtype: it
    hashes 4-significant-digit sums of |w| and w^2 over a few tensors (computed in
    float64), which fp32, fp16 and bf16 copies of the same weights share.
    """
    keys = ("block_out_channels", "latent_channels", "layers_per_block", "temporal_compression_ratio", "scaling_factor")
    cfg = {k: list(vae.config[k]) if isinstance(vae.config[k], (list, tuple)) else vae.config[k] for k in keys}
    parts = [json.dumps(cfg, sort_keys=True)]
    sd = vae.model.state_dict()
    for name in ("encoder.conv_in.conv.weight", "encoder.conv_out.conv.weight", "decoder.conv_in.conv.weight", "decoder.conv_out.conv.weight"):
        t = sd[name].detach().double()
        parts.append(f"{name}:{t.abs().sum().item():.4g}:{t.square().sum().item():.4g}")
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]
