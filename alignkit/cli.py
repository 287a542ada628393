"""``alignkit METHOD [CONFIG.yaml] [key=value ...]`` and the other commands (README "Quick start")."""

from __future__ import annotations

import importlib
import sys
import typing

from alignkit.methods import METHODS

USAGE = """usage: alignkit COMMAND [ARGS ...]

Training methods (alignkit METHOD [CONFIG.yaml] [key=value ...]):
  sft          supervised fine-tuning (prompt-completion, text or messages data)
  rm           reward model (Bradley-Terry) on preference pairs
  dpo          DPO family: loss=sigmoid|hinge|ipo|robust|simpo|orpo
  kto          KTO on unpaired (or paired) preference data
  ift          Intuitive Fine-Tuning (temporal residual connection + DRP)
  ppo          PPO with a critic, GAE and a KL penalty
  grpo         GRPO / DAPO / Dr. GRPO, RLOO, REINFORCE++
  online-dpo   DPO on pairs sampled from the policy and judged online
  self-reward  self-rewarding loop (the model generates, judges and trains)
  cost         Safe RLHF cost model (harmfulness pairs + sign term) on safety data
  safe-grpo    GRPO under a cost constraint (Lagrangian: reward - lambda * cost, lambda learned)
  safe-ppo     Safe RLHF: PPO with reward and cost critics, the Lagrangian advantage, lambda learned
  bpo          BPO prompt optimizer: SFT from prompt to a better prompt (use: --prompt-optimizer)
  aligner      Aligner answer corrector: SFT from (question, weaker answer) to the better one (use: --aligner)
  prm          process reward model on step-wise labels (prompt, completions, labels)
  step-dpo     Step-DPO: DPO on one reasoning step given the prompt and the steps before it
  sppo         SPPO: self-play, win probabilities from reward=, square loss
  mcts-dpo     step-level tree search -> sibling step pairs -> Step-DPO, iterated

Other commands:
  demo         the whole pipeline on the embedded model
  eval         evaluate models: gold instruction following, win rate, reward, KL, perplexity
  chat         chat with a model in the terminal
  generate     write completions for a prompt file as JSONL
  score        score a data file with a reward model (alignkit rm)
  data         build data: backtranslate, critique-revise, rlaif, eft, math, safety, redteam, bpo, distill, prm-labels, step-pairs
  report       plot a run (report.html) or compare several runs side by side
  bench        side-by-side speed/memory against TRL
  compare      should I fine-tune? base, ICL (selectors x k), BPO, Aligner and trained runs on one table
  weak-to-strong  weak reward model labels pairs, strong one learns from them; gap recovered
  annotate     preference annotation in the browser: serve, add-tasks, export, stats, import

`alignkit COMMAND --help` describes each. Config keys common to all methods: model, data, eval_data,
output_dir, max_steps, epochs, batch_size, grad_accum, lr, seed, max_length, save_steps, resume, lora.*
"""


def usage() -> str:
    """The top-level help, with the Hugging Face / TRL key names accepted as aliases."""
    from alignkit.config import ALIASES

    names = ", ".join(f"{a.name}={a.target}" for a in ALIASES.values())
    return USAGE + "\n" + _wrap(
        "Hugging Face TrainingArguments / TRL key names are accepted as aliases by the methods that have "
        f"the key they stand for (alias=alignkit key): {names}. Each method's --help lists the ones it takes.")


def _wrap(text: str, indent: str = "") -> str:
    import textwrap

    return textwrap.fill(text, width=104, initial_indent=indent, subsequent_indent=indent,
                         break_on_hyphens=False, break_long_words=False)

# command -> "module:function" taking argv and returning an exit code; None = not built yet
COMMANDS: dict[str, str | None] = {
    "demo": "alignkit.commands.demo:main",
    "eval": "alignkit.commands.eval:main",
    "chat": "alignkit.commands.chat:main",
    "generate": "alignkit.commands.generate:main",
    "score": "alignkit.commands.score:main",
    "data": "alignkit.commands.data:main",
    "report": "alignkit.commands.report:main",
    "bench": "alignkit.bench:main",
    "compare": "alignkit.commands.compare:main",
    "weak-to-strong": "alignkit.commands.weak_to_strong:main",
    "annotate": "alignkit.commands.annotate:main",
}


def _type_name(annotation: typing.Any) -> str:
    if typing.get_origin(annotation) is typing.Literal:
        return "|".join(str(a).lower() if isinstance(a, bool) else str(a) for a in typing.get_args(annotation))
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) is typing.Union and type(None) in args:  # Optional[X]: "X | None"
        return " | ".join(_type_name(a) for a in args if a is not type(None)) + " | None"
    text = getattr(annotation, "__name__", None) or str(annotation)
    return text.replace("typing.", "")


def method_help(name: str, config_cls) -> str:
    lines = [f"usage: alignkit {name} [CONFIG.yaml] [key=value ...]", "",
             (config_cls.__doc__ or "").strip().splitlines()[0] if config_cls.__doc__ else "", "",
             "config keys (YAML file or key=value; nested keys dotted, e.g. lora.r=16):"]
    for key, field in config_cls.model_fields.items():
        ann = field.annotation
        if isinstance(ann, type) and hasattr(ann, "model_fields"):
            for sub, sub_field in ann.model_fields.items():
                lines.append(f"  {key}.{sub:<22} {_type_name(sub_field.annotation):<28} default {sub_field.default!r}")
            continue
        default = field.default if field.default_factory is None else field.default_factory()
        desc = f"  {field.description}" if field.description else ""
        lines.append(f"  {key:<25} {_type_name(ann):<28} default {default!r}{desc}")
    from alignkit.config import aliases_for, counts_completions

    aliases = aliases_for(config_cls)
    if aliases:
        pairs = ", ".join(f"{name}={target}" for name, target in aliases.items())
        note = (" (per_device_train_batch_size counts completions, as in TRL's GRPO: batch_size = it / "
                "num_generations)") if "per_device_train_batch_size" in aliases and counts_completions(config_cls) else ""
        lines += ["", "Hugging Face / TRL names accepted as aliases (alias=key; config.yaml shows the key):",
                  _wrap(pairs + note, indent="  ")]
    return "\n".join(lines)


def run_method(name: str, argv: list[str]) -> int:
    from alignkit.methods import get_method

    method_cls = get_method(name)
    if method_cls is None:
        print(f"alignkit {name}: not available yet in this version of alignkit "
              "(see the README for what is built).", file=sys.stderr)
        return 2
    if any(a in ("-h", "--help") for a in argv):
        print(method_help(name, method_cls.config_cls))
        return 0
    yaml_path = None
    if argv and "=" not in argv[0]:
        yaml_path, argv = argv[0], argv[1:]

    from alignkit.config import ConfigError, load_config

    try:
        config = load_config(method_cls.config_cls, yaml_path, argv)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    run_loop = getattr(method_cls, "run_loop", None)
    if run_loop is not None:  # a loop over several engine runs (self-reward) runs itself
        return int(run_loop(config))
    return _train(method_cls, config)


def _train(method_cls, config) -> int:
    from alignkit.engine.exits import INTERRUPTED, run_for_exit_code
    from alignkit.engine.trainer import train

    result, code = run_for_exit_code(lambda: train(method_cls, config))
    if code is not None:
        return code
    if result.interrupted:
        return INTERRUPTED
    write_run_report(result.output_dir)
    print(f"done: {result.steps} steps; model in {result.final_dir}; metrics in {result.output_dir / 'metrics.jsonl'}")
    return 0


def write_run_report(output_dir) -> None:
    """``report.html`` of a finished run: the command line's step after the engine (which writes
    metrics only). Skipped when the report extra (matplotlib) is not installed."""
    try:
        from alignkit.report import write_run_report as write
    except ImportError:
        return
    write(output_dir)


def main(argv: list[str] | None = None) -> int:
    # no forced offline mode: hub names (org/name) use the local cache first and download only when the
    # user allows the network (HF_HUB_OFFLINE unset or 0), as every Hugging Face tool does (alignkit.hub)
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0 if argv else 2
    if argv[0] in ("-V", "--version"):
        from alignkit import __version__

        print(f"alignkit {__version__}")
        return 0
    cmd, rest = argv[0], argv[1:]
    if cmd in METHODS:
        return run_method(cmd, rest)
    if cmd in COMMANDS:
        target = COMMANDS[cmd]
        if target is None:
            if any(a in ("-h", "--help") for a in rest):
                print(f"usage: alignkit {cmd} ...\n\n`alignkit {cmd}` is not available yet in this version.")
                return 0
            print(f"alignkit {cmd}: not available yet in this version of alignkit.", file=sys.stderr)
            return 2
        module, _, func = target.partition(":")
        return int(getattr(importlib.import_module(module), func)(rest) or 0)
    import difflib

    close = difflib.get_close_matches(cmd, list(METHODS) + list(COMMANDS), n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    print(f"alignkit: unknown command '{cmd}'{hint}\n\n{usage()}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
