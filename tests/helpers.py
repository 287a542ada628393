"""Small data files and CLI runners shared by the tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

QA = [
    ("What is the capital of France?", "Paris."),
    ("Add 2 and 3.", "2 + 3 = 5."),
    ("Name a primary colour.", "Red is a primary colour."),
    ("Say hello in Spanish.", "Hola."),
    ("What is water made of?", "Hydrogen and oxygen."),
    ("How many legs does a spider have?", "Eight."),
    ("Spell 'cat' backwards.", "tac"),
    ("What comes after Monday?", "Tuesday."),
    ("Is the sun a star?", "Yes, the sun is a star."),
    ("Give me a synonym for happy.", "Joyful."),
    ("What is 10 divided by 2?", "5."),
    ("Which animal says moo?", "A cow."),
]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def sft_rows(n: int = 12, chat: bool = True) -> list[dict]:
    rows = []
    for i in range(n):
        q, a = QA[i % len(QA)]
        if chat:
            rows.append({"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]})
        else:
            rows.append({"prompt": q + "\n", "completion": a})
    return rows


def preference_rows(n: int = 12) -> list[dict]:
    rows = []
    for i in range(n):
        q, a = QA[i % len(QA)]
        rows.append({"prompt": [{"role": "user", "content": q}],
                     "chosen": [{"role": "assistant", "content": a}],
                     "rejected": [{"role": "assistant", "content": "I don't know."}]})
    return rows


def run_cli(*args: str, env: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "alignkit", *args], capture_output=True, text=True,
                          cwd=REPO, env=full_env, timeout=timeout)


def scrambled_tiny_random(seed: int):
    """tiny-random with large weights (N(0, 0.3²) in every matrix), so greedy continuations vary from
    prompt to prompt (plain tiny-random tends to echo); in eval mode."""
    import torch

    from alignkit.models import build_tiny_random

    model = build_tiny_random()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim == 2:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
    return model.eval()
