"""Models: name resolution (hub names: local cache first), loading, LoRA, saving (sampling is in
:mod:`alignkit.generation`, above this package).

Importing this package imports torch and transformers; keep it out of CLI start-up paths.
"""

from alignkit.models.checkpointing import enable_checkpointing
from alignkit.models.loading import (
    EMBEDDED_NAME,
    TINY_NAME,
    ModelNotFoundError,
    apply_lora,
    build_tiny_random,
    is_adapter_dir,
    load_for_generation,
    load_model,
    load_quantized,
    load_tokenizer,
    load_trained,
    model_config,
    quantize_unavailable,
    resolve_model,
    save_model,
)
from alignkit.models.modules import eval_mode
from alignkit.models.recompute import recompute_cheap_activations
from alignkit.models.tokenizer import ModelLoadError, embedded_gguf_path, load_smollm2_tokenizer

__all__ = [
    "recompute_cheap_activations",
    "EMBEDDED_NAME",
    "TINY_NAME",
    "ModelLoadError",
    "ModelNotFoundError",
    "apply_lora",
    "build_tiny_random",
    "embedded_gguf_path",
    "enable_checkpointing",
    "eval_mode",
    "is_adapter_dir",
    "load_for_generation",
    "load_model",
    "load_quantized",
    "load_smollm2_tokenizer",
    "load_tokenizer",
    "load_trained",
    "model_config",
    "quantize_unavailable",
    "resolve_model",
    "save_model",
]
