"""HR conditioning: target heart rate (bpm) -> condition vector c [B, dim].

The paper embeds the prompt "Heart rate {hr} bpm" with a frozen CLIP text encoder and
a trainable projection. It says the model does not interpolate to HR values not seen
in training (e.g. 75 bpm), which is what a text embedding of discrete prompts gives.
We offer three modes:

* ``"clip"``    the paper: frozen `CLIPTextModel` (CLIP ViT-L/14 text tower, config in
                code) on "Heart rate {hr} bpm"; we use the **pooled** output (the EOS
                token's final hidden state, 768-d): the fusion network concatenates c
                broadcast over (T, h, w) and FiLM/AdaLN take one vector, so a token
                sequence would need cross-attention the paper does not describe.
                -> LayerNorm -> Linear -> SiLU -> Linear -> c.
* ``"numeric"`` Fourier features of bpm at log-spaced frequencies -> MLP -> c. Smooth in
                HR, so it can interpolate between training targets.
* ``"both"``    the sum of the two projections.

Removal mode ("remove the pulse") is a learned condition: a trainable vector
`remove_embedding` [dim] replaces c for the samples whose `remove` flag is set (the HR
value is ignored for them). It starts at zero, like every other untrained condition.

Public API
----------
HRConditioner(mode="numeric", dim=256, clip_model=None, tokenizer=None,
              clip_path=None, tokenizer_path=None, num_frequencies=16, hidden=256)
    forward(hr_bpm [B] float tensor, remove: bool | [B] bool tensor = False) -> c [B, dim]
    prompt(hr_bpm: float) -> str                "Heart rate 90 bpm"
clip_l_text_config() -> transformers.CLIPTextConfig
load_clip_text_model(path, dtype=torch.float32, device="cpu") -> CLIPTextModel (frozen)
load_clip_tokenizer(tokenizer_path=None, clip_path=None) -> tokenizer
check_hr_bpm(hr_bpm) raises InputError outside 30-240 bpm

The frozen CLIP model is *not* a registered submodule: it is not in the adapter's
state_dict (it comes from the user's own clip_l.safetensors) and `.to()` on the
adapter does not move it; its pooled outputs are cached per prompt.

Tokenizer: transformers' `CLIPTokenizer` needs CLIP's BPE files (vocab.json +
merges.txt, as in the `openai/clip-vit-large-patch14` repository or ComfyUI's
`comfy/sd1_tokenizer/` folder). Looked up in order: `tokenizer_path`, the environment
variable PHYSIOLATENT_CLIP_TOKENIZER, a folder `clip_l_tokenizer/` beside the CLIP
weights file, `$COMFYUI_PATH/comfy/sd1_tokenizer`. Inside ComfyUI the node passes its
own tokenizer (`tokenizer=`): any callable like a Hugging Face tokenizer works.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch
from torch import nn

from ..errors import InputError, ModelFileError

HR_MIN_BPM, HR_MAX_BPM = 30.0, 240.0
MODES = ("clip", "numeric", "both")


def check_hr_bpm(hr_bpm) -> None:
    """Raise InputError if any HR is outside the physiological range 30-240 bpm."""
    t = torch.as_tensor(hr_bpm, dtype=torch.float64)
    if not torch.isfinite(t).all() or (t < HR_MIN_BPM).any() or (t > HR_MAX_BPM).any():
        raise InputError(
            f"target HR must be between {HR_MIN_BPM:.0f} and {HR_MAX_BPM:.0f} bpm; got {t.tolist()}. "
            "Pass a heart rate in beats per minute (e.g. 75), not Hz."
        )


def clip_l_text_config():
    """CLIP ViT-L/14 text tower (the text encoder of SD 1.x and of ComfyUI's clip_l)."""
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        vocab_size=49408,
        hidden_size=768,
        intermediate_size=3072,
        num_hidden_layers=12,
        num_attention_heads=12,
        max_position_embeddings=77,
        hidden_act="quick_gelu",
        layer_norm_eps=1e-5,
        projection_dim=768,
        bos_token_id=49406,
        eos_token_id=49407,
        pad_token_id=49407,
    )


_CLIP_HELP = "put clip_l.safetensors (CLIP ViT-L/14 text encoder) in ComfyUI/models/text_encoders"


def load_clip_text_model(path, dtype: torch.dtype = torch.float32, device="cpu", config=None):
    """Frozen transformers CLIPTextModel from a local safetensors file.

    Accepts Hugging Face keys (`text_model.…`) with any of the prefixes ComfyUI's files
    use (`clip_l.transformer.`, `cond_stage_model.transformer.`, `transformer.`, …).
    `text_projection` / `logit_scale` entries are ignored (we use the pooled output).
    """
    from safetensors.torch import load_file
    from transformers import CLIPTextModel

    path = Path(path) if path is not None else None
    if path is None or not path.is_file():
        raise ModelFileError(f"CLIP text encoder file not found: {path}. {_CLIP_HELP}, or use hr_mode='numeric'.")
    try:
        sd = load_file(str(path))
    except Exception as exc:
        raise ModelFileError(f"Could not read {path}: {exc}. The file is truncated or corrupt; download it again.") from exc
    marker = "text_model."
    prefixes = {k[: k.index(marker)] for k in sd if marker in k}
    if len(prefixes) != 1:
        raise ModelFileError(
            f"{path.name} does not look like a CLIP text encoder (no single 'text_model.' key prefix; found "
            f"{sorted(prefixes)[:3]}). {_CLIP_HELP}."
        )
    prefix = prefixes.pop() + marker
    sd = {k[len(prefix) :]: v for k, v in sd.items() if k.startswith(prefix)}  # "embeddings.…", "encoder.…"
    config = config or clip_l_text_config()
    with torch.device("meta"):
        model = CLIPTextModel(config)
    expected = model.state_dict()
    # transformers 4 names the keys "text_model.…", transformers 5 drops that level
    model_prefix = marker if any(k.startswith(marker) for k in expected) else ""
    sd = {model_prefix + k: v for k, v in sd.items()}
    skip = {model_prefix + "embeddings.position_ids"}
    missing = sorted(set(expected) - set(sd) - skip)
    bad = [k for k in expected if k in sd and tuple(sd[k].shape) != tuple(expected[k].shape)]
    if missing or bad:
        raise ModelFileError(
            f"{path.name} is not a CLIP ViT-L/14 text encoder: {len(missing)} missing keys (e.g. {missing[:3]}), "
            f"{len(bad)} with other shapes (e.g. {bad[:3]}). {_CLIP_HELP}."
        )
    sd = {k: v.to(dtype) for k, v in sd.items() if k in expected and k not in skip}
    model.load_state_dict(sd, strict=False, assign=True)
    # position_ids is a non-persistent buffer in recent transformers: rebuild it off the meta device
    emb = model.text_model.embeddings if hasattr(model, "text_model") else model.embeddings
    if hasattr(emb, "position_ids"):
        emb.position_ids = torch.arange(config.max_position_embeddings).unsqueeze(0)
    return model.to(device).eval().requires_grad_(False)


def load_clip_tokenizer(tokenizer_path=None, clip_path=None):
    """transformers CLIPTokenizer from a folder holding vocab.json + merges.txt (see module doc)."""
    from transformers import CLIPTokenizer

    candidates = [tokenizer_path, os.environ.get("PHYSIOLATENT_CLIP_TOKENIZER")]
    if clip_path is not None:
        candidates.append(Path(clip_path).parent / "clip_l_tokenizer")
    if os.environ.get("COMFYUI_PATH"):
        candidates.append(Path(os.environ["COMFYUI_PATH"]) / "comfy" / "sd1_tokenizer")
    tried = []
    for c in candidates:
        if not c:
            continue
        folder = Path(c)
        tried.append(str(folder))
        if (folder / "vocab.json").is_file() and (folder / "merges.txt").is_file():
            return CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"))
    raise ModelFileError(
        "CLIP tokenizer files (vocab.json + merges.txt) not found; looked in "
        f"{tried or ['(nothing configured)']}. Put them in a folder 'clip_l_tokenizer' beside clip_l.safetensors "
        "(copy them from ComfyUI/comfy/sd1_tokenizer or openai/clip-vit-large-patch14), or set "
        "PHYSIOLATENT_CLIP_TOKENIZER to that folder, or use hr_mode='numeric'."
    )


class FourierHR(nn.Module):
    """bpm [B] -> [B, 2F+1]: sin/cos of 2*pi*f_k*(bpm/60) at log-spaced f_k, plus a centred linear term.

    Frequencies span 1/8 .. 8 cycles per "Hz of HR" so that coarse and fine HR
    differences are both visible to the MLP.
    """

    def __init__(self, num_frequencies: int = 16):
        super().__init__()
        self.register_buffer("freqs", torch.logspace(math.log10(1 / 8), math.log10(8), num_frequencies), persistent=False)

    def forward(self, hr_bpm: torch.Tensor) -> torch.Tensor:
        x = (hr_bpm.float() / 60.0)[:, None]  # HR in Hz, [B,1]
        angles = 2 * math.pi * x * self.freqs
        return torch.cat([angles.sin(), angles.cos(), x - 1.5], dim=-1)


def _mlp(d_in: int, hidden: int, d_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, hidden), nn.SiLU(), nn.Linear(hidden, d_out))


class HRConditioner(nn.Module):
    """Target HR (and remove flag) -> condition c [B, dim]. See the module docstring."""

    def __init__(
        self,
        mode: str = "numeric",
        dim: int = 256,
        clip_model: nn.Module | None = None,
        tokenizer=None,
        clip_path=None,
        tokenizer_path=None,
        num_frequencies: int = 16,
        hidden: int = 256,
        clip_dim: int = 768,
    ):
        super().__init__()
        if mode not in MODES:
            raise InputError(f"HR conditioning mode must be one of {MODES}; got {mode!r}.")
        self.mode, self.dim = mode, dim
        if mode in ("numeric", "both"):
            self.fourier = FourierHR(num_frequencies)
            self.numeric = _mlp(2 * num_frequencies + 1, hidden, dim)
        if mode in ("clip", "both"):
            if clip_model is None:
                clip_model = load_clip_text_model(clip_path)
            if tokenizer is None:
                tokenizer = load_clip_tokenizer(tokenizer_path, clip_path)
            clip_dim = clip_model.config.hidden_size
            self.clip_proj = nn.Sequential(nn.LayerNorm(clip_dim), _mlp(clip_dim, hidden, dim))
            # not registered: frozen, user-provided, never saved in the adapter
            self._frozen = (clip_model.eval().requires_grad_(False), tokenizer)
            self._cache: dict[str, torch.Tensor] = {}
        self.remove_embedding = nn.Parameter(torch.zeros(dim))

    @staticmethod
    def prompt(hr_bpm: float) -> str:
        """The paper's prompt template (integer bpm, as in its figures)."""
        return f"Heart rate {round(float(hr_bpm))} bpm"

    @torch.no_grad()
    def clip_embedding(self, prompts: list[str]) -> torch.Tensor:
        """Pooled CLIP output [B, clip_dim] (float32, on CLIP's device), cached per prompt."""
        model, tokenizer = self._frozen
        todo = [p for p in dict.fromkeys(prompts) if p not in self._cache]
        if todo:
            device = next(model.parameters()).device
            ids = tokenizer(todo, padding="max_length", max_length=model.config.max_position_embeddings,
                            truncation=True, return_tensors="pt")["input_ids"].to(device)
            pooled = model(input_ids=ids).pooler_output.float()
            self._cache.update(zip(todo, pooled))
        return torch.stack([self._cache[p] for p in prompts])

    def forward(self, hr_bpm: torch.Tensor, remove: bool | torch.Tensor = False) -> torch.Tensor:
        """hr_bpm [B] (bpm, 30-240) and remove flags -> c [B, dim] (float32, on this module's device)."""
        hr_bpm = torch.as_tensor(hr_bpm, dtype=torch.float32, device=self.remove_embedding.device).reshape(-1)
        remove = torch.as_tensor(remove, dtype=torch.bool, device=hr_bpm.device).expand(hr_bpm.shape[0])
        # removal samples ignore their HR: give them a valid placeholder before the range check
        hr_bpm = torch.where(remove, torch.full_like(hr_bpm, 60.0), hr_bpm)
        check_hr_bpm(hr_bpm)
        c = torch.zeros(hr_bpm.shape[0], self.dim, device=hr_bpm.device)
        if self.mode in ("numeric", "both"):
            c = c + self.numeric(self.fourier(hr_bpm))
        if self.mode in ("clip", "both"):
            emb = self.clip_embedding([self.prompt(h) for h in hr_bpm.tolist()]).to(hr_bpm.device)
            c = c + self.clip_proj(emb)
        return torch.where(remove[:, None], self.remove_embedding.expand_as(c), c)
