"""The hardware limit of a bench run: this machine's matmul throughput and memory bandwidth, the FLOPs
(and decode bytes) of the run counted from its token counts, and the time they take at that limit.

**Model shape** (:class:`ModelShape`, read from a Llama-style config): ``L`` layers, hidden size ``d``,
MLP size ``I`` (gated: gate, up, down), ``h_q`` query heads and ``h_kv`` key/value heads of size ``hd``
(``q = h_q·hd``, ``kv = h_kv·hd``), vocabulary ``V``. The matmuls of one layer are ``q (d→q)``,
``k (d→kv)``, ``v (d→kv)``, ``o (q→d)``, ``gate (d→I)``, ``up (d→I)``, ``down (I→d)``, so the layer has
``W = d·q + 2·d·kv + q·d + 3·d·I`` matmul weights; the LM head has ``d·V`` (tied or not: it is read and
multiplied either way; the embedding lookup is not a matmul).

**FLOPs** (one multiply-add = 2 FLOPs; only matmuls are counted -- norms, activations, softmax, rotary
and the loss are elementwise and left out, so every count is a lower bound of the work). For a batch of
sequences with ``T`` tokens in all, ``A`` causal query-key pairs in all (a sequence of ``n`` tokens after
``p`` cached ones has ``n·p + n(n+1)/2``; the causal half, not the ``n²`` a masked dense kernel computes)
and ``S`` positions whose logits are needed (the scored tokens: the response tokens of a training
sequence, the last position of a prefill, one per decode step):

* forward ``F = 2·T·L·W + 4·A·L·q + 2·S·d·V`` (+ LoRA ``2·T·r·Σ(in+out)`` over the adapted matmuls of
  every layer; rank ``r``, all seven linears of a layer, LM head not adapted);
* backward, full fine-tuning: every matmul needs input and weight gradients, ``2×`` its forward:
  ``B = 4·T·L·W + 8·A·L·q + 4·S·d·V`` (attention backward -- dV, dP, dQ, dK -- is twice its forward);
* backward, LoRA (frozen base, frozen embeddings): the base matmuls need only input gradients (``1×``
  their forward), except layer 0's q, k and v, whose input is the frozen embedding (no gradient needed);
  attention ``2×``; the LM head's input gradient ``2·S·d·V``; per adapted matmul the LoRA weight
  gradients ``2·T·r·(in+out)`` plus its input gradients ``2·T·r·(in+out)`` (``2·T·r·out`` only, for
  layer 0's q, k, v): ``B = 2·T·(L·W - d·(q+2·kv)) + 8·A·L·q + 2·S·d·V + 4·T·r·L·Σ(in+out)
  - 2·T·r·d·3``;
* reference forward: ``F`` without the LoRA term (the reference is the frozen base);
* generation from merged weights (no LoRA term): prefill ``F`` over the prompt with ``S = 1``; each
  decode step of one row feeds one token after ``c`` cached ones: ``2·L·W + 2·d·V + 4·(c+1)·L·q``. A
  completion of ``n`` tokens takes ``n - 1`` decode steps (the first token comes from the prefill).

**Bytes of a decode step** (the memory-bandwidth bound): all matmul weights read once per batched step,
``(L·W + d·V)·e`` bytes for element size ``e``, plus each live row's key/value cache, ``2·L·kv·c·e``.

**Time at the limit**: ``FLOPs / measured matmul throughput`` (compute-bound) and, for decoding,
``bytes / measured read bandwidth``; a decode step takes at least the larger of the two.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from alignkit.hardware import ISA_FLAGS, CpuInfo, parse_cpuinfo, read_cpu_info  # noqa: F401 (re-exported)

# ----------------------------------------------------------------------------- model shape


@dataclass(frozen=True)
class ModelShape:
    """The matmul dimensions of a Llama-style decoder (see the module docstring for the symbols)."""

    layers: int
    hidden: int
    intermediate: int
    q_heads: int
    kv_heads: int
    head_dim: int
    vocab: int

    @property
    def q_dim(self) -> int:
        return self.q_heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * self.head_dim

    def linears(self) -> list[tuple[str, int, int]]:
        """``(name, in, out)`` of the seven matmuls of one layer."""
        d, q, kv, i = self.hidden, self.q_dim, self.kv_dim, self.intermediate
        return [("q", d, q), ("k", d, kv), ("v", d, kv), ("o", q, d), ("gate", d, i), ("up", d, i), ("down", i, d)]

    @property
    def layer_weights(self) -> int:
        """``W``: matmul weights of one layer."""
        return sum(a * b for _, a, b in self.linears())

    @property
    def lora_width(self) -> int:
        """``Σ(in+out)`` over the adapted matmuls of one layer (LoRA on all seven)."""
        return sum(a + b for _, a, b in self.linears())

    @property
    def head_weights(self) -> int:
        return self.hidden * self.vocab

    @property
    def matmul_weights(self) -> int:
        """``L·W + d·V``: every weight a forward multiplies by."""
        return self.layers * self.layer_weights + self.head_weights


def shape_of(config: Any) -> ModelShape:
    """The :class:`ModelShape` of a Hugging Face config (Llama, Mistral, Qwen2 and similar field names)."""
    heads = int(config.num_attention_heads)
    hidden = int(config.hidden_size)
    head_dim = getattr(config, "head_dim", None) or hidden // heads
    return ModelShape(layers=int(config.num_hidden_layers), hidden=hidden, intermediate=int(config.intermediate_size),
                      q_heads=heads, kv_heads=int(getattr(config, "num_key_value_heads", None) or heads),
                      head_dim=int(head_dim), vocab=int(config.vocab_size))


# ----------------------------------------------------------------------------- FLOPs


def causal_pairs(n: int, past: int = 0) -> int:
    """Query-key pairs when ``n`` new tokens attend causally to themselves and ``past`` cached tokens:
    ``n·past + n(n+1)/2``."""
    return n * past + n * (n + 1) // 2


def forward_flops(shape: ModelShape, tokens: int, pairs: int, scored: int, lora_r: int = 0) -> int:
    """``F = 2·T·L·W + 4·A·L·q + 2·S·d·V + 2·T·r·L·Σ(in+out)`` (``T`` = ``tokens``, ``A`` = ``pairs``,
    ``S`` = ``scored``, ``r`` = ``lora_r``, 0 without LoRA)."""
    s = shape
    return (2 * tokens * s.layers * s.layer_weights + 4 * pairs * s.layers * s.q_dim + 2 * scored * s.head_weights
            + 2 * tokens * lora_r * s.layers * s.lora_width)


def backward_flops(shape: ModelShape, tokens: int, pairs: int, scored: int, lora_r: int = 0) -> int:
    """Backward of :func:`forward_flops`: full fine-tuning when ``lora_r`` is 0 (``2×`` the forward),
    else LoRA on a frozen base (input gradients only; none for layer 0's q, k, v input; LoRA weight and
    input gradients), as derived in the module docstring."""
    s = shape
    attention = 8 * pairs * s.layers * s.q_dim
    if lora_r == 0:
        return 4 * tokens * s.layers * s.layer_weights + attention + 4 * scored * s.head_weights
    layer0_qkv_in = s.hidden * (s.q_dim + 2 * s.kv_dim)
    base = 2 * tokens * (s.layers * s.layer_weights - layer0_qkv_in) + attention + 2 * scored * s.head_weights
    lora = 4 * tokens * lora_r * s.layers * s.lora_width - 2 * tokens * lora_r * 3 * s.hidden
    return base + lora


def decode_step_flops(shape: ModelShape, cached: int) -> int:
    """One row's decode step after ``cached`` tokens: ``2·L·W + 2·d·V + 4·(c+1)·L·q``."""
    return forward_flops(shape, tokens=1, pairs=causal_pairs(1, cached), scored=1)


def decode_step_bytes(shape: ModelShape, cached: list[int], element_size: int) -> int:
    """Bytes one batched decode step reads: the weights once, plus each row's K/V cache (``cached`` =
    the tokens cached per live row): ``(L·W + d·V)·e + Σ 2·L·kv·c·e``."""
    return (shape.matmul_weights + sum(2 * shape.layers * shape.kv_dim * c for c in cached)) * element_size


@dataclass
class RunFlops:
    """The FLOPs of a run by phase, and the bytes its decode steps read (0 without generation)."""

    forward: int = 0
    backward: int = 0
    reference: int = 0
    prefill: int = 0
    decode: int = 0
    decode_steps: int = 0
    decode_bytes: int = 0

    @property
    def generation(self) -> int:
        return self.prefill + self.decode

    @property
    def training(self) -> int:
        return self.forward + self.backward + self.reference

    def add(self, other: RunFlops) -> RunFlops:
        return RunFlops(**{k: v + getattr(other, k) for k, v in asdict(self).items()})

    def as_dict(self) -> dict[str, int]:
        return {**asdict(self), "generation": self.generation}


def training_flops(shape: ModelShape, sequences: list[tuple[int, int]], lora_r: int, reference: bool,
                   shared_prefix: int = 0) -> RunFlops:
    """Policy forward and backward (and, with ``reference``, a frozen forward) over ``sequences`` of
    ``(prompt tokens, response tokens)``, the response tokens scored. With ``shared_prefix`` > 0 the
    sequences share their first ``shared_prefix`` prompt tokens, computed once: the prefix is counted
    once (none of it scored) and each sequence's remaining tokens attend to it as cached tokens."""
    tokens = shared_prefix + sum(p + r - shared_prefix for p, r in sequences)
    pairs = causal_pairs(shared_prefix) + sum(causal_pairs(p + r - shared_prefix, shared_prefix) for p, r in sequences)
    scored = sum(r for _, r in sequences)
    return RunFlops(forward=forward_flops(shape, tokens, pairs, scored, lora_r),
                    backward=backward_flops(shape, tokens, pairs, scored, lora_r),
                    reference=forward_flops(shape, tokens, pairs, scored) if reference else 0)


def dpo_flops(shape: ModelShape, pairs: list[tuple[int, int, int]], lora_r: int, share_prompt: bool = False) -> RunFlops:
    """A DPO run over ``pairs`` of ``(prompt, chosen, rejected)`` token counts: policy forward and
    backward over both sequences of each pair, and the reference forward over them (its cache cold).
    ``share_prompt``: the prompt computed once per pair, both answers attending to it."""
    total = RunFlops()
    for p, c, r in pairs:
        total = total.add(training_flops(shape, [(p, c), (p, r)], lora_r, reference=True,
                                         shared_prefix=p if share_prompt else 0))
    return total


def generation_flops(shape: ModelShape, groups: list[tuple[int, list[int]]], element_size: int) -> RunFlops:
    """Sampling one batch: ``groups`` of ``(prompt tokens, [completion tokens])``. Each prompt is
    prefilled once for its group (its last position scored), then every row of the batch advances in
    the same decode steps, one per token after the first; a row leaves the batch when it ends. Merged
    weights, no LoRA term; the weights are read once per step for the whole batch."""
    prefill = sum(forward_flops(shape, p, causal_pairs(p), scored=1) for p, _ in groups)
    steps = max((n for _, ns in groups for n in ns), default=1) - 1
    decode = nbytes = 0
    for k in range(1, steps + 1):  # step k feeds token k of each running row, after its prompt + k - 1
        live = [p + k - 1 for p, ns in groups for n in ns if n > k]
        decode += sum(decode_step_flops(shape, c) for c in live)
        nbytes += decode_step_bytes(shape, live, element_size)
    return RunFlops(prefill=prefill, decode=decode, decode_steps=steps, decode_bytes=nbytes)


def grpo_flops(shape: ModelShape, steps: list[list[tuple[int, list[int]]]], lora_r: int, element_size: int,
               reference: bool = False, share_prompt: bool = False) -> RunFlops:
    """A GRPO run: per step, a batch of groups ``(prompt tokens, [completion tokens])`` sampled together
    (:func:`generation_flops`), then the policy forward and backward over every completion (scored)
    with its prompt (``share_prompt``: the prompt once per group) and, with ``reference``, a frozen
    forward."""
    total = RunFlops()
    for groups in steps:
        total = total.add(generation_flops(shape, groups, element_size))
        for prompt, completions in groups:
            total = total.add(training_flops(shape, [(prompt, n) for n in completions], lora_r, reference,
                                             shared_prefix=prompt if share_prompt else 0))
    return total


# ----------------------------------------------------------------------------- measuring


def _best_seconds(fn: Callable[[], Any], min_seconds: float, max_reps: int = 50) -> float:
    """Fastest of repeated calls of ``fn`` (after one warm-up), repeated until ``min_seconds`` passed."""
    fn()
    best, spent, reps = math.inf, 0.0, 0
    while reps < 2 or (spent < min_seconds and reps < max_reps):
        t0 = time.perf_counter()
        fn()
        dt = time.perf_counter() - t0
        best, spent, reps = min(best, dt), spent + dt, reps + 1
    return best


@dataclass
class Throughput:
    """Measured matmul throughput (GFLOP/s) at one run's shapes: per shape, and the effective figure of
    one forward (its FLOPs over the time its matmuls take at the measured rates). ``work``: each shape's
    FLOPs in one forward (the weights of the effective figure); ``samples``: the effective figure of each
    measurement merged in by :func:`best_throughput`."""

    dtype: str
    tokens: int
    gflops: float
    per_shape: dict[str, float] = field(default_factory=dict)
    work: dict[str, float] = field(default_factory=dict)
    samples: list[float] = field(default_factory=list)


def effective_gflops(per_shape: dict[str, float], work: dict[str, float]) -> float:
    """``Σ work / Σ (work / rate)``: one forward's FLOPs over the time its matmuls take at ``per_shape``."""
    return sum(work.values()) / sum(w / per_shape[name] for name, w in work.items())


def best_throughput(measurements: list[Throughput]) -> Throughput:
    """The limit over several measurements of the same shapes: each shape at the fastest rate any of them
    measured. A shared machine's matmul speed moves from second to second (on 2026-12-07's AMD EPYC one
    product measured 114-192 GFLOP/s within 30 s), so a single few-second measurement taken in a slow
    moment would put the limit too low; the best of several is the speed the machine showed it can
    reach. ``samples`` lists each measurement's own effective figure."""
    first = measurements[0]
    per = {name: max(m.per_shape[name] for m in measurements) for name in first.per_shape}
    samples = [s for m in measurements for s in (m.samples or [m.gflops])]
    return Throughput(dtype=first.dtype, tokens=first.tokens, gflops=effective_gflops(per, first.work),
                      per_shape=per, work=dict(first.work), samples=samples)


def measure_matmul(shape: ModelShape, tokens: int, scored: int, seq_len: int, rows: int,
                   dtype: torch.dtype = torch.float32, min_seconds: float = 0.2) -> Throughput:
    """Time ``[tokens, in] @ [in, out]`` for each distinct layer matmul, ``[scored, d] @ [d, V]`` for the
    LM head and the attention products ``[rows·h_q, seq_len, hd] @ [.., hd, seq_len]`` (scores) and
    ``[.., seq_len, seq_len] @ [.., seq_len, hd]`` (values), in ``dtype``, each at its best of repeated
    runs (``min_seconds`` each). The effective figure weights each by how often a forward runs it:
    ``Σ flops / Σ flops / rate``."""
    gen = torch.Generator().manual_seed(0)
    work: dict[str, tuple[tuple[int, ...], tuple[int, ...], int]] = {}  # name -> (a shape, b shape, count)
    for _, a, b in shape.linears():
        key = f"{a}x{b}"
        prev = work.get(key)
        work[key] = ((tokens, a), (a, b), (prev[2] if prev else 0) + shape.layers)
    work[f"head {shape.hidden}x{shape.vocab}"] = ((max(scored, 1), shape.hidden), (shape.hidden, shape.vocab), 1)
    bh = rows * shape.q_heads
    work["attn scores"] = ((bh, seq_len, shape.head_dim), (bh, shape.head_dim, seq_len), shape.layers)
    work["attn values"] = ((bh, seq_len, seq_len), (bh, seq_len, shape.head_dim), shape.layers)
    per, weights = {}, {}
    for name, (sa, sb, count) in work.items():
        a = torch.randn(sa, generator=gen).to(dtype)
        b = torch.randn(sb, generator=gen).to(dtype)
        out = torch.empty(*sa[:-1], sb[-1], dtype=dtype)
        flops = 2.0 * math.prod(sa) * sb[-1]
        with torch.no_grad():
            dt = _best_seconds(lambda a=a, b=b, out=out: torch.matmul(a, b, out=out), min_seconds)
        per[name] = flops / dt / 1e9
        weights[name] = count * flops
    gflops = effective_gflops(per, weights)
    return Throughput(dtype=str(dtype).removeprefix("torch."), tokens=tokens, gflops=gflops, per_shape=per,
                      work=weights, samples=[gflops])


@dataclass
class Bandwidth:
    """Measured memory bandwidth (GB/s) on a buffer of ``mib`` MiB: reading it (a sum) and copying it
    (read + write, both counted)."""

    mib: int
    read_gbs: float
    copy_gbs: float


def measure_bandwidth(mib: int = 512, min_seconds: float = 0.3) -> Bandwidth:
    """Time ``src.sum()`` (``mib`` MiB read) and ``dst.copy_(src)`` (``2·mib`` MiB moved) on float32
    buffers larger than the caches; best of repeated runs."""
    n = mib * 2**20 // 4
    src = torch.ones(n, dtype=torch.float32)
    dst = torch.empty_like(src)
    nbytes = float(n * 4)
    with torch.no_grad():
        read = _best_seconds(lambda: src.sum(), min_seconds)
        copy = _best_seconds(lambda: dst.copy_(src), min_seconds)
    return Bandwidth(mib=mib, read_gbs=nbytes / read / 1e9, copy_gbs=2 * nbytes / copy / 1e9)


# ----------------------------------------------------------------------------- time at the limit


def bound_seconds(flops: RunFlops, train_gflops: float, gen_gflops: float | None = None,
                  read_gbs: float | None = None) -> dict[str, float]:
    """Seconds each phase takes at the limit: training phases at ``train_gflops``; prefill and decode
    at ``gen_gflops`` (default: ``train_gflops``); decode also at ``read_gbs`` (its bytes), the step
    bound being the larger. ``total_s`` adds training, prefill and the decode bound."""
    gen = gen_gflops or train_gflops
    out = {name: getattr(flops, name) / (train_gflops * 1e9) for name in ("forward", "backward", "reference")}
    out = {f"{k}_s": v for k, v in out.items()}
    out["prefill_s"] = flops.prefill / (gen * 1e9)
    out["decode_compute_s"] = flops.decode / (gen * 1e9)
    out["decode_memory_s"] = flops.decode_bytes / (read_gbs * 1e9) if read_gbs else 0.0
    out["generation_s"] = out["prefill_s"] + max(out["decode_compute_s"], out["decode_memory_s"])
    out["total_s"] = out["forward_s"] + out["backward_s"] + out["reference_s"] + out["generation_s"]
    return out
