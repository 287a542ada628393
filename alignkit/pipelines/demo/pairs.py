"""Stage 2 of the demo: preference pairs from the model's own samples, scored by the constraint reward,
written in the form they were sampled in (see :func:`reads_back`)."""

from __future__ import annotations

import sys
import time
from typing import Any

from alignkit.data.pairs import pick_pair, pick_pairs
from alignkit.pipelines.demo.console import Progress, Say


def spread(items: list, n: int) -> list:
    """``n`` items evenly spread over ``items`` (all of them when ``n`` is 0 or too large), in order."""
    if n <= 0 or n >= len(items):
        return list(items)
    return [items[(i * len(items)) // n] for i in range(n)]


def choose_pair(rewards: list[float], truncated: list[bool], texts: list[str],
                exact: list[bool] | None = None) -> tuple[int, int] | None:
    """(chosen, rejected) indices into the candidates, or None when there is no pair (the one pairing
    rule, :func:`alignkit.data.pairs.pick_pair`).

    Chosen: a highest-reward candidate, preferring one that ended on its own (not truncated);
    rejected: a lowest-reward one, preferring a truncated one; then the earliest. Empty (blank)
    candidates take no part, nor those whose text does not read back to the sampled tokens
    (``exact[i]`` False).
    """
    usable = [bool(t.strip()) and (exact is None or exact[i]) for i, t in enumerate(texts)]
    pick = pick_pair(rewards, usable=usable, chosen_rank=lambda i: truncated[i],
                     rejected_rank=lambda i: not truncated[i])
    return None if isinstance(pick, str) else pick


def choose_pairs(rewards: list[float], truncated: list[bool], texts: list[str], exact: list[bool] | None,
                 k: int, min_margin: float = 0.0) -> list[tuple[int, int]]:
    """Up to ``k`` disjoint (chosen, rejected) pairs: the j-th best against the j-th worst while the
    reward gap exceeds ``min_margin`` (:func:`alignkit.data.pairs.pick_pairs`), with the candidates
    and tie-breaks of :func:`choose_pair`."""
    usable = [bool(t.strip()) and (exact is None or exact[i]) for i, t in enumerate(texts)]
    return pick_pairs(rewards, k, usable=usable, chosen_rank=lambda i: truncated[i],
                      rejected_rank=lambda i: not truncated[i], min_margin=min_margin)


def _pairs_of(pool: dict[str, list], k: int = 1, min_margin: float = 0.0) -> list[tuple[int, int]]:
    return choose_pairs(pool["rewards"], pool["truncated"], pool["texts"], pool["exact"], k, min_margin)


def repair_pairs(pool: dict[str, list], constraints: list[dict], k: int,
                 exact_only: bool = True) -> list[tuple[int, str]]:
    """Up to ``k`` ``(candidate index, repaired text)`` for a prompt none of whose samples passes every
    constraint: the highest-reward usable candidates first (ties: ones that ended on their own), each
    edited by :func:`alignkit.evaluation.repair.repair`; candidates with no repair are skipped. The pair
    is (repaired text, the candidate as sampled): a minimal edit, so the preference falls on the tokens
    that decide the constraints. Empty when some sample already passes (its own pairs carry that).
    ``exact_only=False`` also repairs samples that do not read back to their tokens (fine for SFT, which
    trains on the edited text alone; a pair's rejected side must be the tokens as sampled)."""
    from alignkit.evaluation.repair import repair

    if k <= 0 or any(r >= 1.0 for r in pool["rewards"]):
        return []
    order = sorted((i for i, t in enumerate(pool["texts"]) if t.strip() and (pool["exact"][i] or not exact_only)),
                   key=lambda i: (-pool["rewards"][i], pool["truncated"][i], i))
    out: list[tuple[int, str]] = []
    for i in order:
        fixed = repair(pool["texts"][i], constraints, truncated=pool["truncated"][i])
        if fixed is not None and fixed.strip() != pool["texts"][i].strip():
            out.append((i, fixed))
            if len(out) == k:
                break
    return out


def passing_answers(samples: list[dict]) -> list[tuple[dict, str]]:
    """One answer per prompt that meets every constraint, for SFT (rejection sampling with repairs): a
    sampled candidate that passes and reads back (ended on its own preferred), else the prompt's first
    repaired answer (a repair of a sample that does not read back, ``spare_repair``, last); prompts with
    none give nothing. Returns ``(sample row, answer text)``."""
    out = []
    for row in samples:
        passing = [c for c in row["candidates"] if c["reward"] >= 1.0 and c["exact"] and c["text"].strip()]
        passing.sort(key=lambda c: c["truncated"])
        if passing:
            out.append((row, passing[0]["text"]))
        elif row.get("repairs") or row.get("spare_repair"):
            out.append((row, (row.get("repairs") or [row["spare_repair"]])[0]["text"]))
    return out


def reads_back(tokenizer: Any, asked: Any, text: str, completion_ids: list[int], truncated: bool) -> bool:
    """Whether a preference row holding ``(asked, text)`` tokenises to the sampled prompt and completion
    ids (a truncated answer gets the end-of-turn token a row always ends with). False for the rare
    sample whose decoded text re-tokenises differently (a non-canonical token split)."""
    from alignkit.data.render import conversational_row, render_prompt
    from alignkit.data.tokenize import tokenize_completion

    prompt, completion = conversational_row(asked, text)
    try:
        p_ids, c_ids = tokenize_completion(tokenizer, prompt, completion)
    except ValueError:  # empty after tokenisation, or a template that cannot split it
        return False
    want = list(completion_ids) + ([tokenizer.eos_token_id] if truncated else [])
    return p_ids == render_prompt(tokenizer, asked).ids and c_ids == want


def mean_or_nan(xs: list[float]) -> float:
    return sum(xs) / len(xs) if xs else float("nan")


def build_pairs(model: Any, tokenizer: Any, instructions: list, *, candidates: int, temperature: float,
                top_p: float, max_new_tokens: int, rounds: int, seed: int, gen_batch_size: int,
                pairs_per_prompt: int = 1, min_margin: float = 0.0, repairs: int = 0,
                say: Say | None = None) -> tuple[list[dict], list[dict], dict[str, Any]]:
    """Sample ``candidates`` answers per prompt, score them with the constraint reward and pair the best
    with the worst, up to ``pairs_per_prompt`` disjoint pairs per prompt whose reward gap exceeds
    ``min_margin`` (see :func:`choose_pairs`). ``repairs`` > 0: a prompt none of whose samples passes
    every constraint also gets up to that many minimal-edit pairs (:func:`repair_pairs`). Returns ``(pairs, samples, stats)``: ``pairs`` are
    preference rows (``prompt``, ``chosen``, ``rejected`` and bookkeeping fields), ``samples`` one row
    per prompt with every candidate and its reward."""
    from alignkit.data.render import conversational_row, request_prompt
    from alignkit.evaluation.constraints import constraint_reward
    from alignkit.generation import encode_prompt, sample_completions

    say = say or Say(sys.stderr)
    eos = tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    # sampled as a user turn; the pairs are written in the same (conversational) form, so that DPO
    # trains on the tokens that were sampled
    asked = {ins.id: request_prompt(tokenizer, ins.prompt) for ins in instructions}
    encoded = {k: encode_prompt(tokenizer, p) for k, p in asked.items()}
    pools: dict[str, dict[str, list]] = {ins.id: {"texts": [], "rewards": [], "truncated": [], "ids": [],
                                                  "exact": []} for ins in instructions}
    per_batch = max(1, gen_batch_size // candidates)
    pending = list(instructions)
    rounds_run = 0
    t0 = time.perf_counter()
    for r in range(rounds):
        if not pending:
            break
        rounds_run += 1
        label = f"round {r + 1}/{rounds}: sampling" if rounds > 1 else "sampling"
        progress = Progress(say, len(pending) * candidates, label, "sample")
        for start in range(0, len(pending), per_batch):
            chunk = pending[start:start + per_batch]
            rollout = sample_completions(model, [encoded[ins.id] for ins in chunk], pad_id=pad, eos_id=eos,
                                         max_new_tokens=max_new_tokens, temperature=temperature,
                                         top_p=top_p, num_generations=candidates,
                                         generator_seed=seed + 100_003 * r + start)
            texts = [tokenizer.decode(ids, skip_special_tokens=True) for ids in rollout.completion_ids]
            cons = [ins.constraints for ins in chunk for _ in range(candidates)]
            rewards = constraint_reward([ins.prompt for ins in chunk for _ in range(candidates)], texts,
                                        constraints=cons)
            for j, ins in enumerate(chunk):
                pool = pools[ins.id]
                sl = slice(j * candidates, (j + 1) * candidates)
                pool["texts"] += texts[sl]
                pool["rewards"] += [float(x) for x in rewards[sl]]
                pool["truncated"] += [bool(x) for x in rollout.truncated[sl].tolist()]
                pool["ids"] += rollout.completion_ids[sl]
                pool["exact"] += [reads_back(tokenizer, asked[ins.id], t, ids, bool(tr)) for t, ids, tr in
                                  zip(texts[sl], rollout.completion_ids[sl], rollout.truncated[sl].tolist())]
            progress.update(len(texts))
        progress.close()
        pending = [ins for ins in pending if not _pairs_of(pools[ins.id], 1, min_margin)]

    pairs: list[dict] = []
    samples: list[dict] = []
    all_pass = all_fail = other_ties = 0
    for ins in instructions:
        pool = pools[ins.id]
        picked_all = _pairs_of(pool, pairs_per_prompt, min_margin)
        picked = picked_all[0] if picked_all else None
        samples.append({
            "id": ins.id, "prompt": ins.prompt, "constraints": ins.constraints, "prompt_ids": encoded[ins.id],
            "candidates": [{"text": t, "reward": rw, "truncated": tr, "ids": ids, "exact": ex}
                           for t, rw, tr, ids, ex in zip(pool["texts"], pool["rewards"], pool["truncated"],
                                                         pool["ids"], pool["exact"])],
            "chosen": picked[0] if picked else None, "rejected": picked[1] if picked else None,
            "pairs": [list(pc) for pc in picked_all],
        })
        fixes = repair_pairs(pool, ins.constraints, repairs) if repairs else []
        samples[-1]["repairs"] = [{"of": i, "text": t} for i, t in fixes]
        if repairs and not fixes:  # for SFT only: a repair of a sample that does not read back
            spare = repair_pairs(pool, ins.constraints, 1, exact_only=False)
            samples[-1]["spare_repair"] = {"of": spare[0][0], "text": spare[0][1]} if spare else None
        for i, text in fixes:
            prompt, chosen = conversational_row(asked[ins.id], text)
            _, rejected = conversational_row(asked[ins.id], pool["texts"][i])
            pairs.append({"prompt": prompt, "chosen": chosen, "rejected": rejected, "id": ins.id,
                          "chosen_reward": 1.0, "rejected_reward": pool["rewards"][i], "repaired": True})
        if picked is None:
            rewards = pool["rewards"]
            if rewards and min(rewards) == 1.0:
                all_pass += 1
            elif rewards and max(rewards) == 0.0:
                all_fail += 1
            else:
                other_ties += 1
            continue
        for c, rj in picked_all:
            prompt, chosen = conversational_row(asked[ins.id], pool["texts"][c])
            _, rejected = conversational_row(asked[ins.id], pool["texts"][rj])
            pairs.append({"prompt": prompt, "chosen": chosen, "rejected": rejected, "id": ins.id,
                          "chosen_reward": pool["rewards"][c], "rejected_reward": pool["rewards"][rj]})
    all_rewards = [x for pool in pools.values() for x in pool["rewards"]]
    stats = {
        "prompts": len(instructions),
        "candidates_per_prompt": candidates,
        "rounds_run": rounds_run,
        "samples": len(all_rewards),
        "mean_reward": mean_or_nan(all_rewards),
        "sample_pass_rate": mean_or_nan([float(x == 1.0) for x in all_rewards]),
        "truncated_rate": mean_or_nan([float(t) for pool in pools.values() for t in pool["truncated"]]),
        "not_read_back": sum(not e for pool in pools.values() for e in pool["exact"]),
        "pairs": len(pairs),
        "repair_pairs": sum(1 for p in pairs if p.get("repaired")),
        "prompts_with_pairs": sum(1 for row in samples if row["pairs"] or row.get("repairs")),
        "no_pair_all_pass": all_pass,
        "no_pair_all_fail": all_fail,
        "no_pair_other_tie": other_ties,
        "mean_margin": mean_or_nan([p["chosen_reward"] - p["rejected_reward"] for p in pairs]),
        "seconds": round(time.perf_counter() - t0, 1),
    }
    return pairs, samples, stats
