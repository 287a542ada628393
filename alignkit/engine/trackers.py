"""Experiment trackers (``report_to=``, TRL's key) through accelerate's tracker integration.

``metrics.jsonl`` is always written (:mod:`alignkit.engine.logging`); ``report_to`` adds any of
``tensorboard``, ``wandb``, ``trackio``, ``mlflow`` (a list for several, ``none`` for none), each the
optional extra of the same name. Where each one writes, by default, inside the run directory:

* tensorboard: ``OUTPUT_DIR/tensorboard/<project>/events.out.tfevents.*``;
* wandb: ``OUTPUT_DIR/wandb/`` (``WANDB_MODE=offline`` keeps it local; otherwise W&B's own login rules);
* trackio: trackio's local store (``TRACKIO_DIR``, default under ``HF_HOME``), project ``<project>``;
* mlflow: ``$MLFLOW_TRACKING_URI`` when set, else a file store at ``OUTPUT_DIR/mlruns`` (MLflow 3 needs
  ``MLFLOW_ALLOW_FILE_STORE=true`` for it, which alignkit sets in that case).

The project name is ``alignkit-<method>``, the run name the output directory's name.
"""

from __future__ import annotations

import importlib.util
import math
import os
from pathlib import Path
from typing import Any

#: tracker -> (module that must import, extra that installs it)
_NEEDS = {"tensorboard": ("tensorboard", "tensorboard"), "wandb": ("wandb", "wandb"),
          "trackio": ("trackio", "trackio"), "mlflow": ("mlflow", "mlflow")}


def missing_tracker_package(names: list[str]) -> str | None:
    """A one-line message for the first tracker in ``names`` whose package is not installed, else None."""
    for name in names:
        module, extra = _NEEDS[name]
        if importlib.util.find_spec(module) is None:
            return (f"report_to={name} needs the '{module}' package, which is not installed: "
                    f"pip install 'alignkit[{extra}]' (or pip install {module}), or set report_to=none")
    return None


def init_kwargs(names: list[str], output_dir: Path) -> dict[str, dict[str, Any]]:
    """Per-tracker keyword arguments that keep each tracker's files in (or named after) the run."""
    kwargs: dict[str, dict[str, Any]] = {}
    if "wandb" in names:
        kwargs["wandb"] = {"dir": str(output_dir), "name": output_dir.name}
    if "trackio" in names:
        kwargs["trackio"] = {"name": output_dir.name}
    if "mlflow" in names:
        kwargs["mlflow"] = {"run_name": output_dir.name}
        if not os.environ.get("MLFLOW_TRACKING_URI"):
            import mlflow

            # MLflow 3 keeps its file store in "maintenance mode" behind this switch; it needs no database
            # packages, so it is the default here. MLFLOW_TRACKING_URI picks any other store.
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
            mlflow.set_tracking_uri((output_dir / "mlruns").resolve().as_uri())
    return kwargs


def flat_config(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested config as the flat ``{"lora.r": 8, ...}`` of str/int/float/bool that trackers store."""
    out: dict[str, Any] = {}
    for k, v in values.items():
        if isinstance(v, dict):
            out.update(flat_config(v, f"{prefix}{k}."))
        elif isinstance(v, (str, int, float, bool)):
            out[prefix + k] = v
        else:
            out[prefix + k] = str(v)
    return out


def numeric(metrics: dict[str, Any]) -> dict[str, float]:
    """The finite numbers of a metrics row (what every tracker accepts)."""
    return {k: float(v) for k, v in metrics.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}
