"""Model resolution, tiny-random, LoRA, save/load round trips (tiny-random only, except the slow tests)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
import torch

from alignkit.config import LoraSettings
from alignkit.models import (
    ModelNotFoundError,
    apply_lora,
    build_tiny_random,
    load_for_generation,
    load_model,
    load_tokenizer,
    load_trained,
    resolve_model,
    save_model,
)

INPUT = torch.tensor([[1, 9707, 28, 940, 359, 346, 47, 2], [1, 504, 3458, 314, 260, 1345, 30, 2]])


def logits(model) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(input_ids=INPUT).logits


def perturbed_tiny(seed: int = 1):
    """tiny-random with every weight nudged, so that it differs from a fresh build."""
    model = build_tiny_random()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.02)
    return model


def perturb_lora(peft_model, seed: int = 2) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.5)


def weight_files(d: Path) -> list[str]:
    return sorted(p.name for p in d.rglob("*") if p.suffix in (".safetensors", ".bin", ".pt", ".pth", ".ckpt"))


# ----------------------------------------------------------------------------- tiny-random


def test_tiny_random_is_deterministic_and_leaves_rng_alone():
    from alignkit.models.loading import _tiny_random_template

    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    _tiny_random_template.cache_clear()  # really build it, twice
    a = build_tiny_random()
    _tiny_random_template.cache_clear()
    b = build_tiny_random()
    assert torch.equal(torch.rand(3), expected)  # caller's RNG untouched
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    c = build_tiny_random()  # copies are independent
    with torch.no_grad():
        c.model.norm.weight.add_(1.0)
    assert torch.equal(build_tiny_random().model.norm.weight, a.model.norm.weight)


def test_tiny_random_shape(tokenizer):
    model = build_tiny_random()
    cfg = model.config
    assert type(model).__name__ == "LlamaForCausalLM"
    assert (cfg.vocab_size, cfg.hidden_size, cfg.intermediate_size) == (49152, 64, 128)
    assert (cfg.num_hidden_layers, cfg.num_attention_heads, cfg.num_key_value_heads) == (2, 4, 2)
    assert cfg.max_position_embeddings == 2048 and cfg.tie_word_embeddings
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight
    assert cfg.eos_token_id == tokenizer.eos_token_id == 2
    assert cfg.pad_token_id == tokenizer.pad_token_id
    assert cfg.bos_token_id == tokenizer.bos_token_id
    assert logits(model).shape == (2, 8, 49152)


def test_load_model_and_tokenizer_tiny(tokenizer):
    model = load_model("tiny-random")
    assert model.dtype == torch.float32
    assert torch.equal(logits(model), logits(build_tiny_random()))
    tok = load_tokenizer("tiny-random")
    assert tok.pad_token == "<|im_end|>" and tok.chat_template
    assert load_model("tiny-random", dtype="bfloat16").dtype == torch.bfloat16


# ----------------------------------------------------------------------------- resolve_model


def test_resolve_model_names(tmp_path):
    assert resolve_model("tiny-random") == "tiny-random"
    hf = tmp_path / "hf"
    hf.mkdir()
    (hf / "config.json").write_text("{}")
    assert resolve_model(hf) == hf
    run = tmp_path / "run"
    (run / "final").mkdir(parents=True)
    (run / "final" / "adapter_config.json").write_text("{}")
    assert resolve_model(str(run)) == run / "final"
    assert resolve_model(run / "final") == run / "final"


@pytest.mark.parametrize("name", ["gpt2", "no/such/dir", ""])
def test_resolve_model_unknown_names(name):
    with pytest.raises(ModelNotFoundError) as e:
        resolve_model(name)
    msg = str(e.value)
    assert "smollm2-135m" in msg and "tiny-random" in msg and ".gguf" in msg and "org/name" in msg


def test_hub_name_offline_not_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))  # an empty cache; conftest sets HF_HUB_OFFLINE=1
    with pytest.raises(ModelNotFoundError, match="not in the local Hugging Face cache.*HF_HUB_OFFLINE"):
        resolve_model("HuggingFaceTB/SmolLM2-135M-Instruct")


def test_resolve_model_bad_paths(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelNotFoundError, match="without config.json"):
        resolve_model(empty)
    notgguf = tmp_path / "weights.bin"
    notgguf.write_bytes(b"x")
    with pytest.raises(ModelNotFoundError, match="not a .gguf"):
        resolve_model(notgguf)
    run = tmp_path / "run"
    (run / "final").mkdir(parents=True)
    with pytest.raises(ModelNotFoundError, match="holds no model"):
        resolve_model(run)
    # a model error is also a FileNotFoundError, so generic handlers catch it
    assert issubclass(ModelNotFoundError, FileNotFoundError)


def test_load_model_refuses_pickle_weights(tmp_path):
    model = build_tiny_random()
    d = tmp_path / "binmodel"
    model.save_pretrained(str(d))
    # simulate a pytorch_model.bin-only checkpoint
    for f in d.glob("*.safetensors"):
        f.unlink()
    torch.save(model.state_dict(), d / "pytorch_model.bin")
    with pytest.raises((ModelNotFoundError, OSError)):
        load_model(d)


# ----------------------------------------------------------------------------- LoRA


def test_apply_lora_trains_only_adapters():
    base_logits = logits(build_tiny_random())
    model = apply_lora(build_tiny_random(), LoraSettings(r=4, alpha=8))
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    targeted = {n.split(".lora_")[0].rsplit(".", 1)[-1] for n in trainable}
    assert targeted == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    assert torch.allclose(logits(model), base_logits)  # lora_B starts at zero
    perturb_lora(model)
    assert not torch.allclose(logits(model), base_logits, atol=1e-4)
    with model.disable_adapter():
        assert torch.allclose(logits(model), base_logits)


def test_apply_lora_target_modules_and_r0():
    model = apply_lora(build_tiny_random(), LoraSettings(r=2, target_modules=["q_proj", "v_proj"]))
    trainable = {n.split(".lora_")[0].rsplit(".", 1)[-1] for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"q_proj", "v_proj"}
    with pytest.raises(ValueError, match="r > 0"):
        apply_lora(build_tiny_random(), LoraSettings(r=0))


# ----------------------------------------------------------------------------- save / load


def test_save_load_full_roundtrip(tmp_path, tokenizer):
    model = perturbed_tiny()
    out = save_model(model, tokenizer, tmp_path / "final", base_name="tiny-random")
    assert (out / "config.json").is_file() and (out / "tokenizer.json").is_file()
    assert weight_files(out) == ["model.safetensors"]
    meta = json.loads((out / "alignkit.json").read_text())
    assert meta == {"kind": "full", "base_model": "tiny-random"}
    loaded, tok = load_trained(out)
    assert type(loaded).__name__ == "LlamaForCausalLM"
    assert torch.equal(logits(loaded), logits(model))
    assert tok.eos_token_id == 2 and tok.chat_template == tokenizer.chat_template
    # a run directory means its final/
    again, _ = load_trained(tmp_path)
    assert torch.equal(logits(again), logits(model))
    # plain transformers can read it too
    from transformers import AutoModelForCausalLM

    plain = AutoModelForCausalLM.from_pretrained(str(out), local_files_only=True)
    assert torch.equal(logits(plain), logits(model))


def test_save_load_adapter_roundtrip(tmp_path, tokenizer):
    from peft import PeftModel

    model = apply_lora(build_tiny_random(), LoraSettings(r=4, alpha=8))
    perturb_lora(model)
    out = save_model(model, tokenizer, tmp_path / "run" / "final", base_name="tiny-random")
    assert weight_files(out) == ["adapter_model.safetensors"]
    assert (out / "adapter_config.json").is_file() and not (out / "config.json").exists()
    assert json.loads((out / "alignkit.json").read_text())["base_model"] == "tiny-random"
    loaded, tok = load_trained(tmp_path / "run")
    assert isinstance(loaded, PeftModel)
    assert torch.allclose(logits(loaded), logits(model), atol=1e-6)
    assert tok.pad_token_id == 2
    # load_model on an adapter dir gives the merged plain model
    merged = load_model(out)
    assert not isinstance(merged, PeftModel)
    assert torch.allclose(logits(merged), logits(model), atol=1e-4)


def test_load_for_generation_merges_then_casts(tmp_path, tokenizer):
    from peft import PeftModel

    model = apply_lora(build_tiny_random(), LoraSettings(r=4, alpha=8))
    perturb_lora(model)
    save_model(model, tokenizer, tmp_path / "run" / "final", base_name="tiny-random")
    merged, tok = load_for_generation(tmp_path / "run")
    assert not isinstance(merged, PeftModel) and not merged.training and tok.pad_token_id == 2
    assert torch.allclose(logits(merged), logits(model), atol=1e-4)
    low, _ = load_for_generation(tmp_path / "run", "bfloat16")
    assert {p.dtype for p in low.parameters()} == {torch.bfloat16}
    # merged in float32 before the cast: each weight is the float32 merged weight rounded once
    w32 = dict(merged.named_parameters())
    assert all(torch.equal(p, w32[name].to(torch.bfloat16)) for name, p in low.named_parameters())


def test_save_merged(tmp_path, tokenizer):
    from peft import PeftModel

    model = apply_lora(build_tiny_random(), LoraSettings(r=4, alpha=8))
    perturb_lora(model)
    before = logits(model)
    out = save_model(model, tokenizer, tmp_path / "merged", merge=True, base_name="tiny-random")
    assert weight_files(out) == ["model.safetensors"]
    assert not (out / "adapter_config.json").exists()
    assert isinstance(model, PeftModel) and torch.equal(logits(model), before)  # caller's model untouched
    loaded, _ = load_trained(out)
    assert not isinstance(loaded, PeftModel)
    assert torch.allclose(logits(loaded), before, atol=1e-4)


def test_adapter_on_a_path_base(tmp_path, tokenizer):
    base_dir = save_model(perturbed_tiny(seed=5), tokenizer, tmp_path / "base", base_name="tiny-random")
    model = apply_lora(load_model(base_dir), LoraSettings(r=2))
    perturb_lora(model)
    out = save_model(model, tokenizer, tmp_path / "adapter", base_name=str(base_dir))
    assert json.loads((out / "alignkit.json").read_text())["base_model"] == str(base_dir.resolve())
    loaded, _ = load_trained(out)
    assert torch.allclose(logits(loaded), logits(model), atol=1e-6)


def test_save_replaces_existing_dir_atomically(tmp_path, tokenizer):
    target = tmp_path / "final"
    save_model(build_tiny_random(), tokenizer, target, base_name="tiny-random")
    (target / "stale.txt").write_text("old")
    model = perturbed_tiny()
    save_model(model, tokenizer, target, base_name="tiny-random")
    assert not (target / "stale.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["final"]  # no temp/old dirs left behind
    loaded, _ = load_trained(target)
    assert torch.equal(logits(loaded), logits(model))


def test_failed_save_keeps_previous(tmp_path, tokenizer):
    target = tmp_path / "final"
    save_model(build_tiny_random(), tokenizer, target, base_name="tiny-random")

    class Broken:
        def save_pretrained(self, *_a, **_k):
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        save_model(Broken(), tokenizer, target, base_name="tiny-random")
    assert (target / "model.safetensors").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["final"]


def test_model_dir_without_tokenizer(tmp_path):
    d = tmp_path / "notok"
    build_tiny_random().save_pretrained(str(d))
    with pytest.raises(ModelNotFoundError, match="no tokenizer"):
        load_tokenizer(d)


def test_adapter_without_base_is_clear_error(tmp_path):
    d = tmp_path / "adapter"
    d.mkdir()
    (d / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA"}))
    with pytest.raises(ModelNotFoundError, match="base model"):
        load_trained(d)


# ----------------------------------------------------------------------------- the embedded model


@pytest.mark.slow
def test_smollm2_from_gguf_file_path(tmp_path, monkeypatch):
    """A .gguf path is converted once into the cache (keyed by path, size, mtime), then loads fast."""
    from alignkit.models import embedded_gguf_path

    monkeypatch.setenv("ALIGNKIT_CACHE", str(tmp_path / "cache"))
    gguf = embedded_gguf_path()
    t0 = time.perf_counter()
    first = resolve_model(str(gguf))
    convert_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    assert resolve_model(str(gguf)) == first
    model = load_model(gguf)
    load_s = time.perf_counter() - t0
    print(f"gguf conversion {convert_s:.1f}s, second load {load_s:.1f}s")
    assert first.parent == tmp_path / "cache" / "gguf"
    assert weight_files(first) == ["model.safetensors"]
    assert model.config.hidden_size == 576 and model.config.num_hidden_layers == 30
    assert load_s < 15
    assert os.path.isfile(first / "tokenizer.json")


def test_qlora_is_a_clear_error_before_training_where_bitsandbytes_cannot_run(tmp_path, capsys):
    import importlib.util

    import torch

    from alignkit.cli import main
    from alignkit.config import ConfigError, SFTConfig, load_config
    from alignkit.models import quantize_unavailable

    with pytest.raises(ConfigError, match="lora.r > 0"):
        load_config(SFTConfig, None, ["lora.quantize=4bit"])
    with pytest.raises(ConfigError, match="lora.quantize"):
        load_config(SFTConfig, None, ["lora.r=8", "lora.quantize=2bit"])
    assert quantize_unavailable(None) is None
    if importlib.util.find_spec("bitsandbytes") is not None and torch.cuda.is_available():
        pytest.skip("bitsandbytes and CUDA are here: QLoRA can run (the GPU check covers it)")
    data = tmp_path / "d.jsonl"
    data.write_text('{"text": "hello"}\n' * 4)
    rc = main(["sft", "model=tiny-random", f"data={data}", f"output_dir={tmp_path / 'run'}", "lora.r=8",
               "lora.quantize=4bit", "max_steps=1"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "\n" not in err and "Traceback" not in err
    assert "lora.quantize=4bit (QLoRA) needs" in err and ("bitsandbytes" in err or "CUDA" in err)
    assert not (tmp_path / "run").exists()
