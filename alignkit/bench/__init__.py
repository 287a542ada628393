"""``alignkit bench``: alignkit against a peer (TRL) on the same model, data and settings, in one run.

Each side runs in its own child process, one after the other, so that wall time and peak memory
(``ru_maxrss`` of that process) cover everything a user would wait for: imports, model load, data
preparation, training. The child prints one JSON line with its figures; the parent prints a table
and the ratios, and writes them to ``bench.json`` and ``bench.md`` in the output directory.

Before the sides run, the parent measures this machine's limit (:mod:`alignkit.bench.limits`): matmul
throughput at the model's shapes and memory bandwidth; after them it counts the run's FLOPs from its
token counts and prints the compute-bound time and each side's training time over it.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from types import SimpleNamespace

from alignkit import files

RESULT_PREFIX = "ALIGNKIT_BENCH_RESULT "
SWEEP_TOKENS = (64, 128, 256)


class BenchError(ValueError):
    """Bad bench settings: reported as one line, exit status 2."""


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


def write_data(args: argparse.Namespace, filename: str, rows: list[dict]) -> str:
    """In the parent: create the output directory and write the bench data there; returns its path."""
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    files.write_jsonl(out / filename, rows)
    return str(out / filename)


def prepare_run(args: argparse.Namespace, data: str) -> dict:
    """In the parent: convert the model and return the settings every child gets (each bench adds its
    own)."""
    ensure_model(args.model)
    return {"model": args.model, "data": data, "steps": args.steps, "lora_r": args.lora_r,
            "seed": 42, "output_dir": str(args.output_dir), "gradient_checkpointing": args.gradient_checkpointing}


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
        f"gradient_checkpointing={str(s['gradient_checkpointing'] or False).lower()}", *overrides,
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


def print_ratios(report: Report, a: dict, t: dict, time_key: str, time_label: str) -> dict:
    """Report (and return) TRL/alignkit time ratios and the alignkit/TRL peak-memory ratio."""
    wall = t["wall_s"] / a["wall_s"]
    timed = t[time_key] / a[time_key]
    memory = a["peak_rss_mb"] / t["peak_rss_mb"]
    report.line(f"speed-up, whole process (TRL wall / alignkit wall): {wall:.2f}x")
    report.line(f"speed-up, {time_label} (TRL / alignkit): {timed:.2f}x")
    report.line(f"peak memory (alignkit / TRL): {memory:.2f}")
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


def format_markdown(rows: list[tuple[str, dict]], keys: list[tuple[str, str]]) -> str:
    """The same rows as :func:`format_table`, as a markdown table."""
    lines = ["| | " + " | ".join(h for _, h in keys) + " |", "|---" * (len(keys) + 1) + "|"]
    for name, fig in rows:
        cells = [f"{fig[k]:.4g}" if isinstance(fig.get(k), float) else str(fig.get(k)) for k, _ in keys]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


class Report:
    """What a bench prints, kept to be written as markdown too: lines, and tables of rows."""

    def __init__(self, title: str) -> None:
        self.parts: list[str] = [f"# {title}"]

    def line(self, text: str) -> None:
        print(text, flush=True)
        self.parts.append(text)

    def table(self, rows: list[tuple[str, dict]], keys: list[tuple[str, str]]) -> None:
        print(format_table(rows, keys), flush=True)
        self.parts.append(format_markdown(rows, keys))

    def write(self, path: Path) -> None:
        path.write_text("\n\n".join(self.parts) + "\n")


def measure_machine(report: Report, shape, tokens: int, scored: int, seq_len: int, rows: int,
                    dtypes: tuple[str, ...] = ("float32",)) -> dict:
    """Measure (and report) this machine's limit for a run: CPU model and ISA flags, matmul throughput in
    each of ``dtypes`` at the model's shapes (``tokens`` per batch, ``scored`` LM-head positions,
    ``rows`` sequences of ``seq_len`` for attention), and memory bandwidth. Returns the figures;
    :func:`remeasure_matmul` measures the same shapes again (between the sides) and keeps the best."""
    import platform

    import torch

    from alignkit.bench.limits import measure_bandwidth, read_cpu_info

    cpu = read_cpu_info()
    report.line(f"machine: {cpu.describe()}; torch {torch.__version__}, {torch.get_num_threads()} threads, "
                f"Python {platform.python_version()}")
    machine = {"cpu": asdict(cpu), "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
               "throughput": {}, "shapes": {"tokens": tokens, "scored": scored, "seq_len": seq_len, "rows": rows}}
    for name in dict.fromkeys(("float32", *dtypes)):
        machine["throughput"][name] = None
    remeasure_matmul(report, machine, shape, "before the runs")
    bw = measure_bandwidth()
    report.line(f"memory bandwidth ({bw.mib} MiB buffer): read {bw.read_gbs:.1f} GB/s, copy {bw.copy_gbs:.1f} GB/s")
    machine["bandwidth"] = asdict(bw)
    return machine


def remeasure_matmul(report: Report, machine: dict, shape, when: str) -> None:
    """Measure the matmul throughput of :func:`measure_machine`'s shapes again, in every dtype, and keep
    each shape's best rate over all measurements (:func:`limits.best_throughput`): the limit is the
    fastest the machine ran them, not whatever a slow moment showed."""
    import torch

    from alignkit.bench.limits import Throughput, best_throughput, measure_matmul

    for name, previous in machine["throughput"].items():
        t = measure_matmul(shape, **machine["shapes"], dtype=getattr(torch, name), min_seconds=0.3)
        shapes = ", ".join(f"{k} {v:.0f}" for k, v in t.per_shape.items())
        best = best_throughput([Throughput(**previous), t]) if previous else t
        report.line(f"matmul {name} at the model's shapes ({machine['shapes']['tokens']} tokens a batch), {when}: "
                    f"{t.gflops:.1f} GFLOP/s effective ({shapes})"
                    + (f"; best per shape so far: {best.gflops:.1f}" if previous else ""))
        machine["throughput"][name] = asdict(best)


def run_sides(bench: str, settings: dict, out: Path, only: str | None,
              after_each: Callable[[str], None] | None = None) -> list[tuple[str, dict]]:
    """Run ``alignkit.bench.{bench}_alignkit`` then ``..._trl`` (or ``only`` one) as children;
    ``after_each(name)`` runs in this process after each (the limit is measured again there)."""
    results = []
    for name in ("alignkit", "trl"):
        if only and only != name:
            continue
        print(f"running {name} ...", flush=True)
        results.append((name, run_child(f"alignkit.bench.{bench}_{name}", settings, out / f"{name}.log")))
        if after_each is not None:
            after_each(name)
    return results


def _flop(x: float) -> str:
    """``x`` FLOPs in the largest unit that keeps it above 1 (``3.21 TFLOP``)."""
    for unit, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6)):
        if x >= scale:
            return f"{x / scale:.3g} {unit}FLOP"
    return f"{x:.0f} FLOP"


def report_bound(report: Report, machine: dict, flops, shared, train_dtype: str = "float32",
                 gen_dtype: str | None = None) -> dict:
    """Report the run's FLOPs by phase and its time at the limit (plain, and with each prompt computed
    once: ``shared``); returns ``{"flops", "flops_shared_prompt", "bound", "bound_shared_prompt"}``."""
    from alignkit.bench.limits import bound_seconds

    rates = machine["throughput"]
    train = rates[train_dtype]["gflops"]
    gen = rates[gen_dtype or train_dtype]["gflops"]
    read = machine["bandwidth"]["read_gbs"]
    bound = bound_seconds(flops, train, gen, read)
    bound_shared = bound_seconds(shared, train, gen, read)
    gen_flops = (f", generation {_flop(flops.generation)} (prefill {_flop(flops.prefill)}, decode "
                 f"{_flop(flops.decode)} in {flops.decode_steps} steps reading {flops.decode_bytes / 1e9:.3g} GB)"
                 if flops.generation else "")
    report.line(f"FLOPs of the run: forward {_flop(flops.forward)}, backward {_flop(flops.backward)}, "
                f"reference {_flop(flops.reference)}{gen_flops}")
    gen_text = (f", generation {bound['generation_s']:.3g} (decode: compute {bound['decode_compute_s']:.3g}, "
                f"memory {bound['decode_memory_s']:.3g})" if flops.generation else "")
    report.line(f"compute-bound time: {bound['total_s']:.3g} s (forward {bound['forward_s']:.3g}, backward "
                f"{bound['backward_s']:.3g}, reference {bound['reference_s']:.3g}{gen_text}); with each prompt "
                f"computed once: {bound_shared['total_s']:.3g} s")
    return {"flops": flops.as_dict(), "flops_shared_prompt": shared.as_dict(), "bound": bound,
            "bound_shared_prompt": bound_shared}


def add_bound_ratios(results: list[tuple[str, dict]], limit: dict) -> None:
    """Each side's training-loop and whole-process time over the compute-bound time (``bound_ratio``,
    ``wall_bound_ratio``; ``..._shared`` against the shared-prompt bound)."""
    for _, fig in results:
        fig["bound_ratio"] = fig["train_s"] / limit["bound"]["total_s"]
        fig["wall_bound_ratio"] = fig["wall_s"] / limit["bound"]["total_s"]
        fig["bound_ratio_shared"] = fig["train_s"] / limit["bound_shared_prompt"]["total_s"]


def report_bound_ratios(report: Report, results: list[tuple[str, dict]]) -> None:
    for name, fig in results:
        report.line(f"{name} / bound: {fig['bound_ratio']:.2f} (training loop), {fig['wall_bound_ratio']:.2f} "
                    f"(whole process), {fig['bound_ratio_shared']:.2f} (loop over the shared-prompt bound)")


def report_sweep(report: Report, points: list[dict], what: str) -> None:
    """The scaling table of a ``--sweep``: per length, each side's whole-process time and its growth over
    the first length, the speed-up, the compute-bound time and the training loops over it."""
    first = points[0]
    rows = []
    for p in points:
        row = {"bound_s": p["bound_s"]}
        for side in ("alignkit", "trl"):
            if side in p:
                row[f"{side}_wall_s"] = p[side]["wall_s"]
                row[f"{side}_growth"] = p[side]["wall_s"] / first[side]["wall_s"]
                row[f"{side}_bound"] = p[side]["train_s"] / p["bound_s"]
        if "alignkit" in p and "trl" in p:
            row["speedup"] = p["trl"]["wall_s"] / p["alignkit"]["wall_s"]
        rows.append((f"{p['tokens']} tok", row))
    keys = [("alignkit_wall_s", "alignkit wall s"), ("alignkit_growth", "x first"), ("trl_wall_s", "TRL wall s"),
            ("trl_growth", "x first"), ("speedup", "speed-up"), ("bound_s", "bound s"),
            ("alignkit_bound", "alignkit/bound"), ("trl_bound", "TRL/bound")]
    report.line(f"\nscaling with {what} (wall = whole process; x first = over the {first['tokens']}-token run; "
                "side/bound = training loop over the compute-bound time):")
    report.table(rows, keys)


def check_positive(value: int | None, flag: str) -> None:
    if value is not None and value < 1:
        raise BenchError(f"{flag} must be at least 1, got {value}")


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
    dpo.add_argument("--response-tokens", type=int, default=None,
                     help="every chosen and rejected answer has exactly N tokens (default: varied, ~60)")
    dpo.add_argument("--sweep", action="store_true",
                     help=f"run with {'/'.join(map(str, SWEEP_TOKENS))}-token answers (max_length raised to fit) "
                          "and print how each side's time grows")
    grpo = sub.add_parser("grpo", help="alignkit grpo vs TRL GRPOTrainer")
    grpo.add_argument("--steps", type=int, default=8)
    grpo.add_argument("--prompts-per-step", type=int, default=2)
    grpo.add_argument("--num-generations", type=int, default=4)
    grpo.add_argument("--max-new-tokens", "--response-tokens", dest="max_new_tokens", type=int, default=32,
                      help="completion length limit (sampling may stop earlier at EOS)")
    grpo.add_argument("--sweep", action="store_true",
                      help=f"run with {'/'.join(map(str, SWEEP_TOKENS))} new tokens and print how each side's "
                           "time grows")
    grpo.add_argument("--bf16", action="store_true",
                      help="bf16 mixed precision on both sides (alignkit bf16=true, TRL bf16=True)")
    grpo.add_argument("--rollout-dtype", choices=["float32", "bfloat16"], default=None,
                      help="alignkit samples from a merged copy in this dtype (TRL has no CPU equivalent); "
                           "default: both sample from the training model")
    grpo.add_argument("--rollout", choices=["hf", "vllm-server"], default="hf",
                      help="alignkit's rollout backend: hf (default) or vllm-server (a vLLM server started from "
                           ".venv-vllm, `make vllm-venv`; its start-up counts in the wall time, not in the loop)")
    sample = sub.add_parser("sample", help="HF generate vs alignkit's decode loop (no TRL needed)")
    sample.add_argument("--model", default="smollm2-135m")
    sample.add_argument("--prompts", type=int, default=8, help="distinct prompts (default 8)")
    sample.add_argument("--generations", type=int, default=8, help="samples per prompt (default 8)")
    sample.add_argument("--max-new-tokens", type=int, default=160)
    sample.add_argument("--temperature", type=float, default=0.9, help="0: greedy (also checks equal tokens)")
    sample.add_argument("--repeats", type=int, default=2, help="runs of each sampler; the best is kept")
    sample.add_argument("--lora-r", type=int, default=0, help="sample through a LoRA adapter of this rank (default 0: none)")
    sample.add_argument("--output-dir", default="runs/bench-sample")
    for name, bench in (("dpo", dpo), ("grpo", grpo)):
        bench.add_argument("--model", default="smollm2-135m")
        bench.add_argument("--lora-r", type=int, default=16)
        bench.add_argument("--prompt-tokens", type=int, default=None,
                           help="every prompt has exactly N tokens of content (default: varied)")
        bench.add_argument("--gradient-checkpointing", nargs="?", const="full", default=False,
                           choices=["full", "mlp", "alternate"],
                           help="on for both sides (TRL's default; TRL checkpoints every layer); MODE is alignkit's: "
                                "full (the default: every decoder layer, as TRL), mlp (only each layer's MLP block) "
                                "or alternate (the MLP of every other layer); off by default")
        bench.add_argument("--output-dir", default=f"runs/bench-{name}")
        bench.add_argument("--only", choices=["alignkit", "trl"], default=None, help="run one side only")
    args = p.parse_args(argv)
    from alignkit.models import ModelNotFoundError

    if args.which == "dpo":
        from alignkit.bench.dpo import run
    elif args.which == "sample":
        from alignkit.bench.sample import run
    else:
        from alignkit.bench.grpo import run
    try:
        for key in ("steps", "batch_size", "prompts_per_step", "num_generations", "lora_r", "prompts", "generations",
                    "repeats"):
            if args.which != "sample" or key != "lora_r":  # bench sample: --lora-r 0 is no adapter
                check_positive(getattr(args, key, None), "--" + key.replace("_", "-"))
        check_positive(getattr(args, "prompt_tokens", None), "--prompt-tokens")
        check_positive(getattr(args, "response_tokens", None), "--response-tokens")
        check_positive(getattr(args, "max_new_tokens", None), "--max-new-tokens/--response-tokens")
        return run(args)
    except (BenchError, ModelNotFoundError) as e:  # bad settings, a model name that does not resolve
        print(f"alignkit bench {args.which}: error: {e}", file=sys.stderr)
        return 2
