"""What ``generate``, ``chat`` and ``eval`` share to align a model without training it: a prompt optimizer
(BPO) rewrites each prompt, in-context examples go in front of it, and after the model answers an Aligner
corrects the answer. Order: optimizer -> examples -> model -> corrector. Each piece is optional; the flags
are added by :func:`add_aid_flags` and read by :func:`load_aids`."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from alignkit.inference.icl import SELECTORS, FewShot, ICLError, build_selector, load_icl_examples
from alignkit.inference.rewriters import AidError, Aligner, PromptOptimizer

__all__ = ["AidError", "InferenceAids", "add_aid_flags", "load_aids"]


def add_aid_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("alignment without training (README 'Without training the policy')")
    g.add_argument("--icl-examples", default=None, metavar="FILE",
                   help="few-shot examples: prompt-completion, preference (chosen) or messages rows")
    g.add_argument("--icl-k", type=int, default=4, metavar="K", help="examples per query (default 4)")
    g.add_argument("--icl-selector", choices=SELECTORS, default="bm25",
                   help="how examples are picked per query: bm25 (default), jaccard, embedding (the model's own "
                   "mean-pooled hidden states), random, fixed (the first K)")
    g.add_argument("--icl-max-tokens", type=int, default=None, metavar="N",
                   help="token budget of the whole prompt; examples are dropped (least similar first) to fit, "
                   "the query is never cut")
    g.add_argument("--prompt-optimizer", default=None, metavar="PATH",
                   help="a BPO prompt rewriter trained with `alignkit bpo`, applied to every prompt")
    g.add_argument("--aligner", default=None, metavar="PATH",
                   help="an Aligner answer corrector trained with `alignkit aligner`, applied to every answer")
    g.add_argument("--aid-max-new-tokens", type=int, default=256, metavar="N",
                   help="length limit of the optimizer's rewrites and the corrector's answers (default 256)")


@dataclass
class InferenceAids:
    """The optional pieces, and per-query costs of the last calls (tokens the helpers generated)."""

    few_shot: FewShot | None = None
    optimizer: PromptOptimizer | None = None
    aligner: Aligner | None = None
    stats: dict[str, list[int]] = field(default_factory=dict)

    @property
    def active(self) -> bool:
        return any(x is not None for x in (self.few_shot, self.optimizer, self.aligner))

    def prepare(self, prompts: Sequence[Any]) -> list[Any]:
        """Prompts (in the form they are sampled in) -> what the model is asked."""
        out = list(prompts)
        if self.optimizer is not None:
            out, self.stats["optimizer_tokens"] = self.optimizer.rewrite(out)
        if self.few_shot is not None:
            out, self.stats["icl_examples"] = self.few_shot.apply(out)
        return out

    def correct(self, prompts: Sequence[Any], answers: Sequence[str]) -> list[str]:
        """The model's answers to the original ``prompts`` -> the answers returned."""
        if self.aligner is None:
            return list(answers)
        corrected, self.stats["aligner_tokens"] = self.aligner.correct(prompts, answers)
        return corrected

    def summary(self) -> dict[str, float]:
        """Mean per query of each recorded cost."""
        return {k: sum(v) / len(v) for k, v in self.stats.items() if v}


def load_aids(args: argparse.Namespace, model: Any, tokenizer: Any, mode: str = "auto") -> InferenceAids:
    """The pieces the flags ask for; raises :class:`AidError` / :class:`ICLError` (one line) when one cannot
    be used, before anything is generated."""
    if args.icl_k < 1:
        raise ICLError("--icl-k must be at least 1")
    if args.icl_max_tokens is not None and args.icl_max_tokens < 1:
        raise ICLError("--icl-max-tokens must be at least 1")
    kwargs = {"max_new_tokens": args.aid_max_new_tokens, "batch_size": getattr(args, "batch_size", 8)}
    optimizer = PromptOptimizer(args.prompt_optimizer, **kwargs) if args.prompt_optimizer else None
    aligner = Aligner(args.aligner, **kwargs) if args.aligner else None
    few_shot = None
    if args.icl_examples:
        from alignkit.data.render import is_messages, render_prompt

        examples = load_icl_examples(args.icl_examples)
        selector = build_selector(args.icl_selector, examples, model=model, tokenizer=tokenizer,
                                  seed=getattr(args, "seed", None) or 0)
        few_shot = FewShot(selector, args.icl_k, args.icl_max_tokens,
                           chat=lambda q: is_messages(q) or mode == "always",
                           count=lambda q: len(render_prompt(tokenizer, q, mode).ids))
    return InferenceAids(few_shot, optimizer, aligner)
