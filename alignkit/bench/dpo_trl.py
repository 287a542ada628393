"""Child process of ``alignkit bench dpo``: the TRL side (DPOTrainer with a peft LoRA adapter).

The model is read from the same local safetensors directory alignkit uses; nothing is downloaded.
"""

from __future__ import annotations

import time

from alignkit.bench import child_settings, emit_result, trl_side


def main() -> None:
    s = child_settings()
    side = trl_side(s, metric="loss")
    config = side.trl.DPOConfig(**side.common, per_device_train_batch_size=s["batch_size"], beta=s["beta"],
                                loss_type=["sigmoid"], max_length=s["max_length"])
    trainer = side.trl.DPOTrainer(model=side.model, args=config, train_dataset=side.dataset,
                                  processing_class=side.tokenizer, peft_config=side.lora, callbacks=[side.callback])
    t1 = time.perf_counter()
    trainer.train()
    emit_result({"train_s": time.perf_counter() - t1, "setup_s": t1 - side.t0, "first_loss": side.values[0],
                 "losses": side.values})


if __name__ == "__main__":
    main()
