"""The package's layers: every import (module level or inside a function) runs from a higher layer to
a lower one, so there is no import circle and nothing low depends on something high."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "alignkit"

# lower number = lower layer; a unit may import units of a strictly lower layer (or itself)
LAYERS = {
    "files": -1,  # atomic writes and output-path checks, standard library only: config uses them
    "__version__": 0, "paths": 0, "config": 0, "hub": 0, "hardware": 0,
    "data": 1, "httpjson": 1,
    "losses": 2, "models": 2, "logprobs": 2,
    "generation": 3, "reward_model": 3,
    "rewards": 4,
    "judges": 5, "reasoning": 5, "assets": 5, "safety": 5,
    "scoring": 6, "inference": 6,
    "engine": 7, "evaluation": 7, "aifeedback": 7,
    "methods": 8, "report": 8,
    "pipelines": 9, "bench": 9,
    "annotate": 9,
    "commands": 10, "cli": 10,
    "__main__": 11,
}


def _unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "alignkit"


def _imports() -> list[tuple[str, str, str]]:
    """(importing unit, imported unit, file) for every alignkit import in the package."""
    out = []
    for f in ROOT.rglob("*.py"):
        rel = f.relative_to(ROOT.parent).with_suffix("")
        src = _unit(".".join(rel.parts))
        for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("alignkit"):
                names = [f"{node.module}.{a.name}" for a in node.names] if node.module == "alignkit" else [node.module]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names if a.name.startswith("alignkit")]
            else:
                continue
            for name in names:
                dst = _unit(name)
                if dst not in (src, "alignkit"):
                    out.append((src, dst, str(f.relative_to(ROOT.parent))))
    return out


def test_every_unit_has_a_layer():
    units = {p.stem if p.suffix == ".py" else p.name for p in ROOT.iterdir()
             if not p.name.startswith("_") or p.name == "__main__.py"}
    units -= {"__pycache__", "py"}
    assert units <= set(LAYERS), f"give these a layer in LAYERS: {sorted(units - set(LAYERS))}"


def test_imports_run_downwards():
    upward = [f"{file}: {src} (layer {LAYERS[src]}) imports {dst} (layer {LAYERS[dst]})"
              for src, dst, file in _imports() if LAYERS[dst] >= LAYERS[src]]
    assert not upward, "\n".join(upward)
