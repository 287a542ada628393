"""Model metrics for ``alignkit eval``: generation with token ids, held-out perplexity, KL from a
reference model, mean reward, and reward-model pairwise accuracy.

Perplexity
    ``exp(total NLL / total tokens)`` over the *labelled* tokens of an SFT-format file (completion
    tokens of prompt-completion rows, assistant turns of ``messages``, every token of ``text``; for a
    preference file, the chosen response), i.e. token-weighted over the whole file, not a mean of
    per-example perplexities. Log-probs come from :func:`alignkit.logprobs.sequence_token_logps`
    (never the full logits).

KL from a reference model
    A Monte-Carlo estimate over completions ``y`` drawn from the evaluated model ``π`` itself:
    ``KL(π || π_ref) = E_{y ~ π}[Σ_t log π(y_t | x, y_<t) − log π_ref(y_t | x, y_<t)]``. Reported as
    ``kl`` = the summed log-ratio divided by the number of completion tokens (per-token KL, token
    weighted; EOS included when generated) and ``kl_seq`` = the mean per-sequence sum. With sampled
    completions (``temperature=1``, ``kl_samples > 0`` in the CLI) this is unbiased; with the greedy
    completions used for the gold metrics (the default) it is the log-ratio along the mode of π, a
    cheap but biased proxy (it can even be negative). Both models must share a tokenizer.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch

__all__ = [
    "RewardUnavailable",
    "kl_estimate",
    "load_reward",
    "perplexity",
    "reward_stats",
    "rm_pairwise_accuracy",
    "sequence_log_ratios",
]


def _device(model: torch.nn.Module) -> torch.device:
    try:
        return next(model.parameters()).device
    except StopIteration:  # pragma: no cover
        return torch.device("cpu")


def _pad_id(tokenizer: Any) -> int:
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if pad is None:
        raise ValueError("the tokenizer has neither a pad nor an EOS token")
    return int(pad)


@torch.no_grad()
def perplexity(model: torch.nn.Module, tokenizer: Any, data: Any, *, batch_size: int = 8, max_length: int = 1024,
               chat_template: str = "auto") -> dict[str, float]:
    """Token-weighted perplexity on an SFT-format file (path) or on already loaded rows
    (:class:`alignkit.data.LoadedRows`). Returns ``{"perplexity", "nll", "tokens", "examples"}``."""
    from alignkit.data import LoadedRows, collate_lm, load_examples, tokenize_sft
    from alignkit.logprobs import sequence_token_logps
    from alignkit.models.modules import eval_mode

    loaded = data if isinstance(data, LoadedRows) else load_examples(data, ("lm", "prompt_completion", "preference"))
    examples = tokenize_sft(loaded, tokenizer, max_length, chat_template)
    order = sorted(range(len(examples)), key=lambda i: -len(examples[i]["input_ids"]))
    device = _device(model)
    nll = 0.0
    tokens = 0
    with eval_mode(model):
        for start in range(0, len(order), batch_size):
            batch = collate_lm([examples[i] for i in order[start:start + batch_size]], _pad_id(tokenizer))
            logps, mask = sequence_token_logps(model, batch["input_ids"].to(device),
                                               batch["attention_mask"].to(device), batch["labels"].to(device))
            nll -= float((logps.double() * mask).sum())
            tokens += int(mask.sum())
    if tokens == 0:
        raise ValueError("perplexity: the data has no labelled tokens")
    mean = nll / tokens
    return {"perplexity": math.exp(mean), "nll": mean, "tokens": tokens, "examples": len(examples)}


@torch.no_grad()
def sequence_log_ratios(model: torch.nn.Module, ref_model: torch.nn.Module, prompt_ids: Sequence[Sequence[int]],
                        completion_ids: Sequence[Sequence[int]], *, pad_id: int,
                        batch_size: int = 8) -> tuple[list[float], list[int]]:
    """Per sequence: Σ_t log π(y_t) − log π_ref(y_t) over the completion tokens, and the token count."""
    from alignkit.data import IGNORE_INDEX, pad
    from alignkit.logprobs import sequence_token_logps
    from alignkit.models.modules import eval_mode

    if len(prompt_ids) != len(completion_ids):
        raise ValueError("prompt_ids and completion_ids differ in length")
    sums = [0.0] * len(prompt_ids)
    counts = [0] * len(prompt_ids)
    order = sorted(range(len(prompt_ids)), key=lambda i: -(len(prompt_ids[i]) + len(completion_ids[i])))
    with eval_mode(model), eval_mode(ref_model):
        for start in range(0, len(order), batch_size):
            idx = [i for i in order[start:start + batch_size] if len(completion_ids[i])]
            if not idx:
                continue
            seqs = [list(prompt_ids[i]) + list(completion_ids[i]) for i in idx]
            labels = [[IGNORE_INDEX] * len(prompt_ids[i]) + list(completion_ids[i]) for i in idx]
            ids = pad(seqs, pad_id)
            attn = pad([[1] * len(s) for s in seqs], 0)
            lab = pad(labels, IGNORE_INDEX)
            out = []
            for m in (model, ref_model):
                dev = _device(m)
                logps, mask = sequence_token_logps(m, ids.to(dev), attn.to(dev), lab.to(dev))
                out.append((logps.double() * mask).sum(-1).cpu())
            n = (lab[:, 1:] != IGNORE_INDEX).sum(-1)
            for j, i in enumerate(idx):
                sums[i] = float(out[0][j] - out[1][j])
                counts[i] = int(n[j])
    return sums, counts


def kl_estimate(model: torch.nn.Module, ref_model: torch.nn.Module, prompt_ids: Sequence[Sequence[int]],
                completion_ids: Sequence[Sequence[int]], *, pad_id: int, batch_size: int = 8) -> dict[str, float]:
    """Monte-Carlo KL(π || π_ref) over completions sampled from π (see the module docstring).
    Returns ``{"kl" (per token), "kl_seq" (per sequence), "tokens", "sequences"}``."""
    sums, counts = sequence_log_ratios(model, ref_model, prompt_ids, completion_ids, pad_id=pad_id,
                                       batch_size=batch_size)
    tokens = sum(counts)
    n = sum(1 for c in counts if c)
    return {"kl": sum(sums) / tokens if tokens else float("nan"),
            "kl_seq": sum(sums) / n if n else float("nan"), "tokens": tokens, "sequences": n}


# ----------------------------------------------------------------------------------------- rewards
class RewardUnavailable(RuntimeError):
    """A reward spec this installation cannot serve (e.g. a module that is not there yet)."""


def _as_floats(values: Any, n: int) -> list[float]:
    if isinstance(values, torch.Tensor):
        values = values.detach().float().cpu().tolist()
    out = [float("nan") if v is None else float(v) for v in values]
    if len(out) != n:
        raise ValueError(f"the reward returned {len(out)} values for {n} completions")
    return out


def load_reward(specs: Sequence[str], weights: Sequence[float] | None = None
                ) -> Callable[..., tuple[list[float], dict[str, list[float]]]]:
    """A reward callable for ``--reward`` specs (README "Reward functions": ``FILE.py:FUNC``, ``package.module:FUNC``,
    ``rm:PATH``), built by :func:`alignkit.rewards.load_reward_functions`:
    ``f(prompts, completions, **columns) -> (total, {source name: scores})`` (the total is the
    weighted sum). Raises :class:`RewardUnavailable` when :mod:`alignkit.rewards` is not installed and
    ``alignkit.rewards.RewardError`` (a ``ValueError``) for a bad spec."""
    try:
        from alignkit.scoring import load_reward_functions
    except ImportError as e:
        raise RewardUnavailable(f"--reward needs alignkit.rewards, which cannot be imported here ({e})") from None
    specs = list(specs)
    reward_set = load_reward_functions(specs if len(specs) > 1 else specs[0],
                                       list(weights) if weights is not None else None)

    def score(prompts: Sequence[Any], completions: Sequence[str], **columns: Sequence[Any]):
        total, per = reward_set(list(prompts), list(completions), columns)
        return _as_floats(total, len(completions)), {k: _as_floats(v, len(completions)) for k, v in per.items()}

    return score


def load_reward_model(path: str):
    """:func:`alignkit.reward_model.load_reward_model`, or :class:`RewardUnavailable` when it is missing."""
    try:
        from alignkit.reward_model import load_reward_model as _load
    except ImportError as e:
        raise RewardUnavailable(f"reward model '{path}': alignkit.reward_model cannot be imported here ({e})") from None
    return _load(path)


def reward_stats(values: Sequence[float]) -> dict[str, float]:
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return {"mean": float("nan"), "std": float("nan"), "n": 0}
    mean = sum(finite) / len(finite)
    var = sum((v - mean) ** 2 for v in finite) / len(finite)
    return {"mean": mean, "std": math.sqrt(var), "min": min(finite), "max": max(finite), "n": len(finite)}


def rm_pairwise_accuracy(reward_model: Any, data: Any) -> dict[str, float]:
    """Fraction of preference pairs the reward model ranks correctly (chosen scored strictly higher;
    a tie counts as wrong), and the mean score margin. ``data``: a preference file or loaded rows."""
    from alignkit.data import LoadedRows, load_examples

    loaded = data if isinstance(data, LoadedRows) else load_examples(data, ("preference",))
    if loaded.kind != "preference":
        raise ValueError(f"{loaded.path}: reward-model accuracy needs preference rows (prompt, chosen, rejected)")
    prompts = [r["prompt"] for r in loaded.rows]
    chosen = _as_floats(reward_model.score(prompts, [r["chosen"] for r in loaded.rows]), len(prompts))
    rejected = _as_floats(reward_model.score(prompts, [r["rejected"] for r in loaded.rows]), len(prompts))
    margins = [c - r for c, r in zip(chosen, rejected)]
    return {"accuracy": sum(m > 0 for m in margins) / len(margins), "margin": sum(margins) / len(margins),
            "pairs": len(margins)}
