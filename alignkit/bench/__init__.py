"""``alignkit bench``: alignkit against a peer (TRL) on the same model, data and settings, in one run.

Each side runs in its own child process, one after the other, so that wall time and peak memory
(``ru_maxrss`` of that process) cover everything a user would wait for: imports, model load, data
preparation, training. The child prints one JSON line with its figures; the parent prints a table
and the ratios.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

from alignkit import files

RESULT_PREFIX = "ALIGNKIT_BENCH_RESULT "


def emit_result(result: dict) -> None:
    """Called in a child: report figures to the parent (peak RSS of this process added here)."""
    import resource

    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(RESULT_PREFIX + json.dumps(result), flush=True)


def run_child(module: str, args: dict, log_path: Path) -> dict:
    """Run ``python -m module --args JSON`` and return its result with the parent-side wall time."""
    cmd = [sys.executable, "-m", module, "--args", json.dumps(args)]
    t0 = time.perf_counter()
    with log_path.open("w") as log:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=log, text=True)
    wall = time.perf_counter() - t0
    result = None
    for line in proc.stdout.splitlines():
        if line.startswith(RESULT_PREFIX):
            result = json.loads(line[len(RESULT_PREFIX):])
    if proc.returncode != 0 or result is None:
        raise RuntimeError(f"{module} failed (exit {proc.returncode}); see {log_path}")
    result["wall_s"] = wall
    return result


def ensure_model(name: str) -> None:
    """Convert a GGUF model (the embedded default) to its cached safetensors directory before anything is
    timed: a one-off install cost that would otherwise land in whichever side runs first."""
    from alignkit.models import resolve_model

    resolve_model(name)


def child_settings() -> dict:
    """In a child: the settings dict the parent passed as ``--args JSON``."""
    p = argparse.ArgumentParser()
    p.add_argument("--args", required=True)
    return json.loads(p.parse_args().args)


def prepare_run(args: argparse.Namespace, filename: str, rows: list[dict]) -> dict:
    """In the parent: create the output directory, convert the model, write the bench data, and return
    the settings every child gets (each bench adds its own)."""
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    ensure_model(args.model)
    files.write_jsonl(out / filename, rows)
    return {"model": args.model, "data": str(out / filename), "steps": args.steps, "lora_r": args.lora_r,
            "seed": 42, "output_dir": str(out), "gradient_checkpointing": args.gradient_checkpointing}


def read_rows(path: str) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def load_trl_model(name: str):
    """The peer's model and tokenizer, read from the same local directory alignkit uses (no download)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from alignkit.models import build_tiny_random, load_tokenizer, resolve_model

    path = resolve_model(name)
    if path == "tiny-random":
        return build_tiny_random(), load_tokenizer("tiny-random")
    model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True, use_safetensors=True)
    return model, AutoTokenizer.from_pretrained(path, local_files_only=True)


def train_alignkit(method_cls, s: dict, overrides: list[str]) -> tuple[float, list[dict]]:
    """In a child: train ``method_cls`` with the common settings of ``s`` plus ``overrides`` in a fresh
    run directory; returns the training time (s) and the logged metrics rows."""
    import shutil

    from alignkit.config import load_config
    from alignkit.engine.logging import read_metrics
    from alignkit.engine.trainer import train

    run_dir = Path(s["output_dir"]) / "alignkit-run"
    shutil.rmtree(run_dir, ignore_errors=True)
    config = load_config(method_cls.config_cls, None, [
        f"model={s['model']}", f"data={s['data']}", f"output_dir={run_dir}", f"max_steps={s['steps']}",
        f"max_length={s['max_length']}", f"lora.r={s['lora_r']}", f"lora.alpha={2 * s['lora_r']}",
        f"lr={s['lr']}", f"seed={s['seed']}", "scheduler=linear", "max_grad_norm=1.0",
        f"gradient_checkpointing={str(s['gradient_checkpointing']).lower()}", *overrides,
    ])
    t0 = time.perf_counter()
    train(method_cls, config)
    return time.perf_counter() - t0, read_metrics(run_dir)


def trl_side(s: dict, metric: str) -> SimpleNamespace:
    """In a TRL child: the ``trl`` module, model and tokenizer, dataset, LoRA config, the training
    arguments both benches share (``common``), and a callback that collects the logged ``metric``
    into ``values``; ``t0`` is when set-up began."""
    t0 = time.perf_counter()
    try:
        import trl
        from datasets import Dataset
        from peft import LoraConfig
        from transformers import TrainerCallback
    except ImportError as e:
        raise SystemExit(f"TRL side needs the bench extra (pip install 'alignkit[bench]'): {e}") from None
    values: list[float] = []

    class Capture(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and metric in logs:
                values.append(float(logs[metric]))

    model, tokenizer = load_trl_model(s["model"])
    common = dict(output_dir=str(Path(s["output_dir"]) / "trl-run"), max_steps=s["steps"], learning_rate=s["lr"],
                  logging_steps=1, report_to=[], save_strategy="no", seed=s["seed"], use_cpu=True,
                  lr_scheduler_type="linear", warmup_steps=0, max_grad_norm=1.0, disable_tqdm=True,
                  bf16=bool(s.get("bf16")), gradient_checkpointing=bool(s["gradient_checkpointing"]))
    lora = LoraConfig(r=s["lora_r"], lora_alpha=2 * s["lora_r"], lora_dropout=0.0, target_modules="all-linear",
                      task_type="CAUSAL_LM")
    return SimpleNamespace(trl=trl, model=model, tokenizer=tokenizer, dataset=Dataset.from_list(read_rows(s["data"])),
                           lora=lora, common=common, callback=Capture(), values=values, t0=t0)


def run_sides(bench: str, settings: dict, out: Path, only: str | None) -> list[tuple[str, dict]]:
    """Run ``alignkit.bench.{bench}_alignkit`` then ``..._trl`` (or ``only`` one) as children."""
    results = []
    for name in ("alignkit", "trl"):
        if only and only != name:
            continue
        print(f"running {name} ...", flush=True)
        results.append((name, run_child(f"alignkit.bench.{bench}_{name}", settings, out / f"{name}.log")))
    return results


def print_ratios(a: dict, t: dict, time_key: str, time_label: str) -> dict:
    """Print (and return) TRL/alignkit time ratios and the alignkit/TRL peak-memory ratio."""
    wall = t["wall_s"] / a["wall_s"]
    timed = t[time_key] / a[time_key]
    memory = a["peak_rss_mb"] / t["peak_rss_mb"]
    print(f"\nspeed-up, whole process (TRL wall / alignkit wall): {wall:.2f}x")
    print(f"speed-up, {time_label} (TRL / alignkit): {timed:.2f}x")
    print(f"peak memory (alignkit / TRL): {memory:.2f}")
    return {"speedup": wall, "speedup_" + time_key: timed, "memory_ratio": memory}


def format_table(rows: list[tuple[str, dict]], keys: list[tuple[str, str]]) -> str:
    """Rows of (name, figures) as an aligned text table; ``keys`` = [(key, header)]."""
    header = f"{'':<10}" + "".join(f"{h:>16}" for _, h in keys)
    lines = [header]
    for name, fig in rows:
        cells = []
        for k, _ in keys:
            v = fig.get(k)
            cells.append(f"{v:>16.4f}" if isinstance(v, float) else f"{str(v):>16}")
        lines.append(f"{name:<10}" + "".join(cells))
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="alignkit bench",
        description="Side-by-side speed and memory against TRL (needs `pip install alignkit[bench]`).",
    )
    sub = p.add_subparsers(dest="which", required=True)
    dpo = sub.add_parser("dpo", help="alignkit dpo vs TRL DPOTrainer")
    dpo.add_argument("--steps", type=int, default=12)
    dpo.add_argument("--batch-size", type=int, default=4)
    dpo.add_argument("--max-length", type=int, default=256)
    grpo = sub.add_parser("grpo", help="alignkit grpo vs TRL GRPOTrainer")
    grpo.add_argument("--steps", type=int, default=8)
    grpo.add_argument("--prompts-per-step", type=int, default=2)
    grpo.add_argument("--num-generations", type=int, default=4)
    grpo.add_argument("--max-new-tokens", type=int, default=32)
    grpo.add_argument("--bf16", action="store_true",
                      help="bf16 mixed precision on both sides (alignkit bf16=true, TRL bf16=True)")
    grpo.add_argument("--rollout-dtype", choices=["float32", "bfloat16"], default=None,
                      help="alignkit samples from a merged copy in this dtype (TRL has no CPU equivalent); "
                           "default: both sample from the training model")
    for name, bench in (("dpo", dpo), ("grpo", grpo)):
        bench.add_argument("--model", default="smollm2-135m")
        bench.add_argument("--lora-r", type=int, default=16)
        bench.add_argument("--gradient-checkpointing", action="store_true",
                           help="on for both sides (TRL's default); off by default")
        bench.add_argument("--output-dir", default=f"runs/bench-{name}")
        bench.add_argument("--only", choices=["alignkit", "trl"], default=None, help="run one side only")
    args = p.parse_args(argv)
    if args.which == "dpo":
        from alignkit.bench.dpo import run

        return run(args)
    from alignkit.bench.grpo import run

    return run(args)
