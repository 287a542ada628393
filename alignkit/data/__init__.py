"""The data layer: read data files, validate rows by kind, tokenise, batch and pack.

Typical use inside a method::

    loaded = load_examples(path, ("preference",), skip_invalid=cfg.skip_invalid)
    examples = tokenize_preference(loaded, tokenizer, cfg.max_length, cfg.chat_template, cfg.skip_invalid)
    for idx in epoch_batches([len(e["prompt_ids"]) + max(len(e["chosen_ids"]), len(e["rejected_ids"]))
                              for e in examples], cfg.batch_size, cfg.seed, epoch, cfg.group_by_length):
        batch = collate_preference([examples[i] for i in idx], tokenizer.pad_token_id)
"""

from alignkit.data.batching import (
    IGNORE_INDEX,
    collate_kl,
    collate_lm,
    collate_padding_free,
    collate_preference,
    collate_preference_tree,
    collate_prompts,
    collate_unpaired,
    concatenate_examples,
    epoch_batches,
    epoch_generator,
    model_inputs,
    pack_examples,
    pad,
    segment_kwargs,
)
from alignkit.data.io import DataError, iter_records, read_rows
from alignkit.data.render import (
    CHAT_MODES,
    RenderedPrompt,
    as_user_turn,
    conversational_row,
    render_prompt,
    request_prompt,
)
from alignkit.data.schema import (
    KINDS,
    ROLES,
    LoadedRows,
    detect_kind,
    extract_prompt,
    load_examples,
    preference_to_unpaired,
    validate_row,
)
from alignkit.data.tokenize import (
    special_token_ids,
    tokenize_completion,
    tokenize_preference,
    tokenize_prompts,
    tokenize_sft,
    tokenize_unpaired,
)

__all__ = [
    "CHAT_MODES",
    "DataError",
    "RenderedPrompt",
    "as_user_turn",
    "conversational_row",
    "render_prompt",
    "request_prompt",
    "IGNORE_INDEX",
    "KINDS",
    "ROLES",
    "LoadedRows",
    "collate_kl",
    "collate_lm",
    "collate_padding_free",
    "concatenate_examples",
    "collate_preference",
    "collate_preference_tree",
    "collate_prompts",
    "collate_unpaired",
    "detect_kind",
    "epoch_batches",
    "epoch_generator",
    "extract_prompt",
    "iter_records",
    "load_examples",
    "model_inputs",
    "segment_kwargs",
    "pack_examples",
    "pad",
    "preference_to_unpaired",
    "read_rows",
    "special_token_ids",
    "tokenize_completion",
    "tokenize_preference",
    "tokenize_prompts",
    "tokenize_sft",
    "tokenize_unpaired",
    "validate_row",
]
