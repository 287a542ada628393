"""The whole self-rewarding loop (``run_self_reward``) and its command-line entry (``SelfReward``)."""

from __future__ import annotations

import math
import os
import shutil
from pathlib import Path
from typing import Any

from alignkit import files
from alignkit.aifeedback import judging
from alignkit.config import ConfigError, SFTConfig, dump_config
from alignkit.pipelines.self_reward.config import SelfRewardConfig, SelfRewardResult, sft_config
from alignkit.pipelines.self_reward.iteration import _log, is_self_judge, pct, run_iteration
from alignkit.pipelines.self_reward.stages import (
    Interrupted,
    Stages,
    build_sft_rows,
    load_seed_prompts,
    train_stage,
)


def _load_judge(spec: str, **kwargs: Any) -> Any:
    """The default judge factory (``alignkit.judges.load_judge``); tests replace it with stubs."""
    return judging.load_pointwise(spec, **kwargs)


# ----------------------------------------------------------------------------- the loop


def _link_final(out: Path, target: Path) -> None:
    link = out / "final"
    tmp = out / f".final-link-{os.getpid()}"
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    try:
        os.symlink(os.path.relpath(target, out), tmp)
        if link.is_dir() and not link.is_symlink():
            shutil.rmtree(link)
        os.replace(tmp, link)
    except OSError:  # no symlinks here: copy
        if link.is_symlink() or link.is_file():
            link.unlink()
        elif link.exists():
            shutil.rmtree(link)
        shutil.copytree(target, link)


def _metric_row(s: dict) -> dict:
    row = {"step": s["iteration"], "pairs": s["pairs"]["kept"], "prompts": s["prompts"]["used"],
           "judge_parse_rate": s["judge_parse_rate"], "judge_forced_rate": s.get("judge_forced_rate"),
           "mean_score": s["mean_score"],
           "mean_chosen_score": s["mean_chosen_score"], "mean_rejected_score": s["mean_rejected_score"]}
    for k, v in s.get("dpo", {}).items():
        if k != "step":
            row[f"dpo/{k}"] = v
    return {k: v for k, v in row.items() if v is not None and not (isinstance(v, float) and math.isnan(v))}


def run_self_reward(cfg: SelfRewardConfig, *, judge_factory=None, log=_log) -> SelfRewardResult:
    """The whole loop; see the module docstring. ``judge_factory(spec, policy=, tokenizer=,
    judge_samples=, temperature=, max_new_tokens=, seed=)`` returns a pointwise judge (default
    ``alignkit.judges.load_judge``)."""
    factory = judge_factory or _load_judge
    out = Path(cfg.output_dir)
    if not isinstance(cfg.resume, bool):
        raise ConfigError("self-reward takes resume=true or resume=false (it resumes at its last finished "
                          "iteration; a checkpoint path is not used)")
    earlier = (out / "config.yaml").is_file() or any(out.glob("iter-*"))
    if earlier and not cfg.resume:
        raise ConfigError(f"{out} already holds a self-reward run: pass resume=true to continue it, or choose "
                          "another output_dir")
    # inputs first, so that a bad file or judge spec stops the run before any model is loaded
    seeds = load_seed_prompts(cfg.data, cfg.skip_invalid)
    is_self_judge(cfg.judge)
    sft_rows = build_sft_rows(cfg) if (cfg.sft_data or cfg.eft_data) else None
    if cfg.eval_data:
        from alignkit.data import load_examples

        load_examples(cfg.eval_data, ("preference",), cfg.skip_invalid)
    out.mkdir(parents=True, exist_ok=True)
    dump_config(cfg, out / "config.yaml")
    top = Stages(out / "stages.json")

    current: str = cfg.model
    current_id = f"model:{cfg.model}"
    summaries: list[dict] = []
    try:
        if sft_rows is not None:
            from alignkit.methods.sft import SFT

            data = out / "sft-data.jsonl"
            fp_data = files.fingerprint("sft-data", sft_rows)
            if not top.valid("sft-data", fp_data, data):
                files.write_jsonl(data, sft_rows)
                top.mark("sft-data", fp_data)
            sft_keys = {k: v for k, v in cfg.model_dump().items()
                        if k in SFTConfig.model_fields and k not in ("output_dir", "resume", "data", "eval_data")}
            fp = files.fingerprint("sft", fp_data, sft_keys, cfg.sft_max_steps, cfg.sft_epochs, cfg.sft_lr)
            if top.get("sft") not in (None, fp) and any(out.glob("iter-*/summary.json")):
                raise ConfigError(f"the SFT stage's settings or data changed since {out} ran its iterations; "
                                  "use a new output_dir")
            log(f"SFT stage: {len(sft_rows)} examples (seed instructions + EFT) on {cfg.model}")
            final = train_stage("sft", SFT, lambda resume: sft_config(cfg, data, out / "sft", resume),
                                 out / "sft", fp, top)
            current, current_id = str(final), f"sft:{fp}"

        for k in range(1, cfg.iterations + 1):
            done = files.read_json(out / f"iter-{k}" / "summary.json")
            if done is not None:
                log(f"iteration {k}: finished earlier, kept")
            else:
                done = run_iteration(cfg, k, out, current, current_id, seeds, factory, log)
                log(f"iteration {k}: {done['pairs']['kept']} pairs, judge parse rate "
                    f"{pct(done['judge_parse_rate'])}, mean score {_fmt(done['mean_score'])}; model {done['model']}")
            summaries.append(done)
            current, current_id = str(out / done["model"]), done["model_id"]
            files.write_jsonl(out / "metrics.jsonl", [_metric_row(s) for s in summaries])
    except Interrupted:
        log(f"interrupted; continue with resume=true (output_dir={out})")
        return SelfRewardResult(out, len(summaries), None, summaries, interrupted=True)
    final = Path(current)
    _link_final(out, final)
    files.write_json(out / "summary.json", {"iterations": summaries, "final": str(final.relative_to(out))})
    return SelfRewardResult(out, len(summaries), out / "final", summaries)


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2f}"


class SelfReward:
    """Registry entry for ``alignkit self-reward``: a loop over several engine runs, so the command line
    calls :meth:`run_loop` instead of the engine's ``train``."""

    name = "self-reward"
    config_cls = SelfRewardConfig

    @staticmethod
    def run_loop(config: SelfRewardConfig) -> int:
        """Run the loop from the command line; returns the exit code (0 done, 1 stopped early with a
        message, 2 user error, 3 diverged, 130 interrupted)."""
        from alignkit.pipelines.self_reward.config import loop_exit_code

        return loop_exit_code(lambda: run_self_reward(config), config.output_dir, lambda result: (
            f"done: {result.iterations} self-rewarding iteration(s); model in {result.final_dir}; per-iteration "
            f"files in {result.output_dir}/iter-K/, metrics in {result.output_dir / 'metrics.jsonl'}"))
