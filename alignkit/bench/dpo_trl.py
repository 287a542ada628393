"""Child process of ``alignkit bench dpo``: the TRL side (DPOTrainer with a peft LoRA adapter).

The model is read from the same local safetensors directory alignkit uses; nothing is downloaded.
"""

from __future__ import annotations

import time
from pathlib import Path

from alignkit.bench import child_settings, emit_result, load_trl_model, read_rows


def main() -> None:
    s = child_settings()
    try:
        from datasets import Dataset
        from peft import LoraConfig
        from transformers import TrainerCallback
        from trl import DPOConfig, DPOTrainer
    except ImportError as e:
        raise SystemExit(f"TRL side needs the bench extra (pip install 'alignkit[bench]'): {e}") from None

    t0 = time.perf_counter()
    model, tokenizer = load_trl_model(s["model"])
    dataset = Dataset.from_list(read_rows(s["data"]))
    losses: list[float] = []

    class Capture(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                losses.append(float(logs["loss"]))

    config = DPOConfig(
        output_dir=str(Path(s["output_dir"]) / "trl-run"), per_device_train_batch_size=s["batch_size"],
        max_steps=s["steps"], learning_rate=s["lr"], beta=s["beta"], loss_type=["sigmoid"],
        max_length=s["max_length"], logging_steps=1, report_to=[], save_strategy="no", seed=s["seed"],
        use_cpu=True, lr_scheduler_type="linear", warmup_steps=0, max_grad_norm=1.0, disable_tqdm=True,
        bf16=False, gradient_checkpointing=bool(s["gradient_checkpointing"]),
    )
    lora = LoraConfig(r=s["lora_r"], lora_alpha=2 * s["lora_r"], lora_dropout=0.0, target_modules="all-linear",
                      task_type="CAUSAL_LM")
    trainer = DPOTrainer(model=model, args=config, train_dataset=dataset, processing_class=tokenizer,
                         peft_config=lora, callbacks=[Capture()])
    t1 = time.perf_counter()
    trainer.train()
    emit_result({"train_s": time.perf_counter() - t1, "setup_s": t1 - t0, "first_loss": losses[0],
                 "losses": losses})


if __name__ == "__main__":
    main()
