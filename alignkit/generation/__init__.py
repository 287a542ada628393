"""Generation, in one package: ``sampling`` (the rollout primitive and the batched ``generate`` API),
``backends`` (rollout backends of the online methods: HF, a bf16/fp32 inference copy, vLLM) and
``texts`` (what the AI-feedback builders, the self-rewarding loop and ``alignkit data`` call).

Prompts are rendered by the one chat rule, :func:`alignkit.data.render.render_prompt`.
"""

from alignkit.generation.sampling import (
    Generations,
    Rollout,
    auto_batch_size,
    encode_prompt,
    generate,
    generate_with_ids,
    sample_completions,
)

__all__ = ["Generations", "Rollout", "auto_batch_size", "encode_prompt", "generate", "generate_with_ids", "sample_completions"]
