"""Monte-Carlo step values from rollouts to the verifier: the labels of ``alignkit data prm-labels``
(Math-Shepherd) and the pairs of ``alignkit data step-pairs`` (Step-DPO), and MCTS's expansion and
evaluation.

The value of a prefix of steps is the fraction of ``K`` continuations sampled from it (the prompt, then
the steps so far, :func:`alignkit.reasoning.steps.prefix_text`) whose final answer the verifier
(:func:`alignkit.reasoning.verify.is_correct`) accepts. For a whole solution (no continuation left to
sample) it is 1 or 0: the solution itself is right or wrong.

* Math-Shepherd labels (Wang et al. 2024, arXiv:2312.08935, "hard estimation"): step k is good when at
  least ``min_correct`` (default 1: any) of the continuations after steps 1..k reach the right answer.
* Step-DPO pairs (Lai et al. 2024, arXiv:2406.18629): in a wrong solution, the first step whose value
  is 0 is the rejected step; a correct continuation of the steps before it gives the chosen step.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from alignkit.reasoning.steps import encode_steps, prefix_text, split_steps
from alignkit.reasoning.verify import is_correct

__all__ = ["StepSampler", "first_wrong_pair", "prefix_values", "rollout_values", "shepherd_labels"]


@dataclass
class StepSampler:
    """Samples continuations of (prompt, step prefix) pairs from a local model. A prompt is a request to
    an assistant (a user turn under the chat template, :func:`alignkit.data.render.request_prompt`); the
    prefix steps are the start of its answer."""

    model: Any
    tokenizer: Any
    max_new_tokens: int = 128
    temperature: float = 0.8
    top_p: float = 1.0
    batch_size: int = 16
    chat_template: str = "auto"
    #: called with a line of progress (about every tenth of a long call), e.g. ``print`` to stderr
    log: Callable[[str], None] | None = None

    def request(self, prompt: Any) -> Any:
        """The prompt as it is sampled (and written to data files)."""
        from alignkit.data.render import request_prompt

        return request_prompt(self.tokenizer, prompt, self.chat_template)

    def context_ids(self, prompt: Any, steps: Sequence[str]) -> list[int]:
        from alignkit.data.render import render_prompt

        ids = render_prompt(self.tokenizer, self.request(prompt), self.chat_template).ids
        return ids + (encode_steps(self.tokenizer, steps)[0] if steps else [])

    def continue_prefixes(self, prompts: Sequence[Any], prefixes: Sequence[Sequence[str]], n: int, seed: int,
                          max_new_tokens: int | None = None) -> list[list[str]]:
        """``n`` continuation texts of each (prompt, prefix); ``result[i][j]``: continuation j of item i."""
        from alignkit.generation.backends import stop_token_ids
        from alignkit.generation.sampling import sample_completions

        tok = self.tokenizer
        seqs = [self.context_ids(p, s) for p, s in zip(prompts, prefixes)]
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        per_batch = max(1, self.batch_size // n)
        out: list[list[str]] = []
        batches = range(0, len(seqs), per_batch)
        every = max(1, len(batches) // 10)
        for b, start in enumerate(batches):
            if self.log is not None and len(batches) > 1 and b % every == 0:
                self.log(f"sampling {n} continuation(s) of {len(seqs)} prefixes: {start}/{len(seqs)} done")
            ro = sample_completions(self.model, seqs[start:start + per_batch], pad_id=pad,
                                    eos_id=list(stop_token_ids(tok, self.model)),
                                    max_new_tokens=max_new_tokens or self.max_new_tokens,
                                    temperature=self.temperature, top_p=self.top_p, num_generations=n,
                                    generator_seed=seed + b)
            texts = [tok.decode(c, skip_special_tokens=True) for c in ro.completion_ids]
            out.extend(texts[i:i + n] for i in range(0, len(texts), n))
        return out


def prefix_values(sampler: Any, items: Sequence[tuple[Any, Any, list[str]]], rollouts: int, seed: int,
                  with_empty: bool = False) -> list[dict]:
    """Monte-Carlo values of every step prefix of each item ``(prompt, gold answer, steps)``.

    Returns per item ``{"values": [v_1..v_n], "continuations": {k: [texts]}}``: v_k is the value after
    steps 1..k (the fraction of ``rollouts`` continuations from there that are right; v_n: the solution
    itself, 1 or 0). ``continuations[k]`` holds the texts sampled after steps 1..k (k < n; with
    ``with_empty`` also k = 0, sampled from the prompt alone). ``sampler.continue_prefixes`` is called
    once for all prefixes of all items."""
    jobs = []  # (item, k)
    for i, (_, _, steps) in enumerate(items):
        jobs.extend((i, k) for k in range(0 if with_empty else 1, len(steps)))
    texts = sampler.continue_prefixes([items[i][0] for i, _ in jobs], [items[i][2][:k] for i, k in jobs],
                                      rollouts, seed) if jobs else []
    out = [{"values": [0.0] * len(steps), "continuations": {}} for _, _, steps in items]
    for (i, k), conts in zip(jobs, texts):
        prompt, gold, steps = items[i]
        out[i]["continuations"][k] = conts
        if k >= 1:
            head = prefix_text(steps[:k])
            out[i]["values"][k - 1] = sum(is_correct(head + c, gold) for c in conts) / len(conts)
    for i, (_, gold, steps) in enumerate(items):
        if steps:
            out[i]["values"][-1] = 1.0 if is_correct("\n".join(steps), gold) else 0.0
    return out


def rollout_values(sampler: Any, prompt: Any, gold: Any, prefixes: Sequence[Sequence[str]], rollouts: int, seed: int,
                   finished: Sequence[bool]) -> list[float]:
    """The value of each step prefix of one problem: for a ``finished`` one (it ends in the answer) 1 or 0
    from the verifier; otherwise the fraction of ``rollouts`` continuations that reach ``gold``."""
    todo = [i for i, done in enumerate(finished) if not done]
    texts = sampler.continue_prefixes([prompt] * len(todo), [list(prefixes[i]) for i in todo], rollouts,
                                      seed) if todo else []
    values = [1.0 if is_correct("\n".join(p), gold) else 0.0 for p in prefixes]
    for i, conts in zip(todo, texts):
        head = prefix_text(prefixes[i])
        values[i] = sum(is_correct(head + c, gold) for c in conts) / len(conts)
    return values


def shepherd_labels(values: Sequence[float], rollouts: int, min_correct: int = 1) -> list[bool]:
    """Math-Shepherd hard labels: a step is good when at least ``min_correct`` of its ``rollouts``
    continuations were right (the last step: when the solution is right)."""
    if not values:
        return []
    return [v * rollouts >= min_correct - 1e-6 for v in values[:-1]] + [values[-1] > 0]


def first_wrong_pair(prompt_steps: list[str], values: Sequence[float], continuations: dict[int, list[str]],
                     gold: Any) -> tuple[dict | None, str]:
    """The Step-DPO pair of a wrong solution, or None and why not.

    The rejected step is the first step k with v_k = 0; the prefix is steps 1..k-1; the chosen step is
    the first step of the first continuation from that prefix that reaches ``gold``
    (``continuations[k-1]``; sampled from the prompt alone for k = 1)."""
    k = next((j for j, v in enumerate(values, start=1) if v == 0), None)
    if k is None:
        return None, "no_wrong_step"
    prefix = prompt_steps[:k - 1]
    head = prefix_text(prefix)
    rejected = prompt_steps[k - 1]
    for cont in continuations.get(k - 1, []):
        steps = split_steps(cont)
        if steps and is_correct(head + cont, gold):
            if steps[0] == rejected:
                continue
            return {"prefix_steps": prefix, "chosen_step": steps[0], "rejected_step": rejected,
                    "step_index": k}, "kept"
    return None, "no_correct_continuation"
