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
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
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


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def checkpoint_problem(ckpt: str | Path, rank: int = 0) -> str | None:
    """What is wrong with checkpoint ``ckpt`` (a missing, truncated or unreadable file), or None when
    it is intact. Cheap: reads the JSON files and the headers / zip directories of the binary ones
    (a truncated safetensors or torch file fails there), not the tensors."""
    ckpt = Path(ckpt)
    suffix = "" if rank == 0 else f"-rank{rank}"
    rng_pt = ckpt / f"rng{suffix}.pt"
    checks = [("state.json", "json"), ("trainable.safetensors", "safetensors"), ("optimizer.pt", "torch"),
              ("scheduler.json", "json")]
    if rng_pt.is_file() or rank == 0:
        checks += [(rng_pt.name, "torch"), (f"rng{suffix}.json", "json")]
    for name, kind in checks:
        f = ckpt / name
        if not f.is_file():
            return f"{name} is missing"
        try:
            if kind == "json":
                value = json.loads(f.read_text())
                if name == "state.json" and not (isinstance(value, dict) and isinstance(value.get("step"), int)):
                    return "state.json holds no step number"
            elif kind == "safetensors":
                with safe_open(str(f), framework="pt") as handle:
                    handle.keys()
            else:  # torch.save writes a zip archive: a truncated one has lost its central directory
                with zipfile.ZipFile(f) as archive:
                    archive.namelist()
        except Exception as e:  # noqa: BLE001 - every reader failure means a damaged file
            return f"{name} is unreadable: {_one_line(e)}"
    return None


def damaged_checkpoint_error(ckpt: str | Path, problem: str) -> ResumeError:
    """The error for a damaged checkpoint: names it and the newest intact older checkpoint of the same
    run, which ``resume=PATH`` continues from."""
    ckpt = Path(ckpt)
    m = STEP_DIR.match(ckpt.name)
    older: list[Path] = []
    if m and ckpt.parent.name == "checkpoints":
        step = int(m.group(1))
        older = [p for s, p in list_checkpoints(ckpt.parent.parent) if s < step]
    intact = next((p for p in reversed(older) if checkpoint_problem(p) is None), None)
    if intact is not None:
        hint = f"the newest intact older checkpoint is {intact}: continue from it with resume={intact}"
    else:
        hint = f"no older intact checkpoint to fall back to: remove {ckpt} and run without resume to start over"
    return ResumeError(f"checkpoint {ckpt} is damaged ({problem}); {hint}")


def verify_checkpoint(ckpt: str | Path, rank: int = 0) -> None:
    """Raise :class:`ResumeError` (see :func:`damaged_checkpoint_error`) unless ``ckpt`` is intact."""
    problem = checkpoint_problem(ckpt, rank)
    if problem is not None:
        raise damaged_checkpoint_error(ckpt, problem)


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().contiguous().cpu() for n, p in model.named_parameters() if p.requires_grad}


def copy_trainable(model: torch.nn.Module, weights: dict[str, torch.Tensor]) -> None:
    """Copy ``weights`` (as :func:`trainable_state` names them) into ``model``'s parameters, in place, onto
    each parameter's device and dtype."""
    params = dict(model.named_parameters())
    with torch.no_grad():
        for n, t in weights.items():
            params[n].copy_(t.to(params[n].device, params[n].dtype))


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
    """Restore a checkpoint written by :func:`save_checkpoint`; returns its state.json.

    Everything is read before anything is restored, so a damaged file (a :class:`ResumeError` naming
    the checkpoint and an older intact one) leaves the model, optimizer and RNG as they were."""
    ckpt = Path(ckpt)
    suffix = "" if rank == 0 else f"-rank{rank}"
    rng_file = ckpt / f"rng{suffix}.pt"
    reading = "state.json"
    try:
        state = json.loads((ckpt / reading).read_text())
        reading = "trainable.safetensors"
        weights = load_file(str(ckpt / reading))
        reading = "optimizer.pt"
        optim_state = torch.load(ckpt / reading, weights_only=True, map_location="cpu")
        reading = "scheduler.json"
        sched_state = json.loads((ckpt / reading).read_text())
        rng = None
        if rng_file.is_file():
            reading = rng_file.name
            tensors = torch.load(rng_file, weights_only=True)
            reading = f"rng{suffix}.json"
            rng = (tensors, json.loads((ckpt / reading).read_text()))
    except Exception as e:  # noqa: BLE001 - a missing, truncated or corrupt file, whatever the reader raises
        problem = f"{reading} is missing" if not (ckpt / reading).is_file() else f"{reading} is unreadable: {_one_line(e)}"
        raise damaged_checkpoint_error(ckpt, problem) from None
    params = dict(model.named_parameters())
    missing = [n for n, p in params.items() if p.requires_grad and n not in weights]
    unknown = [n for n in weights if n not in params]
    if missing or unknown:
        raise ResumeError(
            f"checkpoint {ckpt} does not match this model/config "
            f"(missing {missing[:3]}, unexpected {unknown[:3]}): resume with the same model and lora settings"
        )
    copy_trainable(model, weights)
    try:
        optimizer.load_state_dict(optim_state)
    except (ValueError, KeyError) as e:
        raise ResumeError(f"checkpoint {ckpt}: its optimizer state does not match this model/config "
                          f"({_one_line(e)}): resume with the same model, lora and learning-rate settings") from None
    scheduler.load_state_dict(sched_state)
    if rng is not None:
        _set_rng_state(*rng)
    return state
