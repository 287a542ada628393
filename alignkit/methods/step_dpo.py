"""``alignkit step-dpo``: Step-DPO (Lai et al. 2024, "Step-DPO: Step-wise Preference Optimization for
Long-chain Reasoning of LLMs", arXiv:2406.18629): DPO on one reasoning step given the correct steps before it.

Data: rows ``prompt`` (string or chat messages), ``prefix_steps`` (a list of the correct steps so far;
may be empty), ``chosen_step`` and ``rejected_step`` (strings), e.g. from ``alignkit data step-pairs``
or the MCTS-DPO pipeline. Each row becomes a DPO pair with

* context = the prompt (the chat rule, as a user turn's generation prompt under a chat template) followed
  by the prefix steps, each tokenised as ``step + "\\n"`` (:mod:`alignkit.reasoning.steps`); it is the
  pair's ``prompt_ids``: label -100, no loss, only context;
* chosen / rejected = ``chosen_step + "\\n"`` / ``rejected_step + "\\n"``: the only trained tokens. No EOS
  is appended: a step is not the end of an answer.

Everything else is :class:`alignkit.methods.dpo.DPO` unchanged: the ``loss=`` family, ``beta``, the
precomputed and cached reference log-probs, the metrics. It is a data adapter (a separate method name
because the row layout differs), not a second DPO. A context too long for ``max_length`` loses tokens
from its left; a row whose longer step leaves no room for any context is malformed.
"""

from __future__ import annotations

from alignkit.data.io import DataError, iter_records
from alignkit.data.render import render_prompt, row_mode
from alignkit.data.schema import check_text_field
from alignkit.methods.dpo import DPO, DPOConfig
from alignkit.reasoning.steps import encode_steps

STEP_FIELDS = ("prompt", "prefix_steps", "chosen_step", "rejected_step")


class StepDPOConfig(DPOConfig):
    """Step-DPO: DPO on a reasoning step given the prompt and the correct steps before it (prompt, prefix_steps, chosen_step, rejected_step)."""


def _step(row: dict, name: str, path, row_no: int) -> str:
    value = row.get(name)
    if value is None:
        raise DataError("missing", path=path, row=row_no, field=name)
    if not isinstance(value, str) or not value.strip():
        raise DataError(f"expected a non-empty string, got {value!r}", path=path, row=row_no, field=name)
    return value.strip()


def _check_row(rec: dict | DataError, path: str, row_no: int) -> dict:
    if isinstance(rec, DataError):
        raise rec
    prompt = check_text_field(rec, "prompt", path=path, row_no=row_no)
    prefix = rec.get("prefix_steps", [])
    if not isinstance(prefix, (list, tuple)) or any(not isinstance(s, str) or not s.strip() for s in prefix):
        raise DataError("expected a list of non-empty step strings (may be empty)", path=path, row=row_no,
                        field="prefix_steps")
    return {"prompt": prompt, "prefix_steps": [s.strip() for s in prefix],
            "chosen_step": _step(rec, "chosen_step", path, row_no),
            "rejected_step": _step(rec, "rejected_step", path, row_no)}


def read_step_rows(path: str, skip_invalid: bool = False) -> tuple[list[tuple[int, dict]], int]:
    """Validated Step-DPO rows ``(row_number, {prompt, prefix_steps, chosen_step, rejected_step})`` and the
    number of malformed rows skipped (``skip_invalid``; otherwise the first one raises)."""
    out, skipped = [], 0
    for row_no, rec in iter_records(path):
        try:
            out.append((row_no, _check_row(rec, path, row_no)))
        except DataError:
            if not skip_invalid:
                raise
            skipped += 1
    if not out:
        raise DataError(f"no valid rows ({skipped} skipped)", path=path)
    return out, skipped


def tokenize_step_pair(tokenizer, row: dict, max_length: int, chat_template: str) -> dict:
    """One Step-DPO row -> a DPO example ``{"prompt_ids", "chosen_ids", "rejected_ids"}`` (see the module
    docstring)."""
    context = render_prompt(tokenizer, row["prompt"], row_mode(chat_template, row["prompt"])).ids
    if row["prefix_steps"]:
        context = context + encode_steps(tokenizer, row["prefix_steps"])[0]
    chosen, _ = encode_steps(tokenizer, [row["chosen_step"]])
    rejected, _ = encode_steps(tokenizer, [row["rejected_step"]])
    room = max_length - max(len(chosen), len(rejected))
    if room < 1:
        raise DataError(f"a step of {max(len(chosen), len(rejected))} tokens leaves no room for the prompt "
                        f"(max_length {max_length})", field="chosen_step")
    return {"prompt_ids": context[-room:], "chosen_ids": chosen, "rejected_ids": rejected}


class StepDPO(DPO):
    name = "step-dpo"
    config_cls = StepDPOConfig
    data_kinds = ("step_preference",)

    def build_examples(self, path: str) -> list[dict]:
        cfg = self.config
        rows, skipped = read_step_rows(path, cfg.skip_invalid)
        examples = []
        for row_no, row in rows:
            try:
                ex = tokenize_step_pair(self.tokenizer, row, cfg.max_length, cfg.chat_template)
            except DataError as err:
                if not cfg.skip_invalid:
                    raise err.with_location(path, row_no) from None
                skipped += 1
                continue
            examples.append({**ex, "row": row_no})
        if not examples:
            raise DataError(f"no valid rows left after tokenising ({skipped} skipped)", path=path)
        self._example_sets.append((str(path), examples))
        return examples
