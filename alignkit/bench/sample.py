"""``alignkit bench sample``: HF ``model.generate`` against alignkit's decode loop, in one process.

Three samplers: ``hf`` (``model.generate``), ``fast`` (alignkit's decode loop over the model's own
forward) and ``lean`` (the same loop over :mod:`alignkit.generation.lean`, the default where the model
supports it). ``--lora-r R`` wraps the model in a LoRA adapter of rank R with random non-zero B matrices
(a trained adapter's cost, as the online methods sample it). All samplers get the same tokenised prompts (the shipped instruction set's train prompts as user
turns), the same batch and the same limits; they alternate, ``--repeats`` times each, and the best
time of each is reported with its tokens/s (completion tokens generated per second), its ratio to the
other, and its distance to the limit: the compute-bound and memory-bandwidth-bound time of the same
generation (:func:`alignkit.bench.limits.generation_flops` on the lengths alignkit's loop produced,
matmul throughput measured at the decode batch's shape, bandwidth measured by a large read).
Greedy runs also report whether the two samplers' tokens agree.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from alignkit import files

SAMPLERS = ("hf", "fast", "lean")


def _prompts(tokenizer, n: int) -> list[list[int]]:
    from alignkit.data.render import render_prompt, request_prompt
    from alignkit.evaluation.instructions import load_instructions

    train = load_instructions(None, split="train")[:n]
    return [render_prompt(tokenizer, request_prompt(tokenizer, ins.prompt)).ids for ins in train]


def run(args: argparse.Namespace) -> int:

    from alignkit.bench import BenchError, Report, measure_machine
    from alignkit.bench.limits import bound_seconds, generation_flops, shape_of
    from alignkit.generation import sample_completions
    from alignkit.models import load_model, load_tokenizer

    if args.prompts < 1 or args.generations < 1 or args.max_new_tokens < 1 or args.repeats < 1:
        raise BenchError("--prompts, --generations, --max-new-tokens and --repeats must be at least 1")
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    report = Report("alignkit bench sample: HF generate vs alignkit's decode loop")
    model, tok = load_model(args.model).eval(), load_tokenizer(args.model)
    if args.lora_r:
        model = _with_adapter(model, args.lora_r)
    prompts = _prompts(tok, args.prompts)
    kw = dict(pad_id=tok.pad_token_id, eos_id=tok.eos_token_id, max_new_tokens=args.max_new_tokens,
              temperature=args.temperature, num_generations=args.generations)
    best: dict[str, float] = {}
    rollouts = {}
    for rep in range(args.repeats):
        for name in SAMPLERS:
            t0 = time.perf_counter()
            rollouts[name] = sample_completions(model, prompts, sampler=name, generator_seed=rep, **kw)
            best[name] = min(best.get(name, float("inf")), time.perf_counter() - t0)
    tokens = {name: int(r.completion_lengths.sum()) for name, r in rollouts.items()}

    shape = shape_of(model.config)
    rows = len(prompts) * args.generations
    groups = [(len(p), [len(c) for c in rollouts["lean"].completion_ids[i * args.generations:
                                                                       (i + 1) * args.generations]])
              for i, p in enumerate(prompts)]
    flops = generation_flops(shape, groups, element_size=4)
    machine = measure_machine(report, shape, tokens=rows, scored=rows, seq_len=max(len(p) for p in prompts),
                              rows=1)
    gflops = machine["throughput"]["float32"]["gflops"]
    read_gbs = machine["bandwidth"]["read_gbs"]
    bound = bound_seconds(flops, gflops, read_gbs=read_gbs)
    result = {
        "settings": {k: getattr(args, k) for k in ("model", "lora_r", "prompts", "generations", "max_new_tokens",
                                                   "temperature", "repeats")},
        "machine": machine,
        "seconds": best, "completion_tokens": tokens,
        "tokens_per_s": {n: tokens[n] / best[n] for n in SAMPLERS},
        "speedup": best["hf"] / best["fast"], "lean_speedup": best["hf"] / best["lean"],
        "lean_over_fast": best["fast"] / best["lean"],
        "bound": bound, "flops": flops.as_dict(),
        "fast_over_bound": best["fast"] / bound["generation_s"], "lean_over_bound": best["lean"] / bound["generation_s"],
    }
    if args.temperature == 0:
        for name in ("fast", "lean"):
            same = sum(a == b for a, b in zip(rollouts["hf"].completion_ids, rollouts[name].completion_ids))
            result[f"greedy_rows_equal_{name}"] = f"{same}/{rows}"
    report.line(f"{len(prompts)} prompts x {args.generations} samples, <= {args.max_new_tokens} new tokens, "
                f"temperature {args.temperature}, best of {args.repeats}"
                + (f", LoRA r={args.lora_r} unmerged (random B)" if args.lora_r else ""))
    report.table([(name, {"s": best[name], "tokens": tokens[name], "tok_s": result["tokens_per_s"][name],
                          "over_bound": best[name] / bound["generation_s"]}) for name in SAMPLERS],
                 [("s", "seconds"), ("tokens", "completion tokens"), ("tok_s", "tokens/s"),
                  ("over_bound", "time / bound")])
    report.line(f"alignkit's loop is {result['speedup']:.2f}x HF generate over the model's forward, "
                f"{result['lean_speedup']:.2f}x over the lean forward ({result['lean_over_fast']:.2f}x the loop "
                f"over the model's forward); bound {bound['generation_s']:.1f} s "
                f"(prefill {bound['prefill_s']:.1f} s + decode max(compute {bound['decode_compute_s']:.1f} s, "
                f"weights+cache read {bound['decode_memory_s']:.1f} s)) at {gflops:.0f} GFLOP/s and "
                f"{read_gbs:.1f} GB/s")
    if args.temperature == 0:
        report.line(f"greedy rows with the tokens of HF generate: fast {result['greedy_rows_equal_fast']}, "
                    f"lean {result['greedy_rows_equal_lean']}")
    files.write_text(out / "bench.json", json.dumps(result, indent=2))
    report.write(out / "bench.md")
    return 0


def _with_adapter(model, r: int):
    """``model`` in a LoRA adapter of rank ``r`` on every linear layer, B drawn N(0, 0.01²) (seeded)."""
    import torch

    from alignkit.config import LoraSettings
    from alignkit.models.loading import apply_lora

    model = apply_lora(model, LoraSettings(r=r, alpha=2 * r)).eval()
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.01)
    return model
