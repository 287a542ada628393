"""Child process of ``alignkit bench grpo``: the TRL side (GRPOTrainer with a peft LoRA adapter).

The reward is the very function alignkit ships (``alignkit.assets.rewards.format.word_limit``), which has
TRL's reward-function signature. The model is read from alignkit's local safetensors directory.
"""

from __future__ import annotations

import time

from alignkit.bench import child_settings, emit_result, trl_side


def main() -> None:
    s = child_settings()
    side = trl_side(s, metric="reward")
    from alignkit.assets.rewards.format import word_limit

    config = side.trl.GRPOConfig(
        **side.common, per_device_train_batch_size=s["prompts_per_step"] * s["num_generations"],
        num_generations=s["num_generations"], max_completion_length=s["max_new_tokens"],
        temperature=s["temperature"], top_p=1.0, beta=0.0, loss_type="dapo", num_iterations=1, shuffle_dataset=True,
    )
    trainer = side.trl.GRPOTrainer(model=side.model, reward_funcs=[word_limit], args=config,
                                   train_dataset=side.dataset, processing_class=side.tokenizer,
                                   peft_config=side.lora, callbacks=[side.callback])
    t1 = time.perf_counter()
    trainer.train()
    emit_result({"train_s": time.perf_counter() - t1, "setup_s": t1 - side.t0, "rewards": side.values})


if __name__ == "__main__":
    main()
