"""The one training loop every method runs on (on ``accelerate``: DDP/FSDP/DeepSpeed come from there).

Read it top to bottom: set-up, data, model, optimizer, resume, then the step loop. One optimizer step:

1. take the step's global batch of example indices (fixed by seed, epoch and step number, which is
   what makes resume exact), give each process its share and cut it into ``grad_accum`` micro-batches;
2. count the loss units of the whole global batch (all processes, all micro-batches);
3. for each micro-batch: ``loss = method.loss(...).loss_sum * world_size / global_units``, backward
   (gradients synchronised only on the last micro-batch);
4. stop on a non-finite loss (no step taken, the last checkpoint stays good), clip, step, log.

Because the loss is normalised by the *global* unit count, 1 process x 4 examples, 2 processes x 2,
and 1 process x 2 x 2 accumulation steps give the same update.
"""

from __future__ import annotations

import math
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import ProjectConfiguration, set_seed
from tqdm.auto import tqdm

from alignkit.config import ConfigError, TrainConfig, check_output_dir, dump_config
from alignkit.data import epoch_batches
from alignkit.engine import trackers
from alignkit.engine.best import BestModel
from alignkit.engine.checkpoint import (
    find_resume_checkpoint,
    list_checkpoints,
    load_checkpoint,
    save_checkpoint,
    save_rank_rng,
    verify_checkpoint,
)
from alignkit.engine.distributed import check_fsdp_config, is_fsdp, make_accelerator, model_for_saving
from alignkit.engine.logging import MetricsLog
from alignkit.engine.method import Method
from alignkit.engine.schedule import build_scheduler


class TrainingDiverged(RuntimeError):
    pass


@dataclass
class RunResult:
    output_dir: Path
    steps: int
    final_dir: Path | None
    interrupted: bool = False


def _mixed_precision(config: TrainConfig) -> str:
    if config.bf16 == "auto":
        ok = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
        return "bf16" if ok else "no"
    return "bf16" if config.bf16 else "no"


def _split_step(indices: list[int], world: int, rank: int, accum: int) -> list[list[int]]:
    """This process's micro-batches of one global step: micro-batch k of rank r holds the slice
    number ``k * world + r`` of the step's indices."""
    n_slices = world * accum
    per = len(indices) // n_slices
    return [indices[(k * world + rank) * per:(k * world + rank + 1) * per] for k in range(accum)]


def param_groups(model: torch.nn.Module, method: Method, config: TrainConfig) -> list[dict[str, Any]]:
    """AdamW parameter groups of the trainable parameters: weight decay on matrices only, and the
    learning rate the method asks for each parameter (``Method.param_lr``; ``config.lr`` by default).
    Groups keep a fixed order (first appearance), so a checkpoint's optimizer state always fits."""
    groups: dict[tuple[float, bool], list[torch.nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        lr = method.param_lr(name)
        groups.setdefault((config.lr if lr is None else float(lr), p.ndim >= 2), []).append(p)
    return [{"params": ps, "lr": lr, "weight_decay": config.weight_decay if decay else 0.0}
            for (lr, decay), ps in groups.items()]


def _reduce_sums(accelerator: Accelerator, values: list[float]) -> list[float]:
    t = torch.tensor(values, dtype=torch.float64, device=accelerator.device)
    if accelerator.num_processes > 1:
        t = accelerator.reduce(t, reduction="sum")
    return t.tolist()


class Trainer:
    """Holds the state of one run; :meth:`fit` is the loop."""

    def __init__(self, method_cls: type[Method], config: TrainConfig) -> None:
        from alignkit import models  # heavy import, kept out of CLI start-up

        self.config = config
        self.out = Path(config.output_dir)
        missing = trackers.missing_tracker_package(config.report_to) or models.quantize_unavailable(config.lora.quantize)
        if missing:  # before anything is loaded
            raise ConfigError(missing)
        self.accelerator = make_accelerator(
            mixed_precision=_mixed_precision(config), cpu=not torch.cuda.is_available(),
            log_with=config.report_to or None,
            project_config=ProjectConfiguration(project_dir=str(self.out), logging_dir=str(self.out / "tensorboard")))
        acc = self.accelerator
        check_fsdp_config(acc, config)
        check_output_dir(self.out)  # a file there is refused (and left alone) before anything runs
        self.resume_from = find_resume_checkpoint(self.out, config.resume)
        if self.resume_from is not None:  # a damaged checkpoint stops the run before any loading
            verify_checkpoint(self.resume_from, rank=acc.process_index)
        if self.resume_from is None and list_checkpoints(self.out) and acc.is_main_process:
            raise ConfigError(
                f"{self.out} already holds checkpoints of an earlier run: pass resume=true to continue it, "
                "or choose another output_dir"
            )
        set_seed(config.seed)

        # data first, so that a bad row stops the run before any model is loaded
        self.tokenizer = models.load_tokenizer(config.model, trust_remote_code=config.trust_remote_code)
        self.method = method_cls(config, self.tokenizer)
        if config.data is None:
            raise ConfigError("no training data: set data=FILE")
        self.examples = self.method.build_examples(config.data)
        self.eval_examples = self.method.build_examples(config.eval_data) if config.eval_data else None
        self.lengths = [self.method.example_length(e) for e in self.examples]

        world, bs, accum = acc.num_processes, config.batch_size, config.grad_accum
        self.step_size = bs * world * accum
        if len(self.examples) < self.step_size:
            raise ConfigError(
                f"{config.data}: {len(self.examples)} usable examples, fewer than one optimizer step needs "
                f"(batch_size {bs} x grad_accum {accum} x {world} processes = {self.step_size})"
            )
        self.batches_per_epoch = len(self.examples) // self.step_size
        self.repeat = max(1, int(self.method.steps_per_batch))  # optimizer steps per data batch
        self.steps_per_epoch = self.batches_per_epoch * self.repeat
        if config.max_steps > 0:
            self.total_steps = config.max_steps
        else:
            self.total_steps = max(1, math.ceil(config.epochs * self.steps_per_epoch))

        model = self.method.build_model()

        optimizer = torch.optim.AdamW(param_groups(model, self.method, config), lr=config.lr,
                                      betas=(config.adam_beta1, config.adam_beta2))
        warmup = config.warmup_steps or int(config.warmup_ratio * self.total_steps)
        self.scheduler = build_scheduler(optimizer, self.total_steps, warmup, config.scheduler)
        # the scheduler is stepped by us once per optimizer step, so it is not handed to accelerate
        self.model, self.optimizer = acc.prepare(model, optimizer)
        # after prepare: the model is on its device (methods unwrap it when they need the module)
        self.method.setup(self.model, acc)

        self.start_step = 0
        # the metrics of a finished step whose evaluation was interrupted: logged once it is redone on resume
        self.pending: dict[str, Any] | None = None
        if self.resume_from is not None:
            state = load_checkpoint(self.resume_from, acc.unwrap_model(self.model), self.optimizer,
                                    self.scheduler, rank=acc.process_index)
            self.start_step = int(state["step"])
            self.pending = state.get("pending_metrics")
        if acc.is_main_process:
            self.out.mkdir(parents=True, exist_ok=True)
            dump_config(config, self.out / "config.yaml")
        self.log = MetricsLog(self.out, self.start_step if self.resume_from else None,
                              enabled=acc.is_main_process)
        self.best = BestModel(config, self.out, resumed=self.resume_from is not None)
        if config.report_to:
            acc.init_trackers(f"alignkit-{self.method.name}",
                              config=trackers.flat_config(config.model_dump(mode="json")),
                              init_kwargs=trackers.init_kwargs(config.report_to, self.out))

    def _log(self, step: int, metrics: dict[str, Any]) -> None:
        """One metrics row: ``metrics.jsonl``, and the ``report_to`` trackers (finite numbers only)."""
        self.log.log(step, metrics)
        if self.config.report_to:
            self.accelerator.log(trackers.numeric(metrics), step=step)

    def _close_logs(self) -> None:
        self.log.close()
        if self.config.report_to:
            self.accelerator.end_training()

    # ------------------------------------------------------------------------------------------
    def _step_batches(self, step: int, cache: dict[int, list[list[int]]]) -> list[dict[str, torch.Tensor]]:
        epoch, pos = divmod(step // self.repeat, self.batches_per_epoch)
        if epoch not in cache:
            cache.clear()
            cache[epoch] = epoch_batches(self.lengths, self.step_size, self.config.seed, epoch,
                                         self.config.group_by_length)
        indices = cache[epoch][pos]
        acc = self.accelerator
        micro = _split_step(indices, acc.num_processes, acc.process_index, self.config.grad_accum)
        return [self._to_device(self.method.collate([self.examples[i] for i in m])) for m in micro]

    def _to_device(self, batch: dict[str, Any]) -> dict[str, Any]:
        dev = self.accelerator.device
        return {k: v.to(dev) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}

    def _save(self, step: int) -> None:
        acc = self.accelerator
        acc.wait_for_everyone()
        ckpt = save_checkpoint(self.out, step, acc.unwrap_model(self.model), self.optimizer, self.scheduler,
                               extra={"epoch": step / self.steps_per_epoch}, rank=acc.process_index,
                               keep=self.config.keep_checkpoints)
        acc.wait_for_everyone()
        if not acc.is_main_process:
            save_rank_rng(ckpt, acc.process_index)
        acc.wait_for_everyone()

    def evaluate(self) -> dict[str, float]:
        """Mean loss (and method metrics) on ``eval_data``, as ``eval_*`` metrics."""
        if not self.eval_examples:
            return {}
        acc, bs = self.accelerator, self.config.eval_batch_size or self.config.batch_size
        self.model.eval()
        order = list(range(len(self.eval_examples)))[acc.process_index::acc.num_processes]
        loss_sum, units, sums, counts = 0.0, 0.0, {}, {}
        with torch.no_grad():
            for i in range(0, len(order), bs):
                batch = self._to_device(self.method.collate([self.eval_examples[j] for j in order[i:i + bs]]))
                with acc.autocast():
                    out = self.method.loss(self.model, batch, step=-1)
                loss_sum += float(out.loss_sum)
                units += self.method.count_units(batch)
                for k, (s, c) in out.metrics.items():
                    sums[k] = sums.get(k, 0.0) + float(s)
                    counts[k] = counts.get(k, 0.0) + float(c)
        self.model.train()
        keys = sorted(sums)
        red = _reduce_sums(acc, [loss_sum, units] + [sums[k] for k in keys] + [counts[k] for k in keys])
        result = {"loss": red[0] / max(red[1], 1.0)}
        for i, k in enumerate(keys):
            result[k] = red[2 + i] / max(red[2 + len(keys) + i], 1e-12)
        return {f"eval_{k}": v for k, v in self.method.derive_metrics(result).items()}

    def _evaluate_at(self, step: int) -> dict[str, float]:
        """Evaluate, then let the method and the best-model record see the result."""
        metrics = self.evaluate()
        if metrics:
            self.method.after_evaluate(step, metrics)
            acc = self.accelerator
            self.best.consider(step, metrics, acc.unwrap_model(self.model), write=acc.is_main_process)
        return metrics

    def fit(self) -> RunResult:
        acc, cfg = self.accelerator, self.config
        world = acc.num_processes
        self.model.train()
        cache: dict[int, list[list[int]]] = {}
        bar = tqdm(total=self.total_steps, initial=self.start_step, disable=not acc.is_main_process,
                   desc=f"{self.method.name}", dynamic_ncols=True)
        step = self.start_step
        try:
            if cfg.eval_on_start and step == 0 and self.eval_examples:
                self._log(0, self._evaluate_at(0))
            if self.pending is not None:  # Ctrl-C came during this step's evaluation: redo it, log the row
                metrics = {**self.pending, **self._evaluate_at(step)}
                self.pending = None
                if step % cfg.logging_steps == 0 or step == self.total_steps:
                    self._log(step, metrics)
            while step < self.total_steps:
                t0 = time.perf_counter()
                micro, sums = self.method.prepare_step(self.model, self._step_batches(step, cache), step)
                counts = {k: float(c) for k, (_, c) in sums.items()}
                sums = {k: float(s) for k, (s, _) in sums.items()}
                local_units = sum(self.method.count_units(b) for b in micro)
                global_units = max(_reduce_sums(acc, [float(local_units)])[0], 1.0)
                loss_sum, tokens = 0.0, 0
                for k, batch in enumerate(micro):
                    last = k == len(micro) - 1
                    with (nullcontext() if last or world == 1 else acc.no_sync(self.model)):
                        with acc.autocast():
                            out = self.method.loss(self.model, batch, step)
                        acc.backward(out.loss_sum * (world / global_units))
                    loss_sum += float(out.loss_sum.detach())
                    tokens += self.method.count_tokens(batch)
                    for name, (s, c) in out.metrics.items():
                        sums[name] = sums.get(name, 0.0) + float(s)
                        counts[name] = counts.get(name, 0.0) + float(c)
                keys = sorted(sums)
                red = _reduce_sums(acc, [loss_sum, float(tokens)] + [sums[k] for k in keys]
                                   + [counts[k] for k in keys])
                loss = red[0] / global_units
                if not math.isfinite(loss):
                    self.optimizer.zero_grad(set_to_none=True)
                    ckpts = list_checkpoints(self.out)
                    where = f"the last good checkpoint is {ckpts[-1][1]}" if ckpts else "no checkpoint was written"
                    raise TrainingDiverged(
                        f"loss became {loss} at step {step + 1}; no update was applied and {where}. "
                        "Try a lower lr, max_grad_norm > 0, or bf16=false."
                    )
                if cfg.max_grad_norm > 0:
                    grad_norm = acc.clip_grad_norm_(self.model.parameters(), cfg.max_grad_norm)
                else:
                    grads = [p.grad.norm() for p in self.model.parameters() if p.grad is not None]
                    grad_norm = torch.stack(grads).norm() if grads else torch.tensor(0.0)
                lr = self.scheduler.get_last_lr()[0]
                self.optimizer.step()
                self.scheduler.step()
                self.optimizer.zero_grad(set_to_none=True)
                self.method.after_optimizer_step(self.model, step)
                step += 1

                elapsed = time.perf_counter() - t0
                metrics = {"loss": loss, "learning_rate": lr, "grad_norm": float(grad_norm),
                           "epoch": step / self.steps_per_epoch,
                           "tokens_per_second": red[1] / max(elapsed, 1e-9)}
                for i, k in enumerate(keys):
                    metrics[k] = red[2 + i] / max(red[2 + len(keys) + i], 1e-12)
                metrics = self.method.derive_metrics(metrics)
                if cfg.eval_steps and step % cfg.eval_steps == 0:
                    self.pending = metrics  # until logged: an interrupted evaluation is redone on resume
                    metrics.update(self._evaluate_at(step))
                    self.pending = None
                if step % cfg.logging_steps == 0 or step == self.total_steps:
                    self._log(step, metrics)
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.4f}", tok_s=f"{metrics['tokens_per_second']:.0f}")
                if cfg.save_steps and step % cfg.save_steps == 0 and step < self.total_steps:
                    self._save(step)
        except KeyboardInterrupt:
            bar.close()
            # gradients of a half-accumulated step are dropped: the checkpoint holds the state after
            # the last completed optimizer step, which is exactly where resume picks up
            if acc.is_main_process:
                extra = {"epoch": step / self.steps_per_epoch, "interrupted": True}
                if self.pending is not None:
                    extra["pending_metrics"] = self.pending
                save_checkpoint(self.out, step, acc.unwrap_model(self.model), self.optimizer, self.scheduler,
                                extra=extra, keep=cfg.keep_checkpoints)
                tqdm.write(f"interrupted: checkpoint written at step {step}; continue with resume=true")
            self._close_logs()
            return RunResult(self.out, step, None, interrupted=True)
        bar.close()

        final_metrics = self._evaluate_at(step) if self.eval_examples and not cfg.eval_steps else {}
        if final_metrics:
            self._log(step, final_metrics)
        if (self.start_step < self.total_steps or not list_checkpoints(self.out)) and not is_fsdp(acc):
            self._save(step)
        if cfg.load_best_model_at_end:  # after the last checkpoint, which must hold the last step for resume
            best_step = self.best.restore(acc.unwrap_model(self.model))
            if best_step is not None:
                rec = self.best.record
                how = ("the best evaluation" if rec["meets_constraint"] else
                       "no evaluation met best_model_constraint: the one closest to it")
                tqdm.write(f"final/ holds {how}, step {best_step} ({self.best.metric} {rec['value']:.4g})")
        final = self.out / "final"
        to_save = model_for_saving(acc, self.model, self.method.build_model)
        if acc.is_main_process:
            self.method.save_final(to_save, self.tokenizer, final, cfg)
        acc.wait_for_everyone()
        self._close_logs()
        return RunResult(self.out, step, final)


def train(method_cls: type[Method], config: TrainConfig) -> RunResult:
    return Trainer(method_cls, config).fit()
