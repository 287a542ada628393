"""The self-rewarding loop's settings, its result, and the settings of the engine runs it makes."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import Field

from alignkit.config import SFTConfig, TrainConfig
from alignkit.methods.dpo import DPOConfig

PROMPT_KINDS = ("prompt", "prompt_completion", "preference", "unpaired")


class SelfRewardConfig(DPOConfig):
    """Self-rewarding loop: the model writes prompts, samples answers, judges them itself and is trained with DPO on its own judgements, for `iterations` rounds."""

    iterations: int = Field(2, ge=1, description="self-rewarding iterations (each one DPO run)")
    candidates: int = Field(4, ge=2, description="responses sampled per prompt")
    judge: str = Field("self", description="judge spec: self (the current model), judge:PATH, "
                       "http(s)://HOST:PORT/v1, rm:PATH or FILE.py:FUNC (see alignkit.judges)")
    judge_samples: int = Field(3, ge=1, description="judge samples per response, averaged")
    judge_temperature: float = Field(0.7, ge=0.0, description="sampling temperature of the judge")
    judge_max_new_tokens: int = Field(256, ge=1, description="judge output length limit")
    judge_force_score: bool = Field(False, description="self/local judges: a sample without a 'Score: N' "
                                    "line gets the judge's most likely score after 'Score:' (small models "
                                    "rarely keep the format)")
    temperature: float = Field(0.7, ge=0.0, description="sampling temperature of the responses")
    top_p: float = Field(0.9, gt=0.0, le=1.0, description="nucleus sampling threshold of the responses")
    max_new_tokens: int = Field(256, ge=1, description="response length limit")
    new_prompts: int = Field(64, ge=0, description="new prompts generated per iteration; 0 uses the seed "
                             "prompts (data=) themselves")
    few_shot: int = Field(8, ge=1, description="seed prompts shown in each prompt-generation request")
    prompt_temperature: float = Field(1.0, ge=0.0, description="sampling temperature of prompt generation")
    prompt_max_new_tokens: int = Field(128, ge=1, description="length limit of a generated prompt")
    prompt_min_words: int = Field(3, ge=1, description="generated prompts with fewer words are dropped")
    prompt_max_words: int = Field(200, ge=1, description="generated prompts with more words are dropped")
    generation_batch_size: int = Field(16, ge=1, description="sequences per generation batch")
    sft_data: str | None = Field(None, description="seed instruction data for the optional SFT stage "
                                 "(prompt-completion, text or messages)")
    eft_data: str | None = Field(None, description="ranked data for EFT examples in the SFT stage: rows "
                                 "prompt, completion, score (0-5)[, justification]")
    sft_max_steps: int = Field(-1, description="optimizer steps of the SFT stage; -1: sft_epochs epochs")
    sft_epochs: float = Field(1.0, gt=0, description="epochs of the SFT stage")
    sft_lr: float | None = Field(None, gt=0, description="learning rate of the SFT stage (default: lr)")


class LoopStopped(RuntimeError):
    """The loop cannot go on (e.g. an iteration yielded no preference pairs); the message says why."""


def loop_exit_code(run, output_dir, describe) -> int:
    """Run an iterated pipeline (``run()`` returns a result with ``interrupted``) from the command line:
    0 done (``describe(result)`` is printed), 1 stopped early with a message (:class:`LoopStopped`), 2 user
    error, 3 diverged, 130 interrupted. Shared by ``self-reward`` and ``mcts-dpo``."""
    import sys

    from alignkit.engine.exits import INTERRUPTED, run_for_exit_code

    try:
        result, code = run_for_exit_code(run, {LoopStopped: (1, "stopped")})
    except KeyboardInterrupt:
        print(f"interrupted; continue with resume=true (output_dir={output_dir})", file=sys.stderr)
        return INTERRUPTED
    if code is not None:
        return code
    if result.interrupted:
        return INTERRUPTED
    print(describe(result))
    return 0


@dataclass
class SelfRewardResult:
    output_dir: Path
    iterations: int  # finished iterations
    final_dir: Path | None
    summaries: list[dict] = field(default_factory=list)
    interrupted: bool = False


# ----------------------------------------------------------------------------- sub-configs


def _sub_config(cls: type[TrainConfig], cfg: SelfRewardConfig, **overrides: Any) -> TrainConfig:
    data = cfg.model_dump()
    return cls.model_validate({**{k: data[k] for k in cls.model_fields if k in data}, **overrides})


def dpo_config(cfg: SelfRewardConfig, model: str, pairs: Path, out: Path, resume: bool) -> DPOConfig:
    """The DPO run of one iteration: every TrainConfig/DPO key of ``cfg``, on ``pairs``, from ``model``."""
    return _sub_config(DPOConfig, cfg, model=str(model), data=str(pairs), output_dir=str(out), resume=resume)


def sft_config(cfg: SelfRewardConfig, data: Path, out: Path, resume: bool) -> SFTConfig:
    return _sub_config(SFTConfig, cfg, data=str(data), output_dir=str(out), resume=resume, eval_data=None,
                       max_steps=cfg.sft_max_steps, epochs=cfg.sft_epochs, lr=cfg.sft_lr or cfg.lr)
