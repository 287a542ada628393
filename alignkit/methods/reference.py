"""The frozen reference policy of the preference methods (DPO family, KTO), obtained as cheaply as possible.

A reference-based loss needs ``log pi_ref(y | x)`` for every response it trains on. alignkit gets it in
the cheapest way the run allows, chosen once in ``Method.setup`` (after ``accelerator.prepare``, before
any optimizer step and before a checkpoint is restored, so the policy still *is* the reference):

``precomputed``
    ``precompute_ref_log_probs=true`` (the default for offline data). One pass over every training and
    evaluation example under ``torch.no_grad`` (length-sorted batches, shared among processes) stores
    each example's summed reference log-probs on the example dict (``ref_chosen_logps`` ...), so that
    ``collate`` carries them and training does one forward per batch instead of two. The values are
    cached on disk under ``cache_dir()/ref_logps/<key>.safetensors``; the key hashes the tokenised
    examples, a fingerprint of the reference weights (see :func:`model_fingerprint`), the device type
    and the mixed-precision mode, so a second run on the same data and model skips the pass. With LoRA
    the pass runs with the adapters disabled; in full fine-tuning the untrained policy itself is the
    reference, so no copy is made either.
``adapters-disabled``
    LoRA without precompute: the reference is the policy with its adapters switched off (peft's
    ``disable_adapter()``), run under ``torch.no_grad`` once per batch. No second model in memory.
``frozen-copy``
    Full fine-tuning without precompute: one deep copy of the unwrapped model, frozen
    (``requires_grad=False``, eval mode). Nothing more.
``none``
    Reference-free losses (SimPO, ORPO): no reference is built, copied or run.

Reference forwards run in eval mode (no dropout) and under ``torch.random.fork_rng``, so they never
change the random-number streams of training: a resumed run reproduces an uninterrupted one.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from alignkit.engine.distributed import is_fsdp
from alignkit.methods.common import forward_label_logps, pair_sequence_logps
from alignkit.models.modules import base_module, eval_mode, is_peft, unwrap
from alignkit.paths import cache_dir

MODES = ("none", "precomputed", "adapters-disabled", "frozen-copy")
CACHE_FORMAT = 1


def ref_cache_dir() -> Path:
    """Where precomputed reference log-probs are cached: ``cache_dir()/ref_logps``, or
    ``$ALIGNKIT_REF_CACHE`` when set (the benchmark points it at an empty directory so that the
    reference pass is always timed)."""
    env = os.environ.get("ALIGNKIT_REF_CACHE")
    return Path(env) if env else cache_dir() / "ref_logps"


def to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """Move the tensors of a collated batch to ``device``."""
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def announce(message: str, accelerator: Any = None) -> None:
    """Print a one-line note on stderr (main process only): how the reference was obtained, cache hits."""
    if accelerator is None or accelerator.is_main_process:
        print(f"alignkit: {message}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- fingerprints


_INT_VIEW = {1: torch.int8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


def _tensor_digest(t: torch.Tensor) -> bytes:
    """Cheap but content-sensitive digest of a tensor: its first/last 256 values, 1,024 evenly strided
    values and the integer sum of the bit patterns of all values (exact, so independent of the
    summation order, thread count or device)."""
    if hasattr(t, "full_tensor"):  # an FSDP2 shard (DTensor): hash the whole tensor, the same on every rank
        t = t.full_tensor()
    flat = t.detach().reshape(-1)
    n = flat.numel()
    if n == 0:
        return b"empty"
    stride = max(1, n // 1024)
    parts = [flat[:256], flat[-256:], flat[::stride][:1024]]
    sample = torch.cat([p.float() for p in parts]).cpu().numpy().tobytes()
    as_int = _INT_VIEW.get(flat.element_size())
    if flat.is_floating_point() and as_int is not None:
        total = int(flat.contiguous().view(as_int).sum(dtype=torch.int64))
    else:
        total = int(flat.sum(dtype=torch.int64)) if not flat.is_floating_point() else float(flat.double().sum())
    return sample + repr(total).encode()


def model_fingerprint(model: torch.nn.Module) -> str:
    """Identity of the *reference* weights of ``model`` (possibly peft- and/or DDP-wrapped).

    Hashes the model config (without its path) and, for every non-LoRA parameter, its name (with
    peft's ``base_model.model.`` prefix and ``.base_layer`` segments removed, so that a LoRA run and a
    full fine-tuning run of the same base share their reference cache), shape, dtype and a digest of
    its values (:func:`_tensor_digest`). About a second for a 135M-parameter model on one CPU core.
    """
    h = hashlib.sha256()
    base = base_module(model)
    config = getattr(base, "config", None)
    if config is not None:
        cfg = {k: v for k, v in config.to_dict().items() if k not in ("_name_or_path", "transformers_version")}
        h.update(json.dumps(cfg, sort_keys=True, default=str).encode())
    for name, p in sorted(unwrap(model).named_parameters(), key=lambda kv: kv[0]):
        if "lora_" in name:
            continue
        name = name.removeprefix("base_model.model.").replace(".base_layer", "")
        h.update(f"{name}|{tuple(p.shape)}|{p.dtype}".encode())
        h.update(_tensor_digest(p))
    return h.hexdigest()


def examples_key(tag: str, fingerprint: str, examples: Sequence[dict], fields: Sequence[str],
                 extra: str = "") -> str:
    """Cache key: a hash of ``tag``, the reference fingerprint, ``extra`` (device, precision) and the
    token ids of ``fields`` of every example, in order."""
    h = hashlib.sha256()
    h.update(f"v{CACHE_FORMAT}|{tag}|{fingerprint}|{extra}|{len(examples)}".encode())
    for ex in examples:
        for f in fields:
            ids = ex[f]
            h.update(len(ids).to_bytes(4, "little"))
            h.update(torch.tensor(ids, dtype=torch.int64).numpy().tobytes())
    return h.hexdigest()[:32]


# ----------------------------------------------------------------------------- cache files


def _load_cached(path: Path, columns: Sequence[str], n: int) -> dict[str, torch.Tensor] | None:
    if not path.is_file():
        return None
    from safetensors.torch import load_file

    try:
        data = load_file(str(path))
    except Exception:  # a corrupt or foreign file: recompute and overwrite
        return None
    if any(c not in data or tuple(data[c].shape) != (n,) for c in columns):
        return None
    return {c: data[c].float() for c in columns}


def _save_cached(path: Path, values: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    from safetensors.torch import save_file

    from alignkit.files import atomic_path

    with atomic_path(path) as tmp:
        save_file({k: v.detach().float().contiguous().cpu() for k, v in values.items()}, str(tmp), metadata=metadata)


# ----------------------------------------------------------------------------- the reference


@contextmanager
def _quiet_rng(device: torch.device | None) -> Iterator[None]:
    """Run a block without touching the caller's RNG state (CPU and the current CUDA device)."""
    devices = [device.index if device.index is not None else torch.cuda.current_device()] \
        if device is not None and device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        yield


class Reference:
    """How reference log-probs are obtained for one run (see the module docstring for the modes).

    ``mode`` is one of :data:`MODES`; ``how`` a human-readable account of it (logged once).
    :meth:`sequence_logps` runs a reference forward on a collated batch; :meth:`attach` runs the
    precompute pass over a list of examples (with the on-disk cache).
    """

    def __init__(self, policy: torch.nn.Module, accelerator: Any, *, precompute: bool) -> None:
        self.policy = policy
        self.accelerator = accelerator
        self.peft = is_peft(policy)
        self.copy: torch.nn.Module | None = None
        self.precompute = precompute
        self._fingerprint: str | None = None
        self.cache_hits = 0
        self.cache_misses = 0
        if precompute:
            self.mode = "precomputed"
            self.how = ("precomputed once before training with the LoRA adapters disabled" if self.peft else
                        "precomputed once before training from the untrained policy (no copy held)")
            # full fine-tuning: the policy is the reference only until the first optimizer step
            self._live = self.peft
        elif self.peft:
            self.mode = "adapters-disabled"
            self.how = "the policy with its LoRA adapters disabled, run under no_grad each step (no copy)"
            self._live = True
        else:
            self.mode = "frozen-copy"
            self.copy = copy.deepcopy(unwrap(policy))
            self.copy.requires_grad_(False)
            self.copy.eval()
            self.how = "one frozen copy of the initial model, run under no_grad each step"
            self._live = True

    # -- forwards ---------------------------------------------------------------------------------
    @contextmanager
    def module(self) -> Iterator[torch.nn.Module]:
        """The module to run a reference forward on (eval mode, adapters disabled where LoRA)."""
        if self.copy is not None:
            yield self.copy
            return
        inner = unwrap(self.policy)
        with eval_mode(inner):
            if self.peft:
                with inner.disable_adapter():
                    yield inner
            else:
                yield inner

    def sequence_logps(self, batch: dict[str, torch.Tensor],
                       share_prompt: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Reference log-probs of a collated batch (``input_ids``/``attention_mask``/``labels``):
        (summed response log-probs [N], response lengths [N]), float32, no gradient. ``share_prompt``:
        a preference batch whose pairs share their prompt's forward (:func:`pair_sequence_logps`)."""
        if not self._live:
            raise RuntimeError("reference log-probs were precomputed for this run, but a batch carries none "
                               "(the trained policy is no longer the reference)")
        device = batch["input_ids"].device
        with torch.no_grad(), _quiet_rng(device), self.module() as m:
            if share_prompt:
                return pair_sequence_logps(m, batch)
            logps, mask = forward_label_logps(m, batch)
        return logps.sum(-1), mask.sum(-1)

    # -- precompute -------------------------------------------------------------------------------
    def fingerprint(self) -> str:
        if self._fingerprint is None:
            self._fingerprint = model_fingerprint(self.policy)
        return self._fingerprint

    def attach(
        self,
        examples: list[dict],
        columns: Sequence[str],
        compute: Callable[[list[dict]], dict[str, torch.Tensor]],
        *,
        tag: str,
        id_fields: Sequence[str],
        lengths: Sequence[int],
        batch_size: int,
        what: str = "examples",
    ) -> bool:
        """Store reference log-probs ``columns`` on every example dict (as Python floats).

        ``compute(chunk)`` returns ``{column: tensor [len(chunk)]}`` for a list of examples (it collates
        and calls :meth:`sequence_logps`). The pass runs in length-sorted batches of ``batch_size``,
        shared among processes (each computes a slice; the results are summed across processes), in
        eval mode, without gradients and without touching the RNG state. Returns True on a cache hit.
        """
        acc = self.accelerator
        n = len(examples)
        extra = f"{acc.device.type}|{acc.mixed_precision}"
        key = examples_key(tag, self.fingerprint(), examples, id_fields, extra)
        try:
            path: Path | None = ref_cache_dir() / f"{key}.safetensors"
        except OSError:  # the cache root cannot be created: compute without a cache
            path = None
        values = _load_cached(path, columns, n) if path is not None else None
        hit = values is not None
        if acc.num_processes > 1:  # all processes must agree, or the pass's collective would hang
            flag = torch.tensor([1.0 if hit else 0.0], device=acc.device)
            hit = bool(acc.reduce(flag, reduction="sum").item() == acc.num_processes)
            values = values if hit else None
        if hit:
            self.cache_hits += 1
            announce(f"reference log-probs of {n} {what} loaded from cache {path}", acc)
        else:
            self.cache_misses += 1
            t0 = time.perf_counter()
            values = self._compute(examples, columns, compute, lengths, batch_size)
            where = f"cached at {path}" if path is not None else "not cached (no cache directory)"
            if acc.is_main_process and path is not None:
                try:
                    _save_cached(path, values, {"tag": tag, "examples": str(n), "fingerprint": self.fingerprint()})
                except OSError as e:  # a read-only or full cache costs the next run a pass, nothing more
                    where = f"not cached ({e})"
            announce(f"reference log-probs of {n} {what} computed in {time.perf_counter() - t0:.1f}s "
                     f"({self.how}); {where}", acc)
        acc.wait_for_everyone()
        for c in columns:
            for ex, v in zip(examples, values[c].tolist()):
                ex[c] = v
        return hit

    def _compute(self, examples: list[dict], columns: Sequence[str],
                 compute: Callable[[list[dict]], dict[str, torch.Tensor]],
                 lengths: Sequence[int], batch_size: int) -> dict[str, torch.Tensor]:
        acc = self.accelerator
        n = len(examples)
        order = sorted(range(n), key=lambda i: -lengths[i])
        batches = [order[i:i + batch_size] for i in range(0, n, batch_size)]
        mine = batches[acc.process_index::acc.num_processes]
        if is_fsdp(acc):  # every forward is a collective there: all ranks run as many
            rounds = -(-len(batches) // acc.num_processes)
            mine += [None] * (rounds - len(mine))
        out = {c: torch.zeros(n, dtype=torch.float32, device=acc.device) for c in columns}
        live, self._live = self._live, True  # before the first step the policy is the reference
        try:
            with torch.no_grad(), _quiet_rng(acc.device), acc.autocast():
                for idx in mine:
                    if idx is None:  # a padding forward (FSDP), result dropped
                        compute([examples[i] for i in batches[0]])
                        continue
                    got = compute([examples[i] for i in idx])
                    where = torch.tensor(idx, device=acc.device)
                    for c in columns:
                        out[c].index_copy_(0, where, got[c].to(device=acc.device, dtype=torch.float32))
        finally:
            self._live = live
        if acc.num_processes > 1:  # every slot was filled by exactly one process, zeros elsewhere
            out = {c: acc.reduce(v, reduction="sum") for c, v in out.items()}
        return {c: v.cpu() for c, v in out.items()}


def build_reference(policy: torch.nn.Module, accelerator: Any, *, precompute: bool) -> Reference:
    """The :class:`Reference` of a run (a separate function so tests can check it is never called)."""
    return Reference(policy, accelerator, precompute=precompute)
