"""Where alignkit keeps its caches (converted models, tokenizer, reference log-probs)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """``$ALIGNKIT_CACHE`` if set, else ``$XDG_CACHE_HOME/alignkit`` (default ``~/.cache/alignkit``)."""
    env = os.environ.get("ALIGNKIT_CACHE")
    if env:
        root = Path(env)
    else:
        root = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "alignkit"
    root.mkdir(parents=True, exist_ok=True)
    return root
