"""Child process of ``alignkit bench grpo``: the TRL side (GRPOTrainer with a peft LoRA adapter).

The reward is the very function alignkit ships (``alignkit.assets.rewards.format.word_limit``), which has
TRL's reward-function signature. The model is read from alignkit's local safetensors directory.
"""

from __future__ import annotations

import time

from alignkit.bench import child_settings, emit_result, load_trl_model, read_rows


def main() -> None:
    s = child_settings()
    try:
        from datasets import Dataset
        from peft import LoraConfig
        from transformers import TrainerCallback
        from trl import GRPOConfig, GRPOTrainer
    except ImportError as e:
        raise SystemExit(f"TRL side needs the bench extra (pip install 'alignkit[bench]'): {e}") from None
    from alignkit.assets.rewards.format import word_limit

    t0 = time.perf_counter()
    model, tokenizer = load_trl_model(s["model"])
    dataset = Dataset.from_list(read_rows(s["data"]))
    rewards: list[float] = []

    class Capture(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "reward" in logs:
                rewards.append(float(logs["reward"]))

    config = GRPOConfig(
        output_dir=s["output_dir"] + "/trl-run", per_device_train_batch_size=s["prompts_per_step"] * s["num_generations"],
        num_generations=s["num_generations"], max_completion_length=s["max_new_tokens"],
        temperature=s["temperature"], top_p=1.0, max_steps=s["steps"], learning_rate=s["lr"], beta=0.0,
        loss_type="dapo", num_iterations=1, logging_steps=1, report_to=[], save_strategy="no", seed=s["seed"],
        use_cpu=True, lr_scheduler_type="linear", warmup_steps=0, max_grad_norm=1.0, disable_tqdm=True,
        bf16=False, gradient_checkpointing=bool(s["gradient_checkpointing"]), shuffle_dataset=True,
    )
    lora = LoraConfig(r=s["lora_r"], lora_alpha=2 * s["lora_r"], lora_dropout=0.0, target_modules="all-linear",
                      task_type="CAUSAL_LM")
    trainer = GRPOTrainer(model=model, reward_funcs=[word_limit], args=config, train_dataset=dataset,
                          processing_class=tokenizer, peft_config=lora, callbacks=[Capture()])
    t1 = time.perf_counter()
    trainer.train()
    emit_result({"train_s": time.perf_counter() - t1, "setup_s": t1 - t0, "rewards": rewards})


if __name__ == "__main__":
    main()
