"""``alignkit bpo`` and ``alignkit aligner``: SFT of the two helper models of :mod:`alignkit.inference.rewriters`.

* **BPO** (Cheng et al. 2023): rows ``prompt``, ``optimized_prompt`` (what ``alignkit data bpo`` writes;
  other columns such as ``critique`` are ignored) -> the user turn ``bpo_request(prompt)`` and the
  rewrite as the answer.
* **Aligner** (Ji et al. 2024): preference rows (``prompt``, ``chosen``, ``rejected``; e.g. a preference
  set, or ``alignkit data critique-revise`` output, whose ``chosen`` is the revision) -> the user turn
  ``aligner_request(prompt, rejected)`` and ``chosen`` as the answer. ``identity_warmup=true`` adds, for
  every row, the copy example ``aligner_request(prompt, chosen) -> chosen`` (the paper's warm-up on
  "already good" answers, so the corrector learns to leave good answers alone).

The loss is SFT's, on the answer tokens only (the request, with the question and the original answer in
it, is context). ``final/alignkit.json`` records ``trained_as`` so ``--prompt-optimizer`` / ``--aligner``
accept the model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field

from alignkit.config import SFTConfig, TrainConfig
from alignkit.data import DataError, LoadedRows, load_examples, tokenize_sft
from alignkit.data.schema import check_text_field
from alignkit.inference.rewriters import ALIGNER, BPO, aligner_request, bpo_request, user_text
from alignkit.methods.common import record_trained_as
from alignkit.methods.sft import SFT


def _text(value: Any) -> str:
    return value if isinstance(value, str) else "\n".join(m["content"] for m in value)


def _turns(request: str, answer: str) -> dict[str, Any]:
    return {"prompt": [{"role": "user", "content": request}], "completion": [{"role": "assistant", "content": answer}]}


class _RewriterSFT(SFT):
    """SFT on (request -> answer) turns made from each row of ``data_kinds`` by :meth:`examples_of`."""

    trained_as = ""

    def examples_of(self, row: dict[str, Any], path: str, row_no: int) -> list[dict[str, Any]]:
        """The training turns of one row (raises :class:`DataError` for a malformed one)."""
        raise NotImplementedError

    def rows(self, path: str) -> LoadedRows:
        loaded = load_examples(path, self.data_kinds, self.config.skip_invalid)
        rows, numbers = [], []
        for row_no, row in loaded:
            try:
                made = self.examples_of(row, path, row_no)
            except DataError as err:
                if not self.config.skip_invalid:
                    raise
                loaded.record_skip(err)
                continue
            rows += made
            numbers += [row_no] * len(made)
        if not rows:
            raise DataError(f"no valid rows; the first error was: {loaded.errors[0]}", path=path)
        return LoadedRows(path=str(path), kind="prompt_completion", rows=rows, row_numbers=numbers,
                          skipped=loaded.skipped, errors=loaded.errors)

    def build_examples(self, path: str) -> list[dict]:
        cfg = self.config
        return tokenize_sft(self.rows(path), self.tokenizer, cfg.max_length, chat_template="auto",
                            skip_invalid=cfg.skip_invalid)

    def save_final(self, model: Any, tokenizer: Any, final_dir: Path, config: TrainConfig) -> None:
        super().save_final(model, tokenizer, final_dir, config)
        record_trained_as(final_dir, self.trained_as)


class BPOConfig(SFTConfig):
    """BPO prompt optimizer: SFT from prompt to optimized_prompt."""


class BPOMethod(_RewriterSFT):
    name = "bpo"
    config_cls = BPOConfig
    data_kinds = ("prompt",)
    trained_as = BPO

    def examples_of(self, row: dict[str, Any], path: str, row_no: int) -> list[dict[str, Any]]:
        rewrite = check_text_field(row, "optimized_prompt", path=path, row_no=row_no, completion=True)
        return [_turns(bpo_request(user_text(row["prompt"])), _text(rewrite))]


class AlignerConfig(SFTConfig):
    """Aligner answer corrector: SFT from (question, weaker answer) to the better answer."""

    identity_warmup: bool = Field(False, description="also train to copy the chosen answer unchanged "
                                  "(aligner_request(prompt, chosen) -> chosen) for every row")


class AlignerMethod(_RewriterSFT):
    name = "aligner"
    config_cls = AlignerConfig
    data_kinds = ("preference",)
    trained_as = ALIGNER

    def examples_of(self, row: dict[str, Any], path: str, row_no: int) -> list[dict[str, Any]]:
        question, chosen, rejected = user_text(row["prompt"]), _text(row["chosen"]), _text(row["rejected"])
        made = [_turns(aligner_request(question, rejected), chosen)]
        if self.config.identity_warmup:
            made.append(_turns(aligner_request(question, chosen), chosen))
        return made
