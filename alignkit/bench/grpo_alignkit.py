"""Child process of ``alignkit bench grpo``: the alignkit side."""

from __future__ import annotations

from alignkit.bench import child_settings, emit_result, train_alignkit


def main() -> None:
    from alignkit.methods.grpo import GRPO

    s = child_settings()
    train_s, rows = train_alignkit(GRPO, s, [
        f"batch_size={s['prompts_per_step']}", f"num_generations={s['num_generations']}",
        f"max_new_tokens={s['max_new_tokens']}", f"temperature={s['temperature']}",
        "reward=format.py:word_limit", "beta=0", "loss_type=dapo", "num_iterations=1", "log_completions_steps=0",
        *([f"rollout_dtype={s['rollout_dtype']}"] if s.get("rollout_dtype") else []),
        *([f"rollout_backend={s['rollout_backend']}"] if s.get("rollout_backend", "hf") != "hf" else []),
        f"bf16={str(bool(s.get('bf16'))).lower()}",
    ])
    steps = [r for r in rows if "reward" in r]
    emit_result({"train_s": train_s, "rewards": [r["reward"] for r in steps],
                 "completion_lengths": [r.get("completion_length", s["max_new_tokens"]) for r in steps],
                 "clipped": [r.get("completions/clipped_ratio", 1.0) for r in steps]})


if __name__ == "__main__":
    main()
