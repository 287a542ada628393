"""Typed run configuration: YAML file plus ``key=value`` overrides, validated by pydantic.

Every method has a config class derived from :class:`TrainConfig` (the keys every method accepts,
SPEC section 4). Unknown keys are errors that name the closest valid key.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator


class ConfigError(ValueError):
    """A user-caused configuration problem; the CLI prints it and exits non-zero."""


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class LoraSettings(StrictModel):
    """LoRA adapter settings. ``r=0`` (the default) means full fine-tuning, ``r>0`` turns LoRA on."""

    r: int = Field(0, ge=0)
    alpha: float = 16.0
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    target_modules: list[str] | str = "all-linear"
    merge_on_save: bool = False

    @property
    def enabled(self) -> bool:
        return self.r > 0


class TrainConfig(StrictModel):
    """Keys every training method accepts."""

    model: str = "smollm2-135m"
    data: str | None = None
    eval_data: str | None = None
    output_dir: str = "runs/latest"
    max_steps: int = Field(-1, description="optimizer steps; -1 means run `epochs` epochs")
    epochs: float = Field(1.0, gt=0)
    batch_size: int = Field(4, ge=1, description="examples per device per micro-batch")
    grad_accum: int = Field(1, ge=1)
    lr: float = Field(2e-5, gt=0)
    seed: int = 42
    max_length: int = Field(512, ge=8)
    save_steps: int = Field(0, ge=0, description="checkpoint every N steps; 0: only at the end")
    resume: bool | str = False
    lora: LoraSettings = Field(default_factory=LoraSettings)

    # Optimisation details a TRL user expects to find.
    scheduler: Literal["linear", "cosine", "constant"] = "linear"
    warmup_ratio: float = Field(0.0, ge=0.0, le=1.0)
    warmup_steps: int = Field(0, ge=0)
    weight_decay: float = 0.0
    max_grad_norm: float = Field(1.0, ge=0.0, description="0 disables clipping")
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    bf16: Literal["auto", True, False] = "auto"
    gradient_checkpointing: bool = False
    logging_steps: int = Field(1, ge=1)
    eval_steps: int = Field(0, ge=0, description="evaluate on eval_data every N steps; 0: at the end only")
    keep_checkpoints: int = Field(2, ge=1)

    # Data handling.
    skip_invalid: bool = False
    chat_template: Literal["auto", "always", "never"] = "auto"
    group_by_length: bool = True

    # Safety.
    trust_remote_code: bool = False

    @field_validator("resume", mode="before")
    @classmethod
    def _resume(cls, v: Any) -> Any:
        if isinstance(v, str) and v.lower() in {"true", "false"}:
            return v.lower() == "true"
        return v


class SFTConfig(TrainConfig):
    neftune_alpha: float | None = Field(None, ge=0.0, description="NEFTune noise scale; None disables")
    packing: bool = False
    completion_only_loss: bool = True


# ----------------------------------------------------------------------------- loading


def _parse_value(text: str) -> Any:
    """Parse an override value the way YAML would (``8`` -> 8, ``true`` -> True, ``[a, b]`` -> list)."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def _all_keys(model_cls: type[BaseModel], prefix: str = "") -> list[str]:
    keys = []
    for name, field in model_cls.model_fields.items():
        keys.append(prefix + name)
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            keys.extend(_all_keys(ann, prefix + name + "."))
    return keys


def _unknown_key_error(key: str, model_cls: type[BaseModel]) -> ConfigError:
    valid = _all_keys(model_cls)
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    return ConfigError(f"unknown config key '{key}'{hint}")


def _set_dotted(tree: dict, dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = tree
    for p in parts[:-1]:
        nxt = node.setdefault(p, {})
        if not isinstance(nxt, dict):
            raise ConfigError(f"config key '{p}' is not a section, cannot set '{dotted}'")
        node = nxt
    node[parts[-1]] = value


def _check_keys(tree: dict, model_cls: type[BaseModel], prefix: str, root: type[BaseModel]) -> None:
    for key, value in tree.items():
        if key not in model_cls.model_fields:
            raise _unknown_key_error(prefix + key, root)
        ann = model_cls.model_fields[key].annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel) and isinstance(value, dict):
            _check_keys(value, ann, prefix + key + ".", root)


def load_config(config_cls: type[TrainConfig], yaml_path: str | Path | None = None,
                overrides: list[str] | tuple[str, ...] = ()) -> TrainConfig:
    """Build a validated config from an optional YAML file and ``key=value`` overrides (later wins)."""
    tree: dict[str, Any] = {}
    if yaml_path is not None:
        path = Path(yaml_path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: not valid YAML: {e}") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: expected a mapping of config keys at the top level")
        for k, v in loaded.items():
            if isinstance(v, dict):
                for sub_k, sub_v in v.items():
                    _set_dotted(tree, f"{k}.{sub_k}", sub_v)
            else:
                _set_dotted(tree, str(k), v)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"expected key=value, got '{item}'")
        key, _, raw = item.partition("=")
        _set_dotted(tree, key.strip(), _parse_value(raw))
    _check_keys(tree, config_cls, "", config_cls)
    try:
        return config_cls(**tree)
    except ValidationError as e:
        lines = []
        for err in e.errors():
            loc = ".".join(str(p) for p in err["loc"])
            lines.append(f"config key '{loc}': {err['msg']} (got {err.get('input')!r})")
        raise ConfigError("invalid config:\n  " + "\n  ".join(lines)) from None


def dump_config(config: BaseModel, path: str | Path) -> None:
    """Write the fully resolved config as YAML (the run directory's ``config.yaml``)."""
    Path(path).write_text(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))
