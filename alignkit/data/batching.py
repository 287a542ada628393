"""Padding, collation, the per-epoch batch order and SFT packing.

Every collate function takes tokenised examples (dicts of int lists, see :mod:`alignkit.data.tokenize`)
and the pad token id, and returns ``torch.long`` tensors (``"label"`` is a bool tensor). Labels are
``-100`` wherever no loss is taken (prompt and padding); the caller shifts them for next-token loss.

Packed SFT batches (examples from :func:`pack_examples`) carry ``position_ids`` that restart at 0 for
every packed example. transformers (5.x, sdpa or eager attention) then keeps the examples apart by
itself, but only when the model is called with ``attention_mask=None`` **and** ``use_cache=False``
(a cache, which the model creates by default, switches the packed-sequence detection off).
:func:`model_inputs` builds the right keyword arguments for either kind of batch.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence

import torch

IGNORE_INDEX = -100
MEGABATCH_FACTOR = 50


def pad(seqs: Sequence[Sequence[int]] | Sequence[torch.Tensor], pad_value: int, side: str = "right",
        length: int | None = None) -> torch.Tensor:
    """Stack sequences into a ``[N, T]`` long tensor, padding with ``pad_value`` on ``side``
    (``"right"`` or ``"left"``); ``T`` is the longest length, or ``length`` if given (not shorter)."""
    if side not in ("right", "left"):
        raise ValueError(f"side must be 'right' or 'left', got {side!r}")
    tensors = [s.long() if isinstance(s, torch.Tensor) else torch.tensor(list(s), dtype=torch.long) for s in seqs]
    T = max((t.numel() for t in tensors), default=0)
    if length is not None:
        if length < T:
            raise ValueError(f"length {length} is shorter than the longest sequence ({T})")
        T = length
    out = torch.full((len(tensors), T), pad_value, dtype=torch.long)
    for i, t in enumerate(tensors):
        n = t.numel()
        if n:
            if side == "right":
                out[i, :n] = t
            else:
                out[i, T - n:] = t
    return out


def _mask(seqs: Sequence[Sequence[int]], side: str = "right") -> torch.Tensor:
    return pad([[1] * len(s) for s in seqs], 0, side)


def _prompt_response(prompts: list[list[int]], responses: list[list[int]], pad_id: int) -> dict[str, torch.Tensor]:
    seqs = [p + r for p, r in zip(prompts, responses)]
    labels = [[IGNORE_INDEX] * len(p) + r for p, r in zip(prompts, responses)]
    return {"input_ids": pad(seqs, pad_id), "attention_mask": _mask(seqs), "labels": pad(labels, IGNORE_INDEX)}


def collate_lm(examples: Sequence[dict], pad_id: int) -> dict[str, torch.Tensor]:
    """SFT examples (``input_ids``, ``labels``) -> right-padded ``{"input_ids", "attention_mask", "labels"}``.

    Packed examples (with ``position_ids``) also give ``"position_ids"`` (padding positions are 0, so
    each padding token is a sequence of its own). Their ``attention_mask`` is 1 on real tokens and 0 on
    padding (so it still counts tokens), but it must **not** be passed to the model: see
    :func:`model_inputs`.
    """
    ids = [ex["input_ids"] for ex in examples]
    out = {"input_ids": pad(ids, pad_id), "attention_mask": _mask(ids),
           "labels": pad([ex["labels"] for ex in examples], IGNORE_INDEX)}
    if all("position_ids" in ex for ex in examples):
        out["position_ids"] = pad([ex["position_ids"] for ex in examples], 0)
    elif any("position_ids" in ex for ex in examples):
        raise ValueError("some examples carry position_ids (packed) and some do not")
    return out


def model_inputs(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor | bool | None]:
    """Keyword arguments for a causal-LM forward pass over a collated batch.

    For a packed batch (``position_ids`` present) this is ``input_ids``, ``position_ids``,
    ``attention_mask=None`` and ``use_cache=False``, which makes transformers attend only within each
    packed example; otherwise ``input_ids``, ``attention_mask`` and ``use_cache=False``.
    """
    if "position_ids" in batch:
        out = {"input_ids": batch["input_ids"], "position_ids": batch["position_ids"], "attention_mask": None,
               "use_cache": False}
        if "cu_seq_lens" in batch:
            out.update(segment_kwargs(batch["cu_seq_lens"]))
        return out
    return {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"], "use_cache": False}


def segment_kwargs(cu_seq_lens: torch.Tensor) -> dict[str, torch.Tensor | int]:
    """The keyword arguments that carry a padding-free batch's sequence boundaries through a transformers
    forward to its attention function (the names of transformers' flash-attention keywords)."""
    longest = int((cu_seq_lens[1:] - cu_seq_lens[:-1]).max()) if cu_seq_lens.numel() > 1 else 0
    return {"cu_seq_lens_q": cu_seq_lens, "cu_seq_lens_k": cu_seq_lens, "max_length_q": longest,
            "max_length_k": longest}


def collate_preference(examples: Sequence[dict], pad_id: int, shared: bool = False) -> dict[str, torch.Tensor]:
    """Preference examples -> ``{"input_ids", "attention_mask", "labels"}`` of shape ``[2B, T]``:
    rows ``0..B-1`` are prompt+chosen, rows ``B..2B-1`` prompt+rejected, right padded to one common
    length, labels ``-100`` on prompt and padding -- one forward pass serves both.

    ``shared``: also the same rows in the prompt | completion layout of :func:`split_prompt_response`
    under ``shared_input_ids``/``shared_attention_mask`` ``[2B, P + C]`` and ``shared_completion_mask``
    ``[2B, C]``, for the forward that runs each prompt once for both answers
    (:func:`alignkit.logprobs.shared_prompt_token_logps` with ``tiled=True``)."""
    prompts = [ex["prompt_ids"] for ex in examples]
    responses = [ex["chosen_ids"] for ex in examples] + [ex["rejected_ids"] for ex in examples]
    out = _prompt_response(prompts + prompts, responses, pad_id)
    if shared:
        split = split_prompt_response(prompts + prompts, responses, pad_id)
        out.update({f"shared_{k}": v for k, v in split.items()})
    return out


def collate_preference_tree(examples: Sequence[dict], pad_id: int) -> dict[str, torch.Tensor]:
    """Preference examples -> :func:`collate_preference`'s ``[2B, T]`` batch plus the same pairs as one row
    without padding, ``prompt_i | chosen_i | rejected_i`` end to end, for a forward that runs each prompt
    once and computes nothing on padding (:func:`alignkit.logprobs.tree_pair_token_logps`):

    - ``tree_input_ids``, ``tree_position_ids`` [1, N]: both answers' positions continue from their prompt's;
    - ``tree_segments`` [3B, 4]: (start, end, prefix_start, prefix_end) per prompt, chosen and rejected
      segment; an answer attends to its prompt and causally to itself
      (:func:`alignkit.models.segment_attention.tree_attention`), never to the other answer;
    - ``tree_predictors``, ``tree_labels``, ``tree_sequences`` [M]: for each answer token, the position
      whose hidden state predicts it (the prompt's last position for an answer's first token), its id,
      and its row in the ``[2B]`` order of :func:`collate_preference` (chosen 0..B-1, rejected B..2B-1).
      An answer's first token after an empty prompt has no predictor and is left out, as the padded
      forward leaves it out."""
    out = collate_preference(examples, pad_id)
    b = len(examples)
    ids: list[int] = []
    positions: list[int] = []
    segments, predictors, labels, sequences = [], [], [], []
    for i, ex in enumerate(examples):
        prompt, o = list(ex["prompt_ids"]), len(ids)
        p = len(prompt)
        ids += prompt
        positions += range(p)
        segments.append((o, o + p, o, o))
        for row, answer in ((i, ex["chosen_ids"]), (b + i, ex["rejected_ids"])):
            start = len(ids)
            ids += answer
            positions += range(p, p + len(answer))
            segments.append((start, len(ids), o, o + p))
            for k, token in enumerate(answer):
                if k == 0 and p == 0:
                    continue  # nothing precedes it
                predictors.append(o + p - 1 if k == 0 else start + k - 1)
                labels.append(token)
                sequences.append(row)
    tensors = {"input_ids": [ids], "position_ids": [positions], "segments": segments, "predictors": predictors,
               "labels": labels, "sequences": sequences}
    out.update({f"tree_{k}": torch.tensor(v, dtype=torch.long) for k, v in tensors.items()})
    return out


def split_prompt_response(prompts: Sequence[Sequence[int]], responses: Sequence[Sequence[int]],
                          pad_id: int) -> dict[str, torch.Tensor]:
    """Rows ``prompt | response`` with the prompt **left**-padded to the longest prompt P and the
    response right-padded to the longest response C (a rollout's layout): ``input_ids`` and
    ``attention_mask`` ``[N, P + C]``, ``completion_mask`` ``[N, C]``. Real tokens stay contiguous, so
    position ids are ``attention_mask.cumsum(-1) - 1``; every prompt ends at column P - 1, which lets
    rows with one prompt share its KV cache."""
    ids = torch.cat([pad(prompts, pad_id, "left"), pad(responses, pad_id)], dim=1)
    prompt_mask, completion_mask = _mask(prompts, "left"), _mask(responses)
    return {"input_ids": ids, "attention_mask": torch.cat([prompt_mask, completion_mask], dim=1),
            "completion_mask": completion_mask}


def collate_unpaired(examples: Sequence[dict], pad_id: int) -> dict[str, torch.Tensor]:
    """Unpaired examples -> ``{"input_ids", "attention_mask", "labels", "label"}`` (``label``: bool [B])."""
    out = _prompt_response([ex["prompt_ids"] for ex in examples], [ex["completion_ids"] for ex in examples], pad_id)
    out["label"] = torch.tensor([bool(ex["label"]) for ex in examples], dtype=torch.bool)
    return out


def collate_kl(examples: Sequence[dict], pad_id: int, max_length: int | None = None) -> dict[str, torch.Tensor]:
    """KTO's KL batch: prompt ``i`` with the completion of example ``(i + 1) % B`` (mismatched pairs),
    collated like :func:`collate_unpaired` without ``label``. With ``B == 1`` the pair is the example
    itself. ``max_length`` cuts a completion from the right so each pair fits."""
    B = len(examples)
    prompts = [ex["prompt_ids"] for ex in examples]
    completions = [examples[(i + 1) % B]["completion_ids"] for i in range(B)]
    if max_length is not None:
        completions = [c[: max(0, max_length - len(p))] for p, c in zip(prompts, completions)]
    return _prompt_response(prompts, completions, pad_id)


def collate_prompts(examples: Sequence[dict], pad_id: int) -> dict[str, torch.Tensor]:
    """Prompt examples -> left-padded ``{"input_ids", "attention_mask"}`` ready for generation."""
    ids = [ex["prompt_ids"] for ex in examples]
    return {"input_ids": pad(ids, pad_id, "left"), "attention_mask": _mask(ids, "left")}


# ----------------------------------------------------------------------------- batch order


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The torch generator that orders epoch ``epoch`` of a run seeded with ``seed``."""
    return torch.Generator().manual_seed((int(seed) * 1_000_003 + int(epoch) * 7_919 + 12_345) % (2**63 - 1))


def epoch_batches(lengths: Sequence[int], batch_size: int, seed: int, epoch: int, group_by_length: bool,
                  drop_last: bool = True) -> list[list[int]]:
    """The example indices of every batch of one epoch, in order; the same arguments always give the
    same batches, and different epochs (or seeds) give different ones.

    Without ``group_by_length``: a random permutation cut into batches. With it: a random permutation
    cut into megabatches of ``50 * batch_size``, each sorted by length (longest first) and cut into
    batches, then the order of all batches shuffled -- batches hold similar lengths (little padding)
    while the order stays random. ``drop_last`` drops the incomplete final batch.
    """
    n = len(lengths)
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if n == 0:
        raise ValueError("no examples to batch")
    if drop_last and n < batch_size:
        raise ValueError(f"only {n} example(s), fewer than batch_size {batch_size}: no full batch can be formed; "
                         "lower batch_size or add data")
    g = epoch_generator(seed, epoch)
    perm = torch.randperm(n, generator=g).tolist()
    if not group_by_length:
        batches = [perm[i:i + batch_size] for i in range(0, n, batch_size)]
        if drop_last and len(batches[-1]) < batch_size:
            batches.pop()
        return batches
    mega = MEGABATCH_FACTOR * batch_size
    batches = []
    for m in range(0, n, mega):
        chunk = sorted(perm[m:m + mega], key=lambda i: -lengths[i])  # stable: ties keep random order
        batches.extend(chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size))
    if drop_last and len(batches[-1]) < batch_size:
        batches.pop()
    order = torch.randperm(len(batches), generator=g).tolist()
    return [batches[i] for i in order]


# ----------------------------------------------------------------------------- packing


def pack_examples(examples: Sequence[dict], max_length: int, eos_id: int | None = None) -> list[dict]:
    """Pack SFT examples (``input_ids``, ``labels``) into sequences of at most ``max_length`` tokens.

    Best-fit decreasing (a greedy bin packing, as TRL's ``bfd``): longest examples first, each into the
    fullest pack it still fits in. An example is never split. Each packed example holds
    ``input_ids``/``labels`` (concatenated, labels kept aligned with their tokens), ``position_ids``
    restarting at 0 for each original example, ``seq_lengths``, ``rows`` (the original row numbers) and
    ``row`` (the first of them). The first label of each original example becomes ``-100``: unpacked it
    is never a target (nothing precedes it), packed it would be predicted from the previous example's
    last token -- so a pack's shifted loss equals the sum of its examples' unpacked losses. Tokenised examples already end in their EOS/end-of-turn token, so no
    separator is inserted; ``eos_id`` is accepted for symmetry with other packers and unused.
    """
    del eos_id
    order = sorted(range(len(examples)), key=lambda i: -len(examples[i]["input_ids"]))
    packs: list[list[int]] = []
    free: list[tuple[int, int]] = []  # (room left, pack index), sorted
    for i in order:
        n = len(examples[i]["input_ids"])
        if n > max_length:
            raise ValueError(f"example from row {examples[i].get('row')} has {n} tokens, more than max_length "
                             f"{max_length}; tokenise with the same max_length")
        if n == 0:
            continue
        k = bisect.bisect_left(free, (n, -1))
        if k < len(free):
            room, p = free.pop(k)
            packs[p].append(i)
            room -= n
        else:
            p = len(packs)
            packs.append([i])
            room = max_length - n
        if room > 0:
            bisect.insort(free, (room, p))
    return [concatenate_examples([examples[i] for i in members]) for members in packs]


def concatenate_examples(examples: Sequence[dict]) -> dict:
    """SFT examples (``input_ids``, ``labels``; packed ones with ``position_ids`` and ``seq_lengths``) laid end
    to end as one: ``input_ids``/``labels`` concatenated, the first label of each sequence ``-100`` (nothing
    before it belongs to its sequence), ``position_ids`` restarting at 0 for each sequence, ``seq_lengths``,
    ``rows`` (the original row numbers) and ``row`` (the first of them)."""
    ids, labels, pos, lens, rows = [], [], [], [], []
    for ex in examples:
        parts = ex.get("seq_lengths") or [len(ex["input_ids"])]
        start = 0
        for n in parts:
            labels += [IGNORE_INDEX] + list(ex["labels"][start + 1:start + n])
            pos += range(n)
            start += n
        ids += ex["input_ids"]
        lens += parts
        rows += ex.get("rows") or [ex.get("row")]
    return {"input_ids": ids, "labels": labels, "position_ids": pos, "seq_lengths": lens, "rows": rows,
            "row": rows[0] if rows else None}


def collate_padding_free(examples: Sequence[dict], pad_id: int) -> dict[str, torch.Tensor]:
    """SFT examples -> one row without padding: ``input_ids``, ``labels``, ``position_ids`` and
    ``attention_mask`` (all ones) [1, N], N the micro-batch's token count, and ``cu_seq_lens`` [S + 1]
    (int32), the sequences' boundaries (0, L_1, L_1 + L_2, ..., N), which the model's attention reads to
    keep the S sequences apart (:mod:`alignkit.models.segment_attention`). The summed loss equals the
    padded batch's (the first label of each sequence is never a target in either). ``pad_id`` is unused."""
    del pad_id
    row = concatenate_examples(examples)
    bounds = [0]
    for n in row["seq_lengths"]:
        bounds.append(bounds[-1] + n)
    ids = torch.tensor([row["input_ids"]], dtype=torch.long)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids),
            "labels": torch.tensor([row["labels"]], dtype=torch.long),
            "position_ids": torch.tensor([row["position_ids"]], dtype=torch.long),
            "cu_seq_lens": torch.tensor(bounds, dtype=torch.int32)}
