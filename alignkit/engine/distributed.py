"""The run's ``Accelerator``, and FSDP on CPU processes.

``accelerate launch --use_fsdp`` selects FSDP only on accelerator devices (CUDA, XPU, NPU, ...); with CPU
processes (gloo) accelerate 1.x silently falls back to DDP. PyTorch's FSDP2 (``fully_shard``) does run on
CPU with gloo, so when the launcher asked for FSDP and the processes are CPU ones, alignkit selects
accelerate's FSDP2 path itself: the same plugin (the ``FSDP_*`` settings of the launch), the same
``prepare``. That is what lets the FSDP tests run on a CPU-only machine.

Under FSDP the weights are sharded across processes: saving ``final/`` gathers the full state dict
(a collective every process joins) and the main process writes it from a plain copy of the model.
Resumable checkpoints of sharded optimizer state are not written yet (:func:`check_fsdp_config`).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin

from alignkit.config import ConfigError, TrainConfig


def _fsdp_requested() -> bool:
    return os.environ.get("ACCELERATE_USE_FSDP", "false").lower() in ("1", "true")


def make_accelerator(**kwargs: Any) -> Accelerator:
    """``Accelerator(**kwargs)``, with FSDP2 selected on CPU processes when the launch asked for FSDP."""
    cpu_fsdp = _fsdp_requested() and not torch.cuda.is_available() and int(os.environ.get("WORLD_SIZE", "1")) > 1
    plugin = FullyShardedDataParallelPlugin() if cpu_fsdp else None  # reads the launcher's FSDP_* settings
    acc = Accelerator(fsdp_plugin=plugin, **kwargs)
    if cpu_fsdp and acc.distributed_type == DistributedType.MULTI_CPU:
        if plugin.fsdp_version != 2:
            raise ConfigError("FSDP on CPU processes needs FSDP2: launch with --fsdp_version 2 "
                              "(FSDP1 runs on CUDA devices only)")
        acc.state.distributed_type = DistributedType.FSDP
        acc.state.fsdp_plugin = plugin
        acc.alignkit_cpu_fsdp = True  # accelerate re-derives distributed_type later; remember the choice
    if acc.num_processes > 1 and acc.is_main_process:
        device = "CPU processes (gloo)" if acc.device.type == "cpu" else f"{acc.device.type} processes"
        print(f"distributed: {acc.distributed_type.value} over {acc.num_processes} {device}", file=sys.stderr)
    return acc


def is_fsdp(acc: Any) -> bool:
    """True when the run's model is sharded with FSDP (on GPUs by accelerate, on CPU by alignkit)."""
    return getattr(acc, "distributed_type", None) == DistributedType.FSDP or getattr(acc, "alignkit_cpu_fsdp", False)


def check_fsdp_config(acc: Accelerator, config: TrainConfig) -> None:
    """Refuse, before training, what an FSDP run does not do yet."""
    if not is_fsdp(acc):
        return
    if config.save_steps or config.resume:
        raise ConfigError("save_steps and resume are not supported under FSDP yet (sharded optimizer "
                          "checkpoints are not written); final/ is saved at the end. Set save_steps=0")


def model_for_saving(acc: Accelerator, model: torch.nn.Module,
                     build: Callable[[], torch.nn.Module]) -> torch.nn.Module | None:
    """The trained model as a plain module to save: the unwrapped model, or under FSDP a fresh
    ``build()`` holding the gathered full weights (``None`` on the other processes). Every process must
    call this (the gather is a collective)."""
    if not is_fsdp(acc):
        return acc.unwrap_model(model)
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    state = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    if not acc.is_main_process:
        return None
    plain = build()
    plain.load_state_dict(state)
    return plain
