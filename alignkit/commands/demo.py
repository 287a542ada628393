"""``alignkit demo``: a short LoRA SFT run on the embedded model, with a measured before/after.

The shipped training file (``assets/demo_sft.jsonl``) answers every question in one sentence ending
with "Hope this helps!". The demo generates answers to held-out questions (``assets/demo_prompts.jsonl``,
never trained on) before and after training and reports how many follow that style.
"""

from __future__ import annotations

import argparse
import json
import time
from importlib.resources import files

MARKER = "Hope this helps!"


def _asset(name: str) -> str:
    return str(files("alignkit") / "assets" / name)


def _style_rate(answers: list[str]) -> float:
    return sum(a.strip().endswith(MARKER) for a in answers) / max(1, len(answers))


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="alignkit demo", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="smollm2-135m", help="model to align (default: the embedded SmolLM2-135M)")
    p.add_argument("--output-dir", default="runs/demo", help="run directory (default: runs/demo)")
    p.add_argument("--steps", type=int, default=40, help="optimizer steps (default 40)")
    p.add_argument("--quick", action="store_true", help="a shorter run (12 steps)")
    args = p.parse_args(argv)
    steps = 12 if args.quick else args.steps

    from alignkit import models
    from alignkit.config import SFTConfig, load_config
    from alignkit.data import load_examples
    from alignkit.engine.trainer import train
    from alignkit.methods.sft import SFT

    prompts = [r["prompt"] for r in load_examples(_asset("demo_prompts.jsonl"), ("prompt",), False).rows]
    print(f"[1/3] answering {len(prompts)} held-out questions with the base model ({args.model})")
    base_model = models.load_model(args.model)
    tokenizer = models.load_tokenizer(args.model)
    before = models.generate(base_model, tokenizer, prompts, max_new_tokens=48)
    del base_model

    print(f"[2/3] LoRA SFT for {steps} steps on {_asset('demo_sft.jsonl')}")
    config = load_config(SFTConfig, None, [
        f"model={args.model}", f"data={_asset('demo_sft.jsonl')}", f"output_dir={args.output_dir}",
        f"max_steps={steps}", "batch_size=4", "lr=1e-3", "lora.r=16", "lora.alpha=32", "max_length=128",
        "warmup_steps=2", f"save_steps={steps}",
    ])
    import shutil

    shutil.rmtree(args.output_dir, ignore_errors=True)
    t0 = time.perf_counter()
    result = train(SFT, config)
    seconds = time.perf_counter() - t0

    print("[3/3] answering the same held-out questions with the trained model")
    model, tok = models.load_trained(result.final_dir)
    after = models.generate(model, tok, prompts, max_new_tokens=48)

    print(f"\ntraining took {seconds:.0f} s; model saved in {result.final_dir}\n")
    print(f"held-out answers in the trained style (ending with '{MARKER}'): "
          f"before {_style_rate(before):.0%}, after {_style_rate(after):.0%}\n")
    for q, b, a in zip(prompts, before, after):
        print(f"Q: {q}\n  before: {b.strip()}\n  after:  {a.strip()}")
    with open(f"{args.output_dir}/demo_samples.jsonl", "w") as f:
        for q, b, a in zip(prompts, before, after):
            f.write(json.dumps({"prompt": q, "before": b, "after": a}) + "\n")
    return 0
