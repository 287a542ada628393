"""Scalar reward models: building one on a causal LM, reading its reward, loading a trained one.

A reward model here is a Hugging Face ``*ForSequenceClassification`` model with ``num_labels=1``
(for SmolLM2 and ``tiny-random``: ``LlamaForSequenceClassification``): the causal LM's body, with a
linear ``score`` head (hidden size -> 1, no bias) in place of the LM head.

**Where the reward is read.** The reward of a sequence is the score head applied to the final hidden
state of its *last real token*: the rightmost position whose ``attention_mask`` is 1
(:func:`last_token_index`). alignkit computes this itself (:func:`sequence_rewards`) rather than
relying on transformers' pooling, which takes the rightmost token whose id differs from
``config.pad_token_id``: with SmolLM2 the pad token is ``<|im_end|>``, the very token every chat
response ends with, so transformers would read the reward one token early. To keep plain
transformers use of a saved model consistent as well, :func:`ensure_distinct_pad` gives the
tokenizer a pad token that differs from EOS when the vocabulary has one (SmolLM2: ``<|endoftext|>``,
id 0), and the model config gets the same ``pad_token_id``. Then
``AutoModelForSequenceClassification.from_pretrained(final)`` with the saved tokenizer's padding gives
the same rewards as alignkit. (A tokenizer with no spare special token keeps pad = EOS; alignkit's
own rewards are unaffected, only plain transformers pooling would read one token early.)

**Loading.** :func:`load_reward_model` takes what ``alignkit rm`` saved (a run directory or its
``final/``): a full model directory, or a peft adapter (LoRA weights plus the trained score head in
``adapter_model.safetensors``, ``adapter_config.json`` with ``task_type: SEQ_CLS``, and
``alignkit.json`` naming the base model), which is rebuilt on its base and merged. The returned
:class:`RewardModel` tokenises prompts and completions exactly as training did (same tokenizer, chat
template rule, ``max_length`` and truncation, read from the run's ``config.yaml`` when the model
sits in a run directory) and can be called like a TRL reward function:
``rm(prompts, completions, **columns) -> list[float]``.
"""

from __future__ import annotations

import copy
import json
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from alignkit.data.io import DataError
from alignkit.data.schema import LoadedRows, check_messages, check_text_field
from alignkit.data.tokenize import tokenize_sft
from alignkit.models.loading import (
    ADAPTER_CONFIG,
    ALIGNKIT_META,
    TINY_NAME,
    ModelNotFoundError,
    build_tiny_random,
    is_adapter_dir,
    load_model,
    load_tokenizer,
    resolve_model,
)
from alignkit.models.modules import base_module

__all__ = [
    "NotARewardModelError",
    "RewardModel",
    "build_reward_model",
    "ensure_distinct_pad",
    "from_causal_lm",
    "is_reward_model_dir",
    "last_token_index",
    "load_reward_model",
    "reward_head",
    "sequence_rewards",
]

#: attribute names of the scalar head on transformers' sequence-classification models
HEAD_NAMES = ("score", "classifier")
#: max_length used when scoring with a model that is not inside a run directory
DEFAULT_SCORE_MAX_LENGTH = 2048


class NotARewardModelError(ModelNotFoundError):
    """The model exists but is not a scalar reward model (e.g. a causal LM)."""


# ----------------------------------------------------------------------------- tokenizer


def ensure_distinct_pad(tokenizer: Any) -> int:
    """Make ``tokenizer.pad_token`` differ from its EOS token where possible; return the pad id.

    Keeps an existing pad token that is not EOS. Otherwise uses the unknown token when it is neither
    EOS nor BOS (SmolLM2: ``<|endoftext|>``); failing that, pad stays (or becomes) EOS. Changes the
    tokenizer in place, so the tokenizer saved with the model carries the same pad token.
    """
    eos, bos = tokenizer.eos_token_id, tokenizer.bos_token_id
    pad = tokenizer.pad_token_id
    if pad is not None and pad != eos:
        return pad
    unk = tokenizer.unk_token_id
    if tokenizer.unk_token is not None and unk is not None and unk not in (eos, bos):
        tokenizer.pad_token = tokenizer.unk_token
        return unk
    if pad is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer.pad_token_id


# ----------------------------------------------------------------------------- reading the reward


def last_token_index(attention_mask: torch.Tensor) -> torch.Tensor:
    """Index of the rightmost attended position of each row of ``attention_mask`` [N, T] -> [N]."""
    positions = torch.arange(attention_mask.size(-1), device=attention_mask.device)
    return (positions * (attention_mask != 0).to(positions.dtype)).argmax(-1)


def reward_head(model: torch.nn.Module) -> torch.nn.Module:
    """The scalar head of a (possibly DDP- or peft-wrapped) sequence-classification model; under peft
    it is the ``ModulesToSaveWrapper`` that routes to the trained copy."""
    inner = base_module(model)
    for name in HEAD_NAMES:
        head = getattr(inner, name, None)
        if isinstance(head, torch.nn.Module):
            return head
    raise TypeError(f"{type(inner).__name__} has no scalar head (looked for {', '.join(HEAD_NAMES)})")


def sequence_rewards(model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Rewards [N] (float32) of the sequences in ``input_ids`` [N, T].

    The model is called through its own (possibly wrapped) ``forward``, so that DDP and peft work as
    usual; the head is then applied to the final hidden state at :func:`last_token_index`, which
    makes the reward independent of padding and of which token id pads.
    """
    out = model(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True, use_cache=False)
    hidden = out.hidden_states[-1]
    rows = torch.arange(hidden.size(0), device=hidden.device)
    pooled = hidden[rows, last_token_index(attention_mask).to(hidden.device)]
    return reward_head(model)(pooled).squeeze(-1).float()


# ----------------------------------------------------------------------------- building


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def is_reward_model_dir(path: str | os.PathLike) -> bool:
    """True for a directory holding a scalar reward model: a full ``*ForSequenceClassification``
    model with one label, or a peft adapter with ``task_type`` ``SEQ_CLS``."""
    p = Path(path)
    if is_adapter_dir(p):
        return str(_read_json(p / ADAPTER_CONFIG).get("task_type", "")).upper() == "SEQ_CLS"
    cfg = _read_json(p / "config.json")
    archs = cfg.get("architectures") or []
    labels = cfg.get("num_labels", len(cfg.get("id2label") or {}) or 2)
    return any(str(a).endswith("ForSequenceClassification") for a in archs) and labels == 1


def _adapter_base(path: Path) -> str:
    base = _read_json(path / ALIGNKIT_META).get("base_model") or \
        _read_json(path / ADAPTER_CONFIG).get("base_model_name_or_path")
    if not base:
        raise ModelNotFoundError(f"adapter directory {path} does not say which base model it belongs to "
                                 f"(no base_model in {ALIGNKIT_META})")
    return str(base)


def from_causal_lm(causal: torch.nn.Module, pad_token_id: int | None) -> torch.nn.Module:
    """A one-label sequence-classification model with ``causal``'s body weights and a freshly
    initialised score head (drawn from torch's global RNG)."""
    from transformers import AutoModelForSequenceClassification

    cfg = copy.deepcopy(causal.config)
    cfg.num_labels = 1
    cfg.pad_token_id = pad_token_id
    cfg.architectures = None
    dtype = next(causal.parameters()).dtype
    model = AutoModelForSequenceClassification.from_config(cfg, dtype=dtype)
    body = getattr(causal, causal.base_model_prefix)
    target = getattr(model, model.base_model_prefix)
    missing, unexpected = target.load_state_dict(body.state_dict(), strict=False)
    if missing or unexpected:
        raise RuntimeError(f"cannot put the body of {type(causal).__name__} into {type(model).__name__}: "
                           f"missing {missing[:5]}, unexpected {unexpected[:5]}")
    return model


def _quiet_transformers():
    """Silence transformers' 'newly initialized weights: score.weight' notice (expected here)."""
    from transformers.utils import logging as hf_logging

    class _Quiet:
        def __enter__(self):
            self.level = hf_logging.get_verbosity()
            hf_logging.set_verbosity_error()

        def __exit__(self, *exc):
            hf_logging.set_verbosity(self.level)

    return _Quiet()


def peft_quietly(fn, *args, **kwargs):
    """Call a peft constructor without transformers 5's deprecation notice about
    ``is_gradient_checkpointing`` that peft triggers (noise for the user, nothing to act on)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        return fn(*args, **kwargs)


def _set_pad(model: torch.nn.Module, pad_token_id: int | None) -> torch.nn.Module:
    model.config.pad_token_id = pad_token_id
    return model


def build_reward_model(name: str | os.PathLike, pad_token_id: int | None, *, trust_remote_code: bool = False,
                       dtype: Any = None) -> torch.nn.Module:
    """The model ``alignkit rm`` trains: a one-label sequence-classification model on ``name``.

    ``name`` is any model name :func:`alignkit.models.resolve_model` accepts. A causal LM (including
    ``tiny-random``, GGUF files and merged LoRA adapters) gets its body weights copied under a new
    score head; a reward model (full or adapter) continues from its trained head. ``pad_token_id``
    goes into the model config (see :func:`ensure_distinct_pad`). Nothing is downloaded.
    """
    from transformers import AutoConfig, AutoModelForSequenceClassification

    torch_dtype = torch.float32 if dtype is None else dtype
    resolved = resolve_model(name)
    if resolved == TINY_NAME:
        return from_causal_lm(build_tiny_random().to(torch_dtype), pad_token_id)
    path = Path(resolved)
    if is_adapter_dir(path):
        if is_reward_model_dir(path):
            return _set_pad(_load_adapter(path, dtype=torch_dtype, trust_remote_code=trust_remote_code), pad_token_id)
        causal = load_model(path, dtype=torch_dtype, trust_remote_code=trust_remote_code)
        return from_causal_lm(causal, pad_token_id)
    config = AutoConfig.from_pretrained(str(path), local_files_only=True, trust_remote_code=trust_remote_code)
    kwargs = {"local_files_only": True, "use_safetensors": True, "trust_remote_code": trust_remote_code,
              "dtype": torch_dtype}
    if is_reward_model_dir(path):
        model = AutoModelForSequenceClassification.from_pretrained(str(path), **kwargs)
        return _set_pad(model, pad_token_id)
    if getattr(config, "num_labels", 2) != 1 and any(
            str(a).endswith("ForSequenceClassification") for a in (config.architectures or [])):
        raise NotARewardModelError(f"{path} is a classifier with {config.num_labels} labels, not a scalar "
                                   "reward model or a causal LM")
    try:
        with _quiet_transformers():
            model = AutoModelForSequenceClassification.from_pretrained(str(path), num_labels=1, **kwargs)
    except OSError as e:
        raise ModelNotFoundError(f"cannot load {path} as a reward model: {e} (alignkit reads safetensors only)") from e
    return _set_pad(model, pad_token_id)


def _load_adapter(path: Path, *, dtype: Any, trust_remote_code: bool) -> torch.nn.Module:
    """An ``alignkit rm`` LoRA adapter rebuilt on its base and merged into a plain model."""
    from peft import PeftModel

    tokenizer = load_tokenizer(path, trust_remote_code=trust_remote_code)
    base_name = _adapter_base(path)
    with torch.random.fork_rng(devices=[]):  # the throwaway head init must not move the caller's RNG
        base = build_reward_model(base_name, tokenizer.pad_token_id, trust_remote_code=trust_remote_code,
                                  dtype=dtype)
    model = peft_quietly(PeftModel.from_pretrained, base, str(path), is_trainable=False)
    return model.merge_and_unload()


# ----------------------------------------------------------------------------- scoring


def _as_text_field(value: Any, name: str, row: int, completion: bool) -> Any:
    if completion:
        # generated completions may be empty: that is still something to score
        if isinstance(value, str):
            return value
        if isinstance(value, (list, tuple)):
            return check_messages(list(value), name, row=row)
        raise DataError(f"expected a string or a list of chat messages, got {type(value).__name__}",
                        row=row, field=name)
    return check_text_field({name: value}, name, row_no=row)


class RewardModel:
    """A trained reward model with its tokenizer, ready to score prompt-completion pairs.

    ``max_length`` and ``chat_template`` (``auto``/``always``/``never``) are the tokenisation settings
    of training (see :mod:`alignkit.data.tokenize`); :func:`load_reward_model` fills them in from the
    run's ``config.yaml``. The model is in eval mode on ``device``.
    """

    def __init__(self, model: torch.nn.Module, tokenizer: Any, *, max_length: int = DEFAULT_SCORE_MAX_LENGTH,
                 chat_template: str = "auto", device: str | torch.device | None = None) -> None:
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.tokenizer = tokenizer
        self.max_length = int(max_length)
        self.chat_template = chat_template
        self.pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    def encode(self, prompts: Sequence[Any], completions: Sequence[Any]) -> list[list[int]]:
        """Token ids of each prompt + completion, as ``alignkit rm`` tokenised its training pairs.

        Raises :class:`alignkit.data.DataError` naming the 1-based position and field of a bad input.
        """
        if len(prompts) != len(completions):
            raise ValueError(f"{len(prompts)} prompts but {len(completions)} completions")
        rows = [{"prompt": _as_text_field(p, "prompt", i, False),
                 "completion": _as_text_field(c, "completion", i, True)}
                for i, (p, c) in enumerate(zip(prompts, completions), start=1)]
        if not rows:
            return []
        loaded = LoadedRows(path="reward model inputs", kind="prompt_completion", rows=rows,
                            row_numbers=list(range(1, len(rows) + 1)))
        examples = tokenize_sft(loaded, self.tokenizer, self.max_length, self.chat_template, skip_invalid=False)
        return [ex["input_ids"] for ex in examples]

    @torch.no_grad()
    def score_ids(self, sequences: Sequence[Sequence[int]], batch_size: int = 8) -> list[float]:
        """Rewards of already tokenised sequences (in the given order). Batches hold sequences of
        similar length (sorted), right padded; padding does not change a reward."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        order = sorted(range(len(sequences)), key=lambda i: -len(sequences[i]))
        rewards = [0.0] * len(sequences)
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            width = max(len(sequences[i]) for i in idx)
            ids = torch.full((len(idx), width), self.pad_token_id, dtype=torch.long)
            mask = torch.zeros((len(idx), width), dtype=torch.long)
            for row, i in enumerate(idx):
                seq = torch.as_tensor(list(sequences[i]), dtype=torch.long)
                ids[row, :len(seq)] = seq
                mask[row, :len(seq)] = 1
            values = sequence_rewards(self.model, ids.to(self.device), mask.to(self.device)).tolist()
            for i, v in zip(idx, values):
                rewards[i] = float(v)
        return rewards

    def score(self, prompts: Sequence[Any], completions: Sequence[Any], batch_size: int = 8) -> list[float]:
        """Reward of each (prompt, completion); each may be a string or a list of chat messages."""
        return self.score_ids(self.encode(prompts, completions), batch_size=batch_size)

    def __call__(self, prompts: Sequence[Any], completions: Sequence[Any], **columns: Any) -> list[float]:
        """TRL-style reward function signature; extra dataset columns are ignored."""
        return self.score(prompts, completions)


def _run_settings(model_dir: Path) -> dict:
    """``max_length``/``chat_template`` of the run that wrote ``model_dir`` (its ``final/``), if known."""
    if model_dir.name != "final":
        return {}
    cfg_file = model_dir.parent / "config.yaml"
    if not cfg_file.is_file():
        return {}
    import yaml

    try:
        cfg = yaml.safe_load(cfg_file.read_text()) or {}
    except yaml.YAMLError:
        return {}
    if not isinstance(cfg, dict):
        return {}
    return {k: cfg[k] for k in ("max_length", "chat_template") if cfg.get(k) is not None}


def load_reward_model(path: str | os.PathLike, *, device: str | torch.device | None = None, dtype: Any = None,
                      max_length: int | None = None, chat_template: str | None = None,
                      trust_remote_code: bool = False) -> RewardModel:
    """Load a reward model written by ``alignkit rm`` (run directory or ``final/``; full or LoRA).

    ``max_length``/``chat_template`` default to the training run's values (its ``config.yaml``),
    else ``2048`` and ``auto``. ``dtype`` defaults to float32. Raises
    :class:`alignkit.models.ModelNotFoundError` (or its subclass :class:`NotARewardModelError`).
    """
    resolved = resolve_model(path)
    if resolved == TINY_NAME or not is_reward_model_dir(resolved):
        raise NotARewardModelError(
            f"model '{path}' is not a reward model (expected the output of `alignkit rm`: a one-label "
            "*ForSequenceClassification model or a SEQ_CLS peft adapter)")
    model_dir = Path(resolved)
    torch_dtype = torch.float32 if dtype is None else dtype
    tokenizer = load_tokenizer(model_dir, trust_remote_code=trust_remote_code)
    if is_adapter_dir(model_dir):
        model = _load_adapter(model_dir, dtype=torch_dtype, trust_remote_code=trust_remote_code)
    else:
        from transformers import AutoModelForSequenceClassification

        model = AutoModelForSequenceClassification.from_pretrained(
            str(model_dir), local_files_only=True, use_safetensors=True, trust_remote_code=trust_remote_code,
            dtype=torch_dtype)
    settings = _run_settings(model_dir)
    return RewardModel(model, tokenizer,
                       max_length=max_length or settings.get("max_length", DEFAULT_SCORE_MAX_LENGTH),
                       chat_template=chat_template or settings.get("chat_template", "auto"), device=device)
