"""The MCTS-DPO loop (see the package docstring): tree search -> sibling pairs -> Step-DPO, per iteration."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from alignkit import files
from alignkit.config import ConfigError, dump_config
from alignkit.methods.step_dpo import StepDPO, StepDPOConfig
from alignkit.pipelines.self_reward.config import LoopStopped, loop_exit_code
from alignkit.pipelines.self_reward.loop import _link_final
from alignkit.pipelines.self_reward.stages import Interrupted, StageModel, Stages, train_stage
from alignkit.reasoning.labels import StepSampler, rollout_values
from alignkit.reasoning.mcts import Node, search, sibling_pairs
from alignkit.reasoning.steps import is_final_step, split_steps

SEARCH_KEYS = ("simulations", "branching", "rollouts", "exploration", "selection", "max_depth", "step_max_new_tokens",
               "max_new_tokens", "temperature", "top_p", "pairs_per_prompt", "min_gap", "max_prompts", "seed",
               "chat_template")


class MCTSDPOConfig(StepDPOConfig):
    """MCTS-DPO: per iteration, step-level tree search on math problems (data=: prompt, answer), sibling pairs with the largest value gap, Step-DPO on them."""

    iterations: int = Field(2, ge=1, description="search + Step-DPO rounds, each from the previous round's model")
    simulations: int = Field(8, ge=1, description="tree-search simulations per problem")
    branching: int = Field(3, ge=2, description="next steps sampled when a node is expanded")
    rollouts: int = Field(2, ge=1, description="continuations to the verifier that value a new step")
    exploration: float = Field(1.0, ge=0, description="c of the selection rule")
    selection: Literal["puct", "ucb1"] = Field("puct", description="selection rule")
    max_depth: int = Field(8, ge=1, description="steps after which a node is terminal")
    step_max_new_tokens: int = Field(48, ge=1, description="tokens sampled for one next step")
    max_new_tokens: int = Field(160, ge=1, description="tokens of a value rollout")
    temperature: float = Field(0.8, gt=0, description="sampling temperature of expansion and rollouts")
    top_p: float = Field(1.0, gt=0, le=1, description="nucleus sampling mass")
    pairs_per_prompt: int = Field(2, ge=1, description="sibling pairs kept per problem (largest gap first)")
    min_gap: float = Field(0.25, ge=0, le=1, description="least value gap between chosen and rejected")
    max_prompts: int | None = Field(None, ge=1, description="search only the first N problems of data=")
    generation_batch_size: int = Field(16, ge=1, description="sequences per generation batch")


@dataclass
class MCTSDPOResult:
    output_dir: Path
    iterations: int
    final_dir: Path | None
    summaries: list[dict] = field(default_factory=list)
    interrupted: bool = False


def _log(msg: str) -> None:
    print(f"[mcts-dpo] {msg}", file=sys.stderr, flush=True)


def make_sampler(cfg: MCTSDPOConfig, model: Any, tokenizer: Any) -> Any:
    """The sampler of the search (tests replace it with a scripted one)."""
    return StepSampler(model, tokenizer, max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature,
                       top_p=cfg.top_p, batch_size=cfg.generation_batch_size, chat_template=cfg.chat_template)


def search_problem(cfg: MCTSDPOConfig, sampler: Any, problem: dict, seed: int) -> Node:
    """The tree of one problem (seeds: ``seed`` + simulation, so the same settings give the same tree)."""
    prompt, gold = problem["prompt"], problem["answer"]

    def expand_fn(steps: tuple[str, ...], sim: int) -> list[str]:
        texts = sampler.continue_prefixes([prompt], [list(steps)], cfg.branching, seed + 2 * sim,
                                          max_new_tokens=cfg.step_max_new_tokens)[0]
        return [(split_steps(t) or [""])[0] for t in texts]

    def value_fn(prefixes: list[tuple[str, ...]], sim: int) -> list[float]:
        finished = [bool(p) and (is_final_step(p[-1]) or len(p) >= cfg.max_depth) for p in prefixes]
        return rollout_values(sampler, prompt, gold, prefixes, cfg.rollouts, seed + 2 * sim + 1, finished)

    return search(Node(), expand_fn, value_fn, simulations=cfg.simulations, c=cfg.exploration, rule=cfg.selection,
                  max_depth=cfg.max_depth, is_terminal=is_final_step)


def _sub_config(cfg: MCTSDPOConfig, model: str, pairs: Path, out: Path, resume: bool) -> StepDPOConfig:
    data = cfg.model_dump()
    keys = {k: data[k] for k in StepDPOConfig.model_fields if k in data}
    return StepDPOConfig.model_validate({**keys, "model": str(model), "data": str(pairs), "output_dir": str(out),
                                         "resume": resume, "eval_data": None})


def run_iteration(cfg: MCTSDPOConfig, k: int, out: Path, start: str, start_id: str, problems: list[dict],
                  log=_log) -> dict:
    it = out / f"iter-{k}"
    it.mkdir(parents=True, exist_ok=True)
    state = Stages(it / "stages.json")
    keys = cfg.model_dump()
    f_trees, f_pairs = it / "trees.jsonl", it / "pairs.jsonl"
    fp = files.fingerprint("trees", start_id, problems, {n: keys[n] for n in SEARCH_KEYS})
    t0 = time.time()
    if state.valid("trees", fp, f_trees, f_pairs):
        pairs, trees = files.read_jsonl(f_pairs), files.read_jsonl(f_trees)
        log(f"iteration {k}: reusing {len(trees)} trees and {len(pairs)} pairs")
    else:
        cur = StageModel(str(start), cfg.trust_remote_code)
        sampler = make_sampler(cfg, *cur.get())
        pairs, trees = [], []
        for i, problem in enumerate(problems):
            root = search_problem(cfg, sampler, problem, cfg.seed * 1_000_003 + k * 10_007 + i * 101)
            found = sibling_pairs(root, cfg.min_gap)[:cfg.pairs_per_prompt]
            trees.append({"id": problem["id"], "root_value": root.q, "visits": root.visits, "nodes": root.size(),
                          "pairs": len(found), "tree": root.as_dict()})
            pairs.extend({"id": problem["id"], "prompt": sampler.request(problem["prompt"]), **pair,
                          "answer": problem["answer"]} for pair in found)
            log(f"iteration {k}: problem {i + 1}/{len(problems)}: {root.size()} nodes, root value {root.q:.2f}, "
                f"{len(found)} pair(s), {time.time() - t0:.0f}s so far")
        cur.free()
        files.write_jsonl(f_trees, trees)
        files.write_jsonl(f_pairs, pairs)
        state.mark("trees", fp)
        log(f"iteration {k}: searched {len(problems)} problems ({sum(t['nodes'] for t in trees)} nodes), "
            f"{len(pairs)} pairs, {time.time() - t0:.0f}s")
    search_seconds = round(time.time() - t0, 1)
    if len(pairs) < cfg.batch_size * cfg.grad_accum:
        raise LoopStopped(f"iteration {k} found {len(pairs)} step pair(s), fewer than one optimizer step needs "
                          f"(batch_size {cfg.batch_size} x grad_accum {cfg.grad_accum}); its trees are in {f_trees}. "
                          "Try more simulations, branching or problems, a lower min_gap, or a smaller batch_size.")
    run_dir = it / "model"
    fp_model = files.fingerprint("model", start_id, files.file_digest(f_pairs),
                                 {n: v for n, v in keys.items() if n in StepDPOConfig.model_fields
                                  and n not in ("output_dir", "resume", "data", "model", "eval_data")})
    t1 = time.time()
    final = train_stage("model", StepDPO, lambda resume: _sub_config(cfg, start, f_pairs, run_dir, resume),
                        run_dir, fp_model, state)
    summary = {"iteration": k, "start_model": str(start), "problems": len(trees), "pairs": len(pairs),
               "mean_root_value": sum(t["root_value"] for t in trees) / max(len(trees), 1),
               "nodes": sum(t["nodes"] for t in trees), "search_seconds": search_seconds,
               "train_seconds": round(time.time() - t1, 1), "model": str(final.relative_to(out)), "model_id": fp_model}
    files.write_json(it / "summary.json", summary)
    return summary


def run_mcts_dpo(cfg: MCTSDPOConfig, log=_log) -> MCTSDPOResult:
    from alignkit.reasoning.mathset import load_math_problems

    out = Path(cfg.output_dir)
    if not isinstance(cfg.resume, bool):
        raise ConfigError("mcts-dpo takes resume=true or resume=false (it resumes at its last finished iteration)")
    if ((out / "config.yaml").is_file() or any(out.glob("iter-*"))) and not cfg.resume:
        raise ConfigError(f"{out} already holds an mcts-dpo run: pass resume=true to continue it, or choose another "
                          "output_dir")
    if cfg.data is None:
        raise ConfigError("mcts-dpo needs data=: math problems (rows prompt + answer, `alignkit data math`)")
    problems, _ = load_math_problems(cfg.data)
    problems = problems[:cfg.max_prompts] if cfg.max_prompts else problems
    out.mkdir(parents=True, exist_ok=True)
    dump_config(cfg, out / "config.yaml")
    current, current_id = cfg.model, f"model:{cfg.model}"
    summaries: list[dict] = []
    try:
        for k in range(1, cfg.iterations + 1):
            done = files.read_json(out / f"iter-{k}" / "summary.json")
            if done is not None:
                log(f"iteration {k}: finished earlier, kept")
            else:
                done = run_iteration(cfg, k, out, current, current_id, problems, log)
                log(f"iteration {k}: {done['pairs']} pairs, mean root value {done['mean_root_value']:.2f}, "
                    f"search {done['search_seconds']}s, step-dpo {done['train_seconds']}s")
            summaries.append(done)
            current, current_id = str(out / done["model"]), done["model_id"]
            files.write_jsonl(out / "metrics.jsonl", [
                {"step": s["iteration"], **{n: s[n] for n in ("pairs", "mean_root_value", "nodes", "search_seconds",
                                                              "train_seconds")}} for s in summaries])
    except Interrupted:
        log(f"interrupted; continue with resume=true (output_dir={out})")
        return MCTSDPOResult(out, len(summaries), None, summaries, interrupted=True)
    _link_final(out, Path(current))
    files.write_json(out / "summary.json", {"iterations": summaries, "final": str(Path(current).relative_to(out))})
    return MCTSDPOResult(out, len(summaries), out / "final", summaries)


class MCTSDPO:
    """Registry entry for ``alignkit mcts-dpo`` (a loop over engine runs, like self-reward)."""

    name = "mcts-dpo"
    config_cls = MCTSDPOConfig

    @staticmethod
    def run_loop(config: MCTSDPOConfig) -> int:
        return loop_exit_code(lambda: run_mcts_dpo(config), config.output_dir, lambda result: (
            f"done: {result.iterations} MCTS-DPO iteration(s); model in {result.final_dir}; per-iteration trees "
            f"and pairs in {result.output_dir}/iter-K/, metrics in {result.output_dir / 'metrics.jsonl'}"))
