"""Resumable checkpoints, written atomically.

Layout of ``checkpoints/step-N/``::

    trainable.safetensors   every trainable parameter by name (LoRA adapters, or the whole model)
    optimizer.pt            optimizer state (tensors and plain values only; loaded with weights_only=True)
    scheduler.json          LR scheduler state
    rng.pt / rng.json       torch (CPU and CUDA) / python / numpy RNG states of this process
    state.json              {"step": N, ...}

The directory is written under a temporary name and renamed into place, so a checkpoint either exists
whole or not at all. Resuming restores all of it; the data position follows from the step number.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

STEP_DIR = re.compile(r"^step-(\d+)$")


class ResumeError(RuntimeError):
    pass


def list_checkpoints(output_dir: str | Path) -> list[tuple[int, Path]]:
    root = Path(output_dir) / "checkpoints"
    if not root.is_dir():
        return []
    found = []
    for p in root.iterdir():
        m = STEP_DIR.match(p.name)
        if m and (p / "state.json").is_file():
            found.append((int(m.group(1)), p))
    return sorted(found)


def find_resume_checkpoint(output_dir: str | Path, resume: bool | str) -> Path | None:
    """``resume=True``: newest checkpoint of ``output_dir``; ``resume=PATH``: that checkpoint (or the
    newest one under that run directory)."""
    if resume is False:
        return None
    if resume is True:
        ckpts = list_checkpoints(output_dir)
        if not ckpts:
            raise ResumeError(f"resume=true but {Path(output_dir) / 'checkpoints'} holds no checkpoint")
        return ckpts[-1][1]
    path = Path(resume)
    if (path / "state.json").is_file():
        return path
    ckpts = list_checkpoints(path)
    if ckpts:
        return ckpts[-1][1]
    raise ResumeError(f"resume={resume}: not a checkpoint directory (no state.json) nor a run with checkpoints")


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().contiguous().cpu() for n, p in model.named_parameters() if p.requires_grad}


def _rng_state() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"cuda{i}"] = s
    np_state = np.random.get_state()
    py_state = random.getstate()
    plain = {
        "python": [py_state[0], list(py_state[1]), py_state[2]],
        "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
    }
    return tensors, plain


def _set_rng_state(tensors: dict[str, torch.Tensor], plain: dict[str, Any]) -> None:
    torch.set_rng_state(tensors["torch"])
    if torch.cuda.is_available():
        states = [tensors[k] for k in sorted(tensors) if k.startswith("cuda")]
        if states:
            torch.cuda.set_rng_state_all(states)
    v, internal, gauss = plain["python"]
    random.setstate((v, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = plain["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))


def save_checkpoint(output_dir: str | Path, step: int, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    scheduler: Any, extra: dict[str, Any] | None = None, rank: int = 0,
                    keep: int | None = None) -> Path:
    """Write ``checkpoints/step-{step}`` atomically. Each process writes its own RNG file; rank 0
    writes the rest and performs the rename (callers synchronise processes around this)."""
    root = Path(output_dir) / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{step}"
    tmp = root / f".tmp-step-{step}"
    if rank == 0:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        save_file(trainable_state(model), str(tmp / "trainable.safetensors"))
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        (tmp / "scheduler.json").write_text(json.dumps(scheduler.state_dict()))
        tensors, plain = _rng_state()
        torch.save(tensors, tmp / "rng.pt")
        (tmp / "rng.json").write_text(json.dumps(plain))
        (tmp / "state.json").write_text(json.dumps({"step": step, **(extra or {})}))
        if final.exists():
            shutil.rmtree(final)
        os.rename(tmp, final)
        if keep:
            for _, old in list_checkpoints(output_dir)[:-keep]:
                shutil.rmtree(old, ignore_errors=True)
    return final


def save_rank_rng(ckpt_dir: Path, rank: int) -> None:
    """Non-zero ranks store their RNG next to rank 0's checkpoint (after rank 0 renamed it)."""
    tensors, plain = _rng_state()
    fd, tmp = tempfile.mkstemp(dir=ckpt_dir)
    os.close(fd)
    torch.save(tensors, tmp)
    os.replace(tmp, ckpt_dir / f"rng-rank{rank}.pt")
    (ckpt_dir / f"rng-rank{rank}.json").write_text(json.dumps(plain))


def load_checkpoint(ckpt: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any,
                    rank: int = 0) -> dict[str, Any]:
    """Restore a checkpoint written by :func:`save_checkpoint`; returns its state.json."""
    try:
        state = json.loads((ckpt / "state.json").read_text())
        weights = load_file(str(ckpt / "trainable.safetensors"))
    except (OSError, ValueError) as e:
        raise ResumeError(f"cannot read checkpoint {ckpt}: {e}") from None
    params = dict(model.named_parameters())
    missing = [n for n, p in params.items() if p.requires_grad and n not in weights]
    unknown = [n for n in weights if n not in params]
    if missing or unknown:
        raise ResumeError(
            f"checkpoint {ckpt} does not match this model/config "
            f"(missing {missing[:3]}, unexpected {unknown[:3]}): resume with the same model and lora settings"
        )
    with torch.no_grad():
        for n, t in weights.items():
            params[n].copy_(t.to(params[n].device, params[n].dtype))
    optimizer.load_state_dict(torch.load(ckpt / "optimizer.pt", weights_only=True, map_location="cpu"))
    scheduler.load_state_dict(json.loads((ckpt / "scheduler.json").read_text()))
    suffix = "" if rank == 0 else f"-rank{rank}"
    rng_file = ckpt / f"rng{suffix}.pt"
    if rng_file.is_file():
        _set_rng_state(torch.load(rng_file, weights_only=True), json.loads((ckpt / f"rng{suffix}.json").read_text()))
    return state
