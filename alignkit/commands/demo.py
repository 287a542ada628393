"""``alignkit demo``: the whole alignment pipeline on the embedded model, with a measured before/after.

  1. evaluate the base model on held-out prompts (the 'test' split of the shipped instruction set:
     verifiable constraints such as word limits, keywords, lowercase, JSON, bullets) -> gold strict
     pass rates, prompt-level and instruction-level;
  2. sample the model's own answers to the 'train' split prompts (one each by default) and check their
     constraints; an answer that fails is repaired by code where an edit exists (lowercase it, cut it to
     the word limit, append the end phrase, ...; kept only if it then passes every check);
  3. train with LoRA: SFT on one passing answer per prompt, or DPO / KTO / IFT on pairs (best vs worst
     sample, or repaired vs as sampled), or GRPO with the constraint reward (--method); the default,
     sft+dpo, is two stages: SFT as above, then DPO on pairs from 4 samples of the SFT model for 96
     train prompts;
  4. evaluate the trained model on the same held-out prompts;
  5. print a before/after table with 95 % paired-bootstrap intervals; write results.json/.md, pairs,
     SFT answers, samples, demo.json and report.html into the output directory.

The held-out prompts are never sampled or trained on. Training answers are sampled, and the frozen
LoRA base trained, in bfloat16 where the CPU does bf16 natively (AMX / AVX-512 BF16; --train-dtype);
the evaluation is float32 (--eval-dtype). The full demo takes about 10 minutes on 2 idle CPU cores with AMX (longer
without), --quick about 2 minutes (fewer prompts, samples, tokens and steps; its before/after is on 16
prompts and noisier). The output directory is cleared and rewritten on each run (only one the demo
made itself). --threads sets torch's CPU threads (default: torch's own choice, one per core); on a
machine busy with other work, 1 thread is often faster.
"""

from __future__ import annotations

import argparse
import sys


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="alignkit demo", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="the 2-minute version (fewer prompts, samples, steps)")
    p.add_argument("--method", default="sft+dpo", metavar="METHOD",
                   help="sft+dpo (default): SFT, then DPO on the SFT model's own samples (only the last stage is "
                        "evaluated); sft: SFT on one passing answer per train prompt (a passing sample, else one "
                        "repaired by code); dpo: DPO on the pairs; ift: Intuitive Fine-Tuning on the chosen "
                        "answers; kto: KTO on the pairs as unpaired rows; grpo: GRPO on the train prompts with "
                        "the constraint reward (no pairs); or stages joined by '+'. Each method has its own default "
                        "prompts, samples, steps and lr (see README); the defaults below are SFT's")
    p.add_argument("--output-dir", default="runs/demo", metavar="DIR", help="output directory (default: runs/demo)")
    p.add_argument("--model", default="smollm2-135m",
                   help="model to align (default: the embedded smollm2-135m; tiny-random for a smoke test)")
    p.add_argument("--threads", type=int, default=None, metavar="N",
                   help="torch CPU threads (default: torch's default); 1 is often faster on a busy machine")
    p.add_argument("--seed", type=int, default=0, help="seed for sampling and training (default 0)")
    p.add_argument("--iterations", type=int, default=None, metavar="N",
                   help="on-policy iterations: iteration k samples from the iteration k-1 model (default 1)")
    p.add_argument("--seeds", type=int, default=None, metavar="N",
                   help="repeat the iterations with N seeds and report the gain's mean and spread (default 1)")
    from alignkit.pipelines.demo.settings import FULL, QUICK

    def d(key: str) -> str:
        return f" (default {FULL[key]}; --quick: {QUICK[key]})" if FULL[key] != QUICK[key] else f" (default {FULL[key]})"

    adv = p.add_argument_group("advanced: tuning the stages")
    adv.add_argument("--prompts", default=None, metavar="FILE",
                     help="instruction file with 'train' and 'test' splits (default: the shipped set)")
    adv.add_argument("--eval-prompts", type=int, default=None, metavar="N",
                     help="held-out test prompts evaluated, spread over the split; 0: all" + d("eval_prompts"))
    adv.add_argument("--train-prompts", type=int, default=None, metavar="N",
                     help="train prompts sampled; 0: all" + d("train_prompts"))
    adv.add_argument("--max-new-tokens", type=int, default=None, metavar="N",
                     help="tokens per answer, for evaluation and sampling alike" + d("eval_max_new_tokens"))
    adv.add_argument("--candidates", type=int, default=None, metavar="K",
                     help="samples per train prompt" + d("candidates"))
    adv.add_argument("--temperature", type=float, default=None, metavar="T",
                     help="sampling temperature of the candidates" + d("temperature"))
    adv.add_argument("--rounds", type=int, default=None, metavar="N",
                     help="sampling rounds; later rounds resample the prompts left without a pair" + d("rounds"))
    adv.add_argument("--steps", type=int, default=None, metavar="N", help="optimizer steps" + d("steps"))
    adv.add_argument("--batch-size", type=int, default=None, metavar="N",
                     help="pairs per optimizer step" + d("batch_size"))
    adv.add_argument("--lr", type=float, default=None, help="learning rate of the LoRA weights" + d("lr"))
    adv.add_argument("--beta", type=float, default=None, help="DPO beta" + d("beta"))
    adv.add_argument("--pairs-per-prompt", type=int, default=None, metavar="K",
                     help="disjoint pairs per prompt: j-th best against j-th worst" + d("pairs_per_prompt"))
    adv.add_argument("--min-margin", type=float, default=None, metavar="M",
                     help="a pair's reward gap must exceed M" + d("min_margin"))
    adv.add_argument("--repairs", type=int, default=None, metavar="K",
                     help="for a train prompt none of whose samples passes, up to K pairs of (a sample edited by "
                          "code to pass, the sample as it was); 0: off" + d("repairs"))
    adv.add_argument("--rpo-alpha", type=float, default=None, metavar="A",
                     help="DPO/KTO: add A x the chosen answers' NLL (RPO); 0: off" + d("rpo_alpha"))
    adv.add_argument("--train-dtype", choices=["auto", "float32", "bfloat16"], default=None,
                     help="dtype of sampling the training answers and of the frozen LoRA base in training (the "
                          "adapters stay float32); auto: bfloat16 on a CPU with AMX or AVX-512 BF16 (or a CUDA "
                          "GPU), else float32 (default auto)")
    adv.add_argument("--eval-dtype", choices=["auto", "float32", "bfloat16"], default=None,
                     help="dtype of the held-out evaluation, the base and the trained model alike (a LoRA adapter "
                          "is merged first, then cast); auto: the work dtype of --train-dtype (default float32: "
                          "bfloat16 is ~2x faster with AMX but moves ~6 %% of the prompts' pass/fail both ways)")
    adv.add_argument("--lora-r", type=int, default=None, metavar="R", help="LoRA rank" + d("lora_r"))
    return p


def main(argv: list[str] | None = None) -> int:
    try:
        args = _parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    except SystemExit as e:  # --help, or a usage error (already printed)
        return int(e.code or 0)

    from alignkit.config import ConfigError
    from alignkit.data import DataError
    from alignkit.evaluation import InstructionFileError
    from alignkit.pipelines.demo import DemoError, run_demo, settings_for

    settings = settings_for(
        args.quick, model=args.model, output_dir=args.output_dir, method=args.method, threads=args.threads,
        seed=args.seed, prompts=args.prompts, eval_prompts=args.eval_prompts, train_prompts=args.train_prompts,
        eval_max_new_tokens=args.max_new_tokens, sample_max_new_tokens=args.max_new_tokens,
        candidates=args.candidates, temperature=args.temperature, rounds=args.rounds, steps=args.steps,
        batch_size=args.batch_size, lr=args.lr, beta=args.beta, iterations=args.iterations, seeds=args.seeds,
        pairs_per_prompt=args.pairs_per_prompt, min_margin=args.min_margin, repairs=args.repairs,
        rpo_alpha=args.rpo_alpha, train_dtype=args.train_dtype, eval_dtype=args.eval_dtype,
        lora_r=args.lora_r,
    )
    try:
        run_demo(settings)
    except (DemoError, ConfigError, DataError, InstructionFileError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except Exception as e:  # model not found, training diverged: a message, not a traceback
        from alignkit.engine.trainer import TrainingDiverged
        from alignkit.models import ModelNotFoundError

        if isinstance(e, (ModelNotFoundError, TrainingDiverged)):
            print(f"error: {e}", file=sys.stderr)
            return 2 if isinstance(e, ModelNotFoundError) else 3
        raise
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    return 0
