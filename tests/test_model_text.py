"""HR conditioning: numeric Fourier features, frozen CLIP (tiny random config), files, errors."""

import json
import string

import pytest
import torch

from physiolatent_core.errors import InputError, ModelFileError
from physiolatent_core.model.text import HRConditioner, load_clip_text_model, load_clip_tokenizer


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    """A character-level CLIP BPE vocabulary (no merges): enough for 'Heart rate 90 bpm'."""
    d = tmp_path_factory.mktemp("tok")
    chars = string.ascii_lowercase + string.digits
    vocab = {ch: i for i, ch in enumerate(chars)}
    vocab.update({ch + "</w>": len(chars) + i for i, ch in enumerate(chars)})
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    (d / "vocab.json").write_text(json.dumps(vocab))
    (d / "merges.txt").write_text("#version: 0.2\n")
    return d


@pytest.fixture(scope="module")
def tiny_clip():
    from transformers import CLIPTextConfig, CLIPTextModel

    cfg = CLIPTextConfig(vocab_size=74, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, max_position_embeddings=24, bos_token_id=72,
                         eos_token_id=73, pad_token_id=73)
    torch.manual_seed(0)
    return CLIPTextModel(cfg).eval()


def test_numeric_condition_depends_on_hr_and_remove_flag():
    torch.manual_seed(0)
    cond = HRConditioner("numeric", dim=16, num_frequencies=8, hidden=32)
    c = cond(torch.tensor([60.0, 61.0, 120.0]))
    assert c.shape == (3, 16)
    assert not torch.allclose(c[0], c[1]) and not torch.allclose(c[0], c[2])
    # remove=True selects the learned remove embedding for those samples only
    with torch.no_grad():
        cond.remove_embedding.fill_(3.0)
    c2 = cond(torch.tensor([60.0, 120.0]), remove=torch.tensor([True, False]))
    assert torch.equal(c2[0], torch.full((16,), 3.0))
    assert torch.allclose(c2[1], c[2])


def test_hr_range_and_mode_errors():
    cond = HRConditioner("numeric", dim=8)
    for bad in (1.2, 29.0, 241.0, float("nan")):
        with pytest.raises(InputError, match="between 30 and 240 bpm"):
            cond(torch.tensor([bad]))
    with pytest.raises(InputError, match="mode"):
        HRConditioner("text", dim=8)


def test_clip_condition_uses_prompt_and_stays_frozen(tiny_clip, tokenizer_dir):
    tok = load_clip_tokenizer(tokenizer_dir)
    torch.manual_seed(0)
    cond = HRConditioner("both", dim=16, clip_model=tiny_clip, tokenizer=tok, hidden=32)
    assert cond.prompt(90.2) == "Heart rate 90 bpm"
    c = cond(torch.tensor([60.0, 120.0, 60.0]))
    assert torch.allclose(c[0], c[2]) and not torch.allclose(c[0], c[1])
    assert set(cond._cache) == {"Heart rate 60 bpm", "Heart rate 120 bpm"}
    # the frozen CLIP is not part of the trainable state nor of the saved state
    assert not any("text_model" in k for k in cond.state_dict())
    c.square().sum().backward()
    assert cond.clip_proj[1][0].weight.grad is not None
    assert all(p.grad is None and not p.requires_grad for p in tiny_clip.parameters())


def test_comfyui_prefixed_clip_file_loads(tiny_clip, tokenizer_dir, tmp_path):
    from safetensors.torch import save_file

    # ComfyUI's clip_l files: Hugging Face (transformers 4) names under a "clip_l.transformer." prefix
    sd = {f"clip_l.transformer.text_model.{k.removeprefix('text_model.')}": v.contiguous()
          for k, v in tiny_clip.state_dict().items()}
    sd["clip_l.transformer.text_projection.weight"] = torch.zeros(32, 32)  # ignored
    sd["clip_l.logit_scale"] = torch.zeros(())
    path = tmp_path / "clip_l.safetensors"
    save_file(sd, str(path))
    loaded = load_clip_text_model(path, config=tiny_clip.config)
    tok = load_clip_tokenizer(tokenizer_dir)
    ids = tok(["Heart rate 75 bpm"], padding="max_length", max_length=24, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        assert torch.allclose(loaded(input_ids=ids).pooler_output, tiny_clip(input_ids=ids).pooler_output)
    assert not any(p.requires_grad for p in loaded.parameters())


def test_missing_clip_and_tokenizer_files_say_where_to_put_them(tmp_path, monkeypatch):
    monkeypatch.delenv("PHYSIOLATENT_CLIP_TOKENIZER", raising=False)
    monkeypatch.delenv("COMFYUI_PATH", raising=False)
    with pytest.raises(ModelFileError, match=r"clip_l\.safetensors.*models/text_encoders"):
        HRConditioner("clip", dim=8, clip_path=tmp_path / "clip_l.safetensors")
    with pytest.raises(ModelFileError, match="vocab.json.*clip_l_tokenizer"):
        load_clip_tokenizer(None, clip_path=tmp_path / "clip_l.safetensors")
    wrong = tmp_path / "not_clip.safetensors"
    from safetensors.torch import save_file

    save_file({"encoder.conv_in.conv.weight": torch.zeros(1)}, str(wrong))
    with pytest.raises(ModelFileError, match="not look like a CLIP text encoder"):
        load_clip_text_model(wrong)
