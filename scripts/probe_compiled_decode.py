"""Does ``torch.compile`` make a decode step faster on this CPU?  (issue 13, part 3: a probe, not a feature)

Runs greedy decoding of the embedded model with HF's ``StaticCache`` (fixed shapes, as compilation needs)
for ``--steps`` tokens at batch ``--batch``, first eager, then through ``torch.compile(model.forward,
dynamic=False)`` (inductor's CPU C++ backend), optionally with ``--freeze`` (inductor's ``freezing``:
weights become constants and are pre-packed for oneDNN -- valid only while the weights do not change, so
not for a policy being trained). Prints ms per decode step of each, the compile time, and whether the
greedy tokens agree. Usage::

    python scripts/probe_compiled_decode.py --batch 8 [--freeze]
"""

from __future__ import annotations

import argparse
import time

import torch
from transformers.cache_utils import StaticCache

from alignkit.bench.sample import _prompts
from alignkit.models import load_model, load_tokenizer


def greedy_steps(model, step, ids, mask, steps: int) -> tuple[float, torch.Tensor]:
    """Prefill eagerly, then ``steps`` greedy decode steps through ``step``; returns (seconds of the
    decode steps, tokens [B, steps])."""
    b, p = ids.shape
    cache = StaticCache(config=model.config, max_cache_len=p + steps + 1)
    full = torch.zeros((b, p + steps + 1), dtype=torch.long)
    full[:, :p] = mask
    pos = (mask.cumsum(1) - 1).clamp(min=0)
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=full, position_ids=pos, past_key_values=cache,
                    use_cache=True, cache_position=torch.arange(p), logits_to_keep=1)
        token, nxt, tokens = out.logits[:, -1].argmax(-1), pos[:, -1] + 1, []
        t0 = time.perf_counter()
        for s in range(steps):
            full[:, p + s] = 1
            logits = step(input_ids=token[:, None], attention_mask=full, position_ids=nxt[:, None],
                          past_key_values=cache, use_cache=True, cache_position=torch.tensor([p + s])).logits
            token, nxt = logits[:, -1].argmax(-1), nxt + 1
            tokens.append(token)
    return time.perf_counter() - t0, torch.stack(tokens, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=32)
    parser.add_argument("--freeze", action="store_true")
    args = parser.parse_args()
    model, tok = load_model("smollm2-135m").eval(), load_tokenizer("smollm2-135m")
    prompts = _prompts(tok, 8)
    width = max(len(p) for p in prompts)
    ids = torch.full((args.batch, width), tok.pad_token_id)
    for i in range(args.batch):
        p = prompts[i % len(prompts)]
        ids[i, width - len(p):] = torch.tensor(p)
    mask = (ids != tok.pad_token_id).long()
    greedy_steps(model, model, ids, mask, 4)  # warm-up
    eager_s, eager_tokens = greedy_steps(model, model, ids, mask, args.steps)
    import torch._inductor.config as inductor_config

    inductor_config.freezing = args.freeze
    compiled = torch.compile(model.forward, dynamic=False)
    t0 = time.perf_counter()
    greedy_steps(model, compiled, ids, mask, 4)
    compile_s = time.perf_counter() - t0
    compiled_s, compiled_tokens = greedy_steps(model, compiled, ids, mask, args.steps)
    same = int((eager_tokens == compiled_tokens).all(dim=1).sum())
    print(f"batch {args.batch}, {args.steps} steps, freeze={args.freeze}: eager {1000 * eager_s / args.steps:.1f} "
          f"ms/step, compiled {1000 * compiled_s / args.steps:.1f} ms/step (compile + 4 steps {compile_s:.1f} s); "
          f"greedy rows equal {same}/{args.batch}")


if __name__ == "__main__":
    main()
