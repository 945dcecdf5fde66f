"""Train the PhysioLatent adapter (fusion + conditioner + FiLM + conv_out) on face clips.

    python -m physiolatent_core train --config cfg.json [--steps 2000 --lr 3e-4 ...]

One step: a batch of face-cropped windows ``v`` [B,3,T,S,S] in [-1,1] and their skin
masks ``M``; targets drawn from the paper's discrete set (or uniform); ``v̂ = M·model(v,
hr) + (1−M)·v`` (the paper composites the decoder output into the face region);
``PhysioLoss(v̂, v, M, hr, fps, step, remove)``; AdamW on the adapter's parameters only
(the VAE and CLIP stay frozen).

Outputs in ``out_dir``:
    config.json                     the resolved TrainConfig
    checkpoints/step_XXXXXXX/       adapter.safetensors (save_adapter format),
                                    optimizer.safetensors (AdamW state + torch RNG),
                                    state.json (step, numpy RNG state)  — no pickle anywhere
    log.csv                         one row per step: losses, β, lr, seconds
    adapter.safetensors             the final adapter
    losses.png                      loss curves (matplotlib)
Checkpoint folders are written under a temporary name and renamed when complete, so
``--resume`` (on by default) always finds a whole checkpoint: the latest one.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import shutil
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch

from .atomic import atomic_path
from .errors import InputError, ModelFileError

__all__ = [
    "TrainConfig",
    "Trainer",
    "add_train_arguments",
    "build_model",
    "latest_checkpoint",
    "load_config",
    "main_train",
    "train",
]


@dataclass
class TrainConfig:
    """Everything a run needs; a JSON file with any subset of these keys, then CLI flags, override the defaults."""

    # data
    dataset: str = "synthetic"  # ubfc | pure | mmpd | folder | synthetic
    data_root: str | None = None
    synthetic_subjects: int = 4
    synthetic_duration_s: float = 6.0
    synthetic_fps: float = 16.0
    synthetic_render_size: int = 64
    synthetic_hr_range_bpm: tuple[float, float] = (55.0, 110.0)
    num_frames: int = 49  # per window; the VAE wants 1+8k for exact crops (see model/vae.py)
    size: int = 64  # face crop side, multiple of 8
    crop: str = "face"  # face | center | none
    max_windows_per_clip: int | None = None
    val_frac: float = 0.1
    test_frac: float = 0.2
    split_seed: int = 0
    target_mode: str = "discrete"  # discrete (paper) | uniform
    target_choices_bpm: tuple[float, ...] = (60.0, 70.0, 80.0, 90.0, 100.0, 110.0, 120.0)
    target_range_bpm: tuple[float, float] = (40.0, 180.0)
    remove_prob: float = 0.0  # fraction of steps trained in removal mode
    # model
    vae: str | None = None  # VAE weights file; None = randomly initialised VAE of vae_config (tests only)
    vae_config: str = "tiny"  # tiny | cogvideox (only used when vae is None)
    adapter_config: str = "tiny"  # tiny | base
    hr_mode: str = "numeric"  # numeric | clip | both
    clip_path: str | None = None
    tokenizer_path: str | None = None
    # optimisation
    steps: int = 1000
    batch_size: int = 1
    lr: float = 3e-4
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda[:i]
    amp: str = "auto"  # auto (bf16 on CUDA, off on CPU) | bf16 | off
    grad_checkpointing: bool = False  # VAE decoder (saves memory on long/large clips, costs ~30% time)
    # losses (paper §3; the weights are ours, the paper gives none)
    alpha: float = 1.0
    beta_max: float = 1.0
    beta_start: int = 0
    beta_length: int = 500
    beta_shape: str = "linear"
    lam: float = 1.0
    lpips_weight: float = 1.0
    lpips_net: str = "alex"
    band_bpm: tuple[float, float] = (40.0, 180.0)
    freq_temperature: float = 0.05
    # bookkeeping
    out_dir: str = "runs/physiolatent"
    save_every: int = 500
    val_every: int = 0  # steps between validation passes (0 = never); results in val.csv
    val_windows: int = 8  # at most this many validation windows per pass
    keep_checkpoints: int = 3
    resume: bool = True
    plots: bool = True
    progress: bool = True

    def validate(self) -> None:
        if self.size % 8:
            raise InputError(f"size must be a multiple of 8 (VAE); got {self.size}.")
        if self.num_frames < 9:
            raise InputError(f"num_frames must be at least 9 (two latent frames); got {self.num_frames}.")
        if self.steps < 0 or self.batch_size < 1:
            raise InputError(f"steps must be >= 0 and batch_size >= 1; got {self.steps}, {self.batch_size}.")
        if self.amp not in ("auto", "bf16", "off"):
            raise InputError(f"amp must be auto, bf16 or off; got {self.amp!r}.")
        if not 0 <= self.remove_prob <= 1:
            raise InputError(f"remove_prob must be in [0, 1]; got {self.remove_prob}.")
        if self.dataset != "synthetic" and not self.data_root:
            raise InputError(f"dataset {self.dataset!r} needs data_root (the folder that holds it).")


def load_config(path=None, overrides: dict | None = None) -> TrainConfig:
    """TrainConfig from defaults, then a JSON file, then ``overrides`` (None values are ignored)."""
    values: dict = {}
    if path is not None:
        try:
            values.update(json.loads(Path(path).read_text()))
        except (OSError, json.JSONDecodeError) as exc:
            raise InputError(f"could not read the training config {path}: {exc}.") from exc
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    known = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise InputError(f"unknown training config keys {unknown}; valid keys: {sorted(known)}.")
    for f in fields(TrainConfig):  # JSON lists -> tuples where the default is a tuple
        if f.name in values and isinstance(values[f.name], list):
            values[f.name] = tuple(values[f.name])
    cfg = TrainConfig(**values)
    cfg.validate()
    return cfg


# --------------------------------------------------------------------------- building blocks


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device {name!r} asked for but CUDA is not available; use --device cpu.")
    return dev


def build_model(cfg: TrainConfig, device: torch.device):
    """(PhysioLatent model, VAE) per the config. The adapter starts as the identity (model/)."""
    from .model import (  # noqa: PLC0415 - heavy
        PhysioLatent,
        PhysioLatentAdapter,
        adapter_config_base,
        adapter_config_tiny,
        build_vae,
        cogvideox_vae_config,
        load_vae,
        tiny_vae_config,
    )

    if cfg.vae:
        vae = load_vae(cfg.vae, device=device)
    else:
        vae_cfg = {"tiny": tiny_vae_config, "cogvideox": cogvideox_vae_config}.get(cfg.vae_config)
        if vae_cfg is None:
            raise InputError(f"vae_config must be 'tiny' or 'cogvideox'; got {cfg.vae_config!r}.")
        vae = build_vae(vae_cfg(), device=device, seed=cfg.seed)
    make_adapter_cfg = {"tiny": adapter_config_tiny, "base": adapter_config_base}.get(cfg.adapter_config)
    if make_adapter_cfg is None:
        raise InputError(f"adapter_config must be 'tiny' or 'base'; got {cfg.adapter_config!r}.")
    clip_model = None
    if cfg.hr_mode in ("clip", "both"):
        from .model import load_clip_text_model  # noqa: PLC0415

        if not cfg.clip_path:
            raise ModelFileError(f"hr_mode={cfg.hr_mode!r} needs clip_path (a CLIP-L text encoder .safetensors).")
        clip_model = load_clip_text_model(cfg.clip_path, device=device)
    adapter = PhysioLatentAdapter(
        make_adapter_cfg(cfg.hr_mode), vae, clip_model=clip_model, clip_path=cfg.clip_path,
        tokenizer_path=cfg.tokenizer_path,
    ).to(device)
    if cfg.grad_checkpointing:
        vae.model.enable_gradient_checkpointing()
    return PhysioLatent(vae, adapter), vae


def build_datasets(cfg: TrainConfig):
    """(train, val) WindowDatasets; splits are by subject."""
    from .data import WindowDataset, read_dataset, split_clips  # noqa: PLC0415

    if cfg.dataset == "synthetic":
        side = cfg.synthetic_render_size
        clips = read_dataset(
            "synthetic", n_subjects=cfg.synthetic_subjects, duration_s=cfg.synthetic_duration_s,
            fps=cfg.synthetic_fps, size=(side, side), hr_range_bpm=cfg.synthetic_hr_range_bpm, seed=cfg.seed,
        )
    else:
        clips = read_dataset(cfg.dataset, cfg.data_root)
    train_clips, val_clips, _ = split_clips(clips, cfg.val_frac, cfg.test_frac, cfg.split_seed)
    make = lambda cs: WindowDataset(  # noqa: E731
        cs, cfg.num_frames, cfg.size, cfg.crop, max_windows_per_clip=cfg.max_windows_per_clip
    )
    return make(train_clips), (make(val_clips) if val_clips else None)


def collate(items: list[dict]) -> dict:
    """Stack windows; all must share one fps (the loss's frequency axis)."""
    fps = np.array([it["fps"] for it in items])
    if np.ptp(fps) > 0.02 * fps.mean():
        raise InputError(f"a batch mixes frame rates {sorted(set(fps.round(2)))}; resample the clips to one fps.")
    return {
        "video": torch.stack([it["video"] for it in items]),
        "mask": torch.stack([it["mask"] for it in items]),
        "fps": float(fps.mean()),
        "source_hr_bpm": torch.tensor([it["source_hr_bpm"] for it in items]),
    }


# --------------------------------------------------------------------------- checkpoints (no pickle)


def _optimizer_to_tensors(opt: torch.optim.Optimizer) -> tuple[dict, dict]:
    """AdamW state_dict -> (flat tensors for safetensors, JSON-able rest)."""
    sd = opt.state_dict()
    tensors, scalars = {}, {}
    for idx, st in sd["state"].items():
        for key, val in st.items():
            if torch.is_tensor(val):
                tensors[f"state.{idx}.{key}"] = val.detach().contiguous().cpu()
            else:
                scalars[f"{idx}.{key}"] = val
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def _optimizer_from_tensors(tensors: dict, meta: dict) -> dict:
    state: dict = {}
    for name, val in tensors.items():
        if not name.startswith("state."):
            continue
        _, idx, key = name.split(".", 2)
        state.setdefault(int(idx), {})[key] = val
    for name, val in meta.get("scalars", {}).items():
        idx, key = name.split(".", 1)
        state.setdefault(int(idx), {})[key] = val
    return {"state": state, "param_groups": meta["param_groups"]}


def save_checkpoint(run_dir: Path, step: int, model, optimizer, rng: np.random.Generator, keep: int = 3) -> Path:
    """Write checkpoints/step_XXXXXXX atomically (temp folder, then rename); prune old ones."""
    from safetensors.torch import save_file  # noqa: PLC0415

    from .model import save_adapter  # noqa: PLC0415

    ckpt_root = run_dir / "checkpoints"
    final = ckpt_root / f"step_{step:07d}"
    ckpt_root.mkdir(parents=True, exist_ok=True)
    with atomic_path(final) as tmp:  # a folder: the checkpoint appears whole or not at all
        tmp.mkdir()
        save_adapter(tmp / "adapter.safetensors", model.adapter, model.vae)
        tensors, meta = _optimizer_to_tensors(optimizer)
        tensors["rng.torch_cpu"] = torch.get_rng_state()
        if torch.cuda.is_available():
            tensors["rng.torch_cuda"] = torch.cuda.get_rng_state()
        save_file(tensors, str(tmp / "optimizer.safetensors"), metadata={"meta": json.dumps(meta)})
        (tmp / "state.json").write_text(json.dumps({"step": step, "numpy_rng": rng.bit_generator.state}))
    for old in sorted(ckpt_root.glob("step_*"))[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return final


def latest_checkpoint(run_dir) -> Path | None:
    """The newest complete checkpoint folder of a run, or None."""
    done = sorted(p for p in (Path(run_dir) / "checkpoints").glob("step_*") if (p / "state.json").exists())
    return done[-1] if done else None


def load_checkpoint(path: Path, model, optimizer, rng: np.random.Generator) -> int:
    """Restore adapter weights, optimizer, RNGs from a checkpoint folder; returns its step."""
    from safetensors import safe_open  # noqa: PLC0415
    from safetensors.torch import load_file  # noqa: PLC0415

    try:
        adapter_sd = load_file(str(path / "adapter.safetensors"))
        tensors = load_file(str(path / "optimizer.safetensors"))
        with safe_open(str(path / "optimizer.safetensors"), framework="pt") as f:
            meta = json.loads((f.metadata() or {})["meta"])
        state = json.loads((path / "state.json").read_text())
    except (OSError, KeyError, json.JSONDecodeError, Exception) as exc:
        raise ModelFileError(f"checkpoint {path} is incomplete or corrupt ({exc}); delete it to resume from an older one.") from exc
    model.adapter.load_state_dict(adapter_sd)
    optimizer.load_state_dict(_optimizer_from_tensors(tensors, meta))
    torch.set_rng_state(tensors["rng.torch_cpu"])
    if "rng.torch_cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors["rng.torch_cuda"])
    rng.bit_generator.state = state["numpy_rng"]
    return int(state["step"])


# --------------------------------------------------------------------------- the loop


LOG_FIELDS = ["step", "total", "fidelity", "wave", "freq", "removal", "beta", "lr", "remove", "target_hr_bpm", "seconds"]


@dataclass
class Trainer:
    """Holds the model, data, loss and optimizer of one run; ``run()`` trains to ``cfg.steps``."""

    cfg: TrainConfig
    model: object = None
    train_set: object = None
    val_set: object = None
    history: list = field(default_factory=list)

    def __post_init__(self):
        from .losses import PhysioLoss, make_lpips  # noqa: PLC0415

        cfg = self.cfg
        cfg.validate()
        torch.manual_seed(cfg.seed)
        self.device = resolve_device(cfg.device)
        self.rng = np.random.default_rng(cfg.seed)
        if self.model is None:
            self.model, _ = build_model(cfg, self.device)
        self.model.to(self.device)
        if self.train_set is None:
            self.train_set, self.val_set = build_datasets(cfg)
        lpips_fn = make_lpips(cfg.lpips_net, self.device) if cfg.lpips_weight > 0 else None
        self.loss = PhysioLoss(
            alpha=cfg.alpha, beta_max=cfg.beta_max, beta_start=cfg.beta_start, beta_length=cfg.beta_length,
            lam=cfg.lam, lpips_weight=cfg.lpips_weight, lpips_fn=lpips_fn, beta_shape=cfg.beta_shape,
            band_bpm=tuple(cfg.band_bpm), freq_temperature=cfg.freq_temperature,
        )
        params = self.model.trainable_parameters()
        if not params:
            raise InputError("the adapter has no trainable parameters.")
        self.optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        use_bf16 = cfg.amp == "bf16" or (cfg.amp == "auto" and self.device.type == "cuda")
        self.autocast_dtype = torch.bfloat16 if use_bf16 else None
        self.run_dir = Path(cfg.out_dir)
        self.step = 0

    def _autocast(self):
        if self.autocast_dtype is None:
            return torch.autocast(self.device.type, enabled=False)
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def sample_batch(self) -> dict:
        idx = self.rng.integers(0, len(self.train_set), size=self.cfg.batch_size)
        return collate([self.train_set[int(i)] for i in idx])

    def sample_targets(self, n: int) -> torch.Tensor:
        from .data import sample_target_hr  # noqa: PLC0415

        cfg = self.cfg
        hr = sample_target_hr(self.rng, n, cfg.target_mode, cfg.target_choices_bpm, *cfg.target_range_bpm)
        return torch.as_tensor(hr, dtype=torch.float32)

    def edit(self, video: torch.Tensor, mask: torch.Tensor, hr_bpm: torch.Tensor, remove: bool = False) -> torch.Tensor:
        """v̂ = M·model(v, hr) + (1−M)·v, float32 ``[B,3,T,H,W]``."""
        with self._autocast():
            out = self.model(video, hr_bpm.to(self.device), remove=remove)
        m = mask[:, None].to(out.dtype)
        return m * out.float() + (1 - m) * video

    def train_step(self) -> dict:
        batch = self.sample_batch()
        video = batch["video"].to(self.device)
        mask = batch["mask"].to(self.device)
        remove = bool(self.rng.random() < self.cfg.remove_prob)
        targets = self.sample_targets(video.shape[0])
        t0 = time.perf_counter()
        self.model.adapter.train()
        out = self.edit(video, mask, targets, remove)
        total, parts = self.loss(out, video, mask, targets.to(self.device), batch["fps"], self.step, remove=remove)
        if not torch.isfinite(total):
            raise InputError(f"the loss became {float(total)} at step {self.step}; lower --lr or check the data.")
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        if self.cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.trainable_parameters(), self.cfg.grad_clip)
        self.optimizer.step()
        self.step += 1
        row = {"step": self.step, **parts, "lr": self.optimizer.param_groups[0]["lr"], "remove": int(remove),
               "target_hr_bpm": float(targets.mean()), "seconds": time.perf_counter() - t0}
        self.history.append(row)
        return row

    def validate(self) -> dict:
        """Mean loss parts over the first ``cfg.val_windows`` validation windows, targets cycling
        through ``target_choices_bpm`` (deterministic, so passes are comparable)."""
        n = min(len(self.val_set), self.cfg.val_windows)
        sums: dict[str, float] = {}
        self.model.adapter.eval()
        for i in range(n):
            batch = collate([self.val_set[i]])
            video, mask = batch["video"].to(self.device), batch["mask"].to(self.device)
            target = torch.tensor([self.cfg.target_choices_bpm[i % len(self.cfg.target_choices_bpm)]])
            with torch.no_grad():
                out = self.edit(video, mask, target)
                _, parts = self.loss(out, video, mask, target.to(self.device), batch["fps"], self.step)
            for k, v in parts.items():
                sums[k] = sums.get(k, 0.0) + v / n
        return {"step": self.step, **sums}

    def _log(self, row: dict) -> None:
        path = self.run_dir / "log.csv"
        new = not path.exists()
        with open(path, "a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=LOG_FIELDS)
            if new:
                w.writeheader()
            w.writerow({k: row[k] for k in LOG_FIELDS})

    def _truncate_log(self, step: int) -> None:
        """After a resume, drop log rows past the checkpoint (they will be redone)."""
        path = self.run_dir / "log.csv"
        if not path.exists():
            return
        with open(path, newline="") as f:
            rows = [r for r in csv.DictReader(f) if int(r["step"]) <= step]
        with open(path, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=LOG_FIELDS)
            w.writeheader()
            w.writerows(rows)

    def run(self) -> Path:
        """Train to ``cfg.steps`` (resuming if asked), write the final adapter; returns its path."""
        from tqdm import tqdm  # noqa: PLC0415

        from .model import save_adapter  # noqa: PLC0415

        cfg = self.cfg
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "config.json").write_text(json.dumps(asdict(cfg), indent=2))
        ckpt = latest_checkpoint(self.run_dir) if cfg.resume else None
        if ckpt is not None:
            self.step = load_checkpoint(ckpt, self.model, self.optimizer, self.rng)
            self._truncate_log(self.step)
        elif (self.run_dir / "log.csv").exists():
            (self.run_dir / "log.csv").unlink()
        bar = tqdm(total=cfg.steps, initial=self.step, disable=not cfg.progress, desc="train", unit="step")
        while self.step < cfg.steps:
            row = self.train_step()
            self._log(row)
            bar.update(1)
            bar.set_postfix(total=f"{row['total']:.3f}", wave=f"{row['wave']:.3f}", freq=f"{row['freq']:.3f}")
            if cfg.val_every > 0 and self.val_set is not None and self.step % cfg.val_every == 0:
                val = self.validate()
                path = self.run_dir / "val.csv"
                with open(path, "a", newline="") as f:
                    w = csv.DictWriter(f, fieldnames=list(val))
                    if f.tell() == 0:
                        w.writeheader()
                    w.writerow(val)
            if cfg.save_every > 0 and self.step % cfg.save_every == 0:
                save_checkpoint(self.run_dir, self.step, self.model, self.optimizer, self.rng, cfg.keep_checkpoints)
        bar.close()
        final = self.run_dir / "adapter.safetensors"
        save_adapter(final, self.model.adapter, self.model.vae)
        if cfg.plots:
            plot_losses(self.run_dir / "log.csv", self.run_dir / "losses.png")
        return final


def plot_losses(log_csv, out_png) -> Path:
    """Loss curves from log.csv into a PNG (written atomically)."""
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    with open(log_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise InputError(f"{log_csv} has no rows to plot.")
    steps = [int(r["step"]) for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    for key in ("total", "wave", "freq", "removal"):
        axes[0].plot(steps, [float(r[key]) for r in rows], label=key)
    axes[0].set_xlabel("step"), axes[0].set_ylabel("loss"), axes[0].legend(), axes[0].set_title("objective")
    axes[1].plot(steps, [float(r["fidelity"]) for r in rows], label="fidelity (MSE+LPIPS)")
    axes[1].plot(steps, [float(r["beta"]) for r in rows], label="β(t)")
    axes[1].set_xlabel("step"), axes[1].set_yscale("log"), axes[1].legend(), axes[1].set_title("fidelity, curriculum")
    fig.tight_layout()
    out_png = Path(out_png)
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)
    return out_png


def train(cfg: TrainConfig, model=None, train_set=None, val_set=None) -> Trainer:
    """Run training for ``cfg`` and return the Trainer (its ``history`` holds the per-step rows)."""
    trainer = Trainer(cfg, model=model, train_set=train_set, val_set=val_set)
    trainer.run()
    return trainer


# --------------------------------------------------------------------------- CLI


_FLAG_TYPES = {int: int, float: float, str: str}


def add_train_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """``--config cfg.json`` plus one ``--<key>`` flag per TrainConfig field (flags win over the file)."""
    parser.add_argument("--config", help="JSON file with TrainConfig keys")
    for f in fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        default = f.default
        if isinstance(default, bool):
            parser.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None)
        elif isinstance(default, tuple):
            kind = type(default[0]) if default else float
            parser.add_argument(flag, dest=f.name, type=kind, nargs="+", default=None)
        else:
            kind = type(default) if default is not None else str
            if f.name == "max_windows_per_clip":
                kind = int
            parser.add_argument(flag, dest=f.name, type=kind, default=None)
    return parser


def main_train(args: argparse.Namespace) -> int:
    overrides = {f.name: getattr(args, f.name, None) for f in fields(TrainConfig)}
    cfg = load_config(getattr(args, "config", None), overrides)
    trainer = train(cfg)
    last = trainer.history[-1] if trainer.history else {}
    print(f"adapter: {Path(cfg.out_dir) / 'adapter.safetensors'} (step {trainer.step}, last total {last.get('total', math.nan):.4f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main_train(add_train_arguments(argparse.ArgumentParser(description=__doc__)).parse_args()))
