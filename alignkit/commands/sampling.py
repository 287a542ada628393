"""What the sampling commands (``chat``, ``generate``) share: checking the sampling flags and loading
the model to sample from, each failure a one-line error."""

from __future__ import annotations

import argparse
import sys
from typing import Any

BATCH_SIZE_HELP = ("prompts per batch: a number, or auto (default: as many as keep the KV cache within 2 GiB, "
                   "at most 64)")


def batch_size_arg(text: str) -> int | None:
    """argparse type of ``--batch-size``: ``auto`` -> None (see :func:`alignkit.generation.auto_batch_size`),
    else a whole number >= 1."""
    if text.strip().lower() == "auto":
        return None
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1 or auto, got {text!r}")
    return value


def sampling_flags_error(args: argparse.Namespace) -> str | None:
    """The problem with ``--max-new-tokens``/``--temperature``/``--top-p``, if any (``--batch-size`` is
    checked by its argparse type, :func:`batch_size_arg`)."""
    if args.max_new_tokens < 1:
        return "--max-new-tokens must be at least 1"
    if args.temperature < 0 or not 0 < args.top_p <= 1:
        return "--temperature must be >= 0 and --top-p in (0, 1]"
    return None


def load_for_sampling(args: argparse.Namespace) -> tuple[Any, Any] | None:
    """``(model, tokenizer)`` of ``--model`` (any name :func:`alignkit.models.load_trained` takes), or
    ``None`` after printing why it cannot be loaded. Turns off the "Loading weights" progress bars."""
    from transformers.utils import logging as hf_logging

    from alignkit.models import ModelNotFoundError, load_trained

    hf_logging.disable_progress_bar()
    try:
        return load_trained(args.model, trust_remote_code=args.trust_remote_code)
    except ModelNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return None
