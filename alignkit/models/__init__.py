"""Models: name resolution (never a hub download), loading, LoRA, saving, generation.

Importing this package imports torch and transformers; keep it out of CLI start-up paths.
"""

from alignkit.models.generation import Rollout, encode_prompt, eval_mode, generate, sample_completions
from alignkit.models.loading import (
    EMBEDDED_NAME,
    TINY_NAME,
    ModelNotFoundError,
    apply_lora,
    build_tiny_random,
    is_adapter_dir,
    load_model,
    load_tokenizer,
    load_trained,
    model_config,
    resolve_model,
    save_model,
)
from alignkit.models.tokenizer import embedded_gguf_path, load_smollm2_tokenizer

__all__ = [
    "EMBEDDED_NAME",
    "TINY_NAME",
    "ModelNotFoundError",
    "Rollout",
    "apply_lora",
    "build_tiny_random",
    "embedded_gguf_path",
    "encode_prompt",
    "eval_mode",
    "generate",
    "is_adapter_dir",
    "load_model",
    "load_smollm2_tokenizer",
    "load_tokenizer",
    "load_trained",
    "model_config",
    "resolve_model",
    "sample_completions",
    "save_model",
]
