"""Resumable stages of the loop: engine runs, stage fingerprints, inputs, and the model the stages share."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alignkit import files
from alignkit.aifeedback.eft import build_eft_examples, eft_rows
from alignkit.config import ConfigError, TrainConfig
from alignkit.generation import texts as generation
from alignkit.pipelines.self_reward.config import PROMPT_KINDS, SelfRewardConfig

# ----------------------------------------------------------------------------- engine runs


class Interrupted(Exception):
    pass


def engine_run(method_cls: type, config: TrainConfig) -> Path:
    from alignkit.engine.trainer import train

    result = train(method_cls, config)
    if result.interrupted:
        raise Interrupted
    return Path(result.final_dir)


def _has_checkpoints(run_dir: Path) -> bool:
    from alignkit.engine.checkpoint import list_checkpoints

    return bool(list_checkpoints(run_dir))


def train_stage(name: str, method_cls: type, make_config, run_dir: Path, fp: str, state: Stages) -> Path:
    """An engine run as a resumable stage: reused when finished with the same fingerprint, continued
    from its checkpoint when interrupted with the same fingerprint, else (re)started from scratch."""
    final = run_dir / "final"
    if state.valid(name, fp) and final.is_dir():
        return final
    resume = state.get(f"{name}_started") == fp and _has_checkpoints(run_dir)
    if not resume and run_dir.exists():
        shutil.rmtree(run_dir)
    state.mark(f"{name}_started", fp)
    engine_run(method_cls, make_config(resume))
    state.mark(name, fp)
    return final


# ----------------------------------------------------------------------------- stage bookkeeping


class Stages:
    """``stages.json``: stage name -> fingerprint of what the stage's file was made from."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.done: dict[str, Any] = files.read_json(path, {}) or {}
        self.redo = False  # once a stage is redone, every later stage is too

    def get(self, name: str) -> Any:
        return self.done.get(name)

    def valid(self, name: str, fp: str, *files: Path) -> bool:
        ok = not self.redo and self.done.get(name) == fp and all(f.exists() for f in files)
        if not ok:
            self.redo = True
        return ok

    def mark(self, name: str, fp: Any) -> None:
        self.done[name] = fp
        files.write_json(self.path, self.done)


# ----------------------------------------------------------------------------- inputs


def load_seed_prompts(path: str | None, skip_invalid: bool = False) -> list:
    if not path:
        raise ConfigError("self-reward needs seed prompts: set data=FILE (a file with a 'prompt' field)")
    from alignkit.data import load_examples

    loaded = load_examples(path, PROMPT_KINDS, skip_invalid)
    return [row["prompt"] for row in loaded.rows]


def build_sft_rows(cfg: SelfRewardConfig) -> list[dict]:
    """The SFT stage's training rows: ``sft_data`` (as given) plus EFT examples from ``eft_data``, in
    one file of ``sft_data``'s kind (EFT rows become ``messages`` rows next to language-modelling data)."""
    from alignkit.data import load_examples

    rows: list[dict] = []
    kind = "prompt_completion"
    if cfg.sft_data:
        loaded = load_examples(cfg.sft_data, ("lm", "prompt_completion"), cfg.skip_invalid)
        kind = loaded.kind
        rows = [dict(r) for r in loaded.rows]
    if cfg.eft_data:
        for ex in build_eft_examples(eft_rows(cfg.eft_data), cfg.chat_template):
            if kind == "prompt_completion":
                rows.append(ex)
            elif cfg.chat_template == "never":
                rows.append({"text": f"{ex['prompt']}\n{ex['completion']}"})
            else:
                rows.append({"messages": ex["prompt"] + ex["completion"]})
    return rows


# ----------------------------------------------------------------------------- one iteration


@dataclass
class StageModel:
    """The iteration's current model, loaded on first use (a fully reused iteration loads nothing)."""

    name: str
    trust_remote_code: bool
    model: Any = None
    tokenizer: Any = None

    def get(self) -> tuple[Any, Any]:
        if self.model is None:
            self.model, self.tokenizer = generation.load_generator(self.name, trust_remote_code=self.trust_remote_code)
        return self.model, self.tokenizer

    def free(self) -> None:
        if self.model is not None:
            m, self.model = self.model, None
            generation.release(m)


def prompt_generator(cfg: SelfRewardConfig, cur: StageModel):
    """Prompt synthesis calls; a request that used up ``prompt_max_new_tokens`` was cut off: ``None``."""

    def gen(prompts: list, seed: int) -> list[str | None]:
        model, tok = cur.get()
        outs = generation.generate_texts(model, tok, prompts, max_new_tokens=cfg.prompt_max_new_tokens,
                                         temperature=cfg.prompt_temperature, top_p=cfg.top_p, seed=seed,
                                         batch_size=cfg.generation_batch_size, chat_template=cfg.chat_template)
        limit = cfg.prompt_max_new_tokens - 1
        return [None if len(tok(o, add_special_tokens=False)["input_ids"]) >= limit else o for o in outs]

    return gen
