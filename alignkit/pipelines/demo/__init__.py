"""The demo pipeline: evaluate, build preference pairs from the model's own samples, train, evaluate again.

Stages (each prints a stage line, shows a progress bar on a terminal and logs progress lines when piped):

1. **Evaluate the base model** on held-out prompts: the ``test`` split of the shipped instruction set
   (:data:`alignkit.evaluation.DEFAULT_INSTRUCTIONS`), greedy decoding, strict gold pass rates
   (prompt-level and instruction-level), exactly what ``alignkit eval`` reports.
2. **Build preference pairs from the model's own samples** on the ``train`` split prompts: ``candidates``
   samples per prompt (``temperature``), each scored with the verifiable reward
   :func:`alignkit.evaluation.constraints.constraint_reward` (the fraction of the prompt's constraints
   met). Chosen = a best-scoring sample, rejected = a worst-scoring one; a prompt whose samples all
   score the same gives no pair (a tie carries no preference). Ties *within* the best (worst) group
   are broken towards a sample that ended on its own (was cut off by ``max_new_tokens``), then by
   sampling order; empty samples are never used. With ``rounds > 1`` the prompts left without a pair
   are sampled again and their pools grow. Train and test prompts are checked to be disjoint.
3. **Train** with LoRA: SFT (``method="sft"``) on one answer per prompt that passes every constraint (a
   passing sample, else a repaired one: rejection sampling), DPO (``loss=sigmoid``) on the pairs, IFT on
   the chosen answers, KTO, or GRPO, through the same engine as ``alignkit sft`` / ``alignkit dpo``; with
   ``repairs`` > 0 a prompt with no passing sample also gets pairs of (the sample edited by code to pass,
   the sample as it was), :mod:`alignkit.evaluation.repair`; the output directory is an ordinary run
   directory (``config.yaml``, ``metrics.jsonl``, ``final/``, ...). Several methods joined by ``+`` are
   stages (the default ``sft+dpo``): stage k repeats steps 2-3 from the stage k-1 model, with its own
   method's preset; only the last stage is evaluated.
4. **Evaluate the trained model** on the same held-out prompts with the same settings.
5. **Report**: a before/after table, ``results.json`` / ``results.md`` / ``completions-*.jsonl``
   (the ``alignkit eval`` files), ``report.html`` (training curves and the eval table) and
   ``demo.json`` (settings, pair statistics, figures and wall/CPU time per stage).

Nothing here is tuned on the test prompts' answers: the test split is only generated greedily and
scored, before and after.
"""

from alignkit.pipelines.demo.pairs import build_pairs, choose_pair, spread
from alignkit.pipelines.demo.run import run_demo
from alignkit.pipelines.demo.settings import FULL, QUICK, DemoError, DemoSettings, settings_for

__all__ = ["FULL", "QUICK", "DemoError", "DemoSettings", "build_pairs", "choose_pair", "run_demo", "settings_for",
           "spread"]
