"""Typed run configuration: YAML file plus ``key=value`` overrides, validated by pydantic.

Every method has a config class derived from :class:`TrainConfig` (the keys every method accepts,
README "Quick start"). Unknown keys are errors that name the closest valid key. The names Hugging Face
``TrainingArguments`` and TRL give the same settings (``learning_rate``, ``per_device_train_batch_size``,
...) are accepted as aliases (:data:`ALIASES`) by the methods whose config has the key they stand for.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from alignkit.files import OutputPathError, check_output_path


class ConfigError(ValueError):
    """A user-caused configuration problem; the CLI prints it and exits non-zero."""


TRACKERS = ("tensorboard", "wandb", "trackio", "mlflow")


def parse_report_to(value: Any) -> list[str]:
    """``"none"``, ``"wandb"``, ``"wandb,mlflow"`` or ``["wandb", "mlflow"]`` -> a list of tracker names.

    Raises ``ValueError`` naming the valid names for anything else.
    """
    if value is None:
        return []
    items = value.split(",") if isinstance(value, str) else list(value) if isinstance(value, (list, tuple)) else [value]
    names: list[str] = []
    for item in items:
        name = str(item).strip().lower()
        if name in ("", "none"):
            continue
        if name not in TRACKERS:
            raise ValueError(f"unknown tracker '{item}': use none or any of {', '.join(TRACKERS)} (a list for several)")
        if name not in names:
            names.append(name)
    return names


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class LoraSettings(StrictModel):
    """LoRA adapter settings. ``r=0`` (the default) means full fine-tuning, ``r>0`` turns LoRA on."""

    r: int = Field(0, ge=0)
    alpha: float = 16.0
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    target_modules: list[str] | str = "all-linear"
    merge_on_save: bool = False
    quantize: Literal["4bit", "8bit"] | None = Field(None, description="QLoRA: load the frozen base in 4-bit (NF4) "
                                                      "or 8-bit with bitsandbytes (needs CUDA); needs r > 0")
    base_dtype: Literal["float32", "bfloat16"] = Field(
        "float32", description="dtype of the frozen base weights under the LoRA linears; bfloat16: those layers "
        "compute in bfloat16 (adapters stay float32), ~1.5x faster steps on a CPU with AMX; needs r > 0")

    @property
    def enabled(self) -> bool:
        return self.r > 0

    @model_validator(mode="after")
    def _check_quantize(self) -> LoraSettings:
        if self.quantize is not None and self.r <= 0:
            raise ValueError("lora.quantize (QLoRA) trains LoRA adapters on a quantized base: set lora.r > 0 too")
        if self.base_dtype != "float32" and (self.r <= 0 or self.quantize is not None):
            raise ValueError("lora.base_dtype sets the dtype of the frozen base under LoRA adapters: it needs "
                             "lora.r > 0 and no lora.quantize")
        return self


_COMPARISONS = (">=", "<=", ">", "<")


def parse_constraint(text: str) -> tuple[str, str, float]:
    """``'eval_rewards/helpful>=0.475'`` -> ``('eval_rewards/helpful', '>=', 0.475)``."""
    for op in _COMPARISONS:
        name, found, value = text.partition(op)
        if found:
            try:
                return name.strip(), op, float(value)
            except ValueError:
                break
    raise ValueError(f"best_model_constraint: expected METRIC>=NUMBER (or <=, >, <), got {text!r}")


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
    gradient_checkpointing: bool | Literal["full", "alternate", "mlp"] = Field(
        False, description="activation checkpointing: false, full (= true: every decoder layer), mlp (only "
        "each layer's MLP block) or alternate (mlp on every other layer); all keep DPO's shared-prompt KV cache")
    logging_steps: int = Field(1, ge=1)
    eval_steps: int = Field(0, ge=0, description="evaluate on eval_data every N steps; 0: at the end only")
    eval_batch_size: int | None = Field(None, ge=1, description="examples per device per evaluation batch "
                                        "(default batch_size)")
    eval_on_start: bool = Field(False, description="also evaluate the starting model, before the first step")
    metric_for_best_model: str | None = Field(None, description="an eval metric (e.g. eval_loss, eval_cost): the "
                                              "evaluation with its best value is kept in OUTPUT_DIR/best/")
    greater_is_better: bool | None = Field(None, description="for metric_for_best_model (default: false when its "
                                           "name holds 'loss' or 'cost', else true)")
    best_model_constraint: str | None = Field(None, description="only evaluations meeting it compete for the best, "
                                              "e.g. 'eval_rewards/helpful>=0.475' (>=, <=, >, <)")
    load_best_model_at_end: bool = Field(False, description="final/ holds the best evaluated model (needs "
                                         "metric_for_best_model and eval_steps > 0)")
    keep_checkpoints: int = Field(2, ge=1)

    # Data handling.
    skip_invalid: bool = False
    chat_template: Literal["auto", "always", "never"] = "auto"
    group_by_length: bool = True

    # Safety.
    trust_remote_code: bool = False

    # Experiment trackers (TRL's key): metrics.jsonl always, plus these (alignkit/engine/trackers.py).
    report_to: list[str] = Field(default_factory=list, description="none, or any of tensorboard, wandb, trackio, "
                                 "mlflow (a list for several)")

    @field_validator("report_to", mode="before")
    @classmethod
    def _report_to(cls, v: Any) -> list[str]:
        return parse_report_to(v)

    @model_validator(mode="after")
    def _check_best_model(self) -> TrainConfig:
        if self.best_model_constraint is not None:
            parse_constraint(self.best_model_constraint)  # a ValueError names what was expected
        if (self.best_model_constraint or self.load_best_model_at_end) and not self.metric_for_best_model:
            raise ValueError("best_model_constraint and load_best_model_at_end need metric_for_best_model")
        if self.metric_for_best_model and not self.eval_data:
            raise ValueError("metric_for_best_model needs eval_data (the held-out rows it is measured on)")
        if self.load_best_model_at_end and not self.eval_steps:
            raise ValueError("load_best_model_at_end needs eval_steps > 0 (evaluations to choose from)")
        return self

    @field_validator("resume", mode="before")
    @classmethod
    def _resume(cls, v: Any) -> Any:
        if isinstance(v, str) and v.lower() in {"true", "false"}:
            return v.lower() == "true"
        return v


class SFTConfig(TrainConfig):
    neftune_alpha: float | None = Field(None, ge=0.0, description="NEFTune noise scale; None disables")
    packing: bool = False
    padding_free: bool = Field(False, description="each micro-batch as one row of its examples end to end, no "
                               "padding; attention stays within each example (TRL's padding_free)")
    completion_only_loss: bool = True
    kd_alpha: float | None = Field(None, ge=0.0, le=1.0, description="logit distillation: loss = (1 - kd_alpha) "
                                   "* CE + kd_alpha * KL to kd_teacher's token distribution; None disables")
    kd_teacher: str | None = Field(None, description="teacher model for kd_alpha (same tokenizer as model)")
    kd_direction: Literal["forward", "reverse"] = Field("forward", description="KL(teacher || student) or "
                                                        "KL(student || teacher)")
    kd_temperature: float = Field(1.0, gt=0, description="softmax temperature of both distributions (loss x T^2)")

    @model_validator(mode="after")
    def _check_kd(self) -> SFTConfig:
        if (self.kd_alpha is not None) != (self.kd_teacher is not None):
            raise ValueError("logit distillation needs both kd_alpha and kd_teacher (or neither)")
        if self.kd_alpha is not None and (self.packing or self.padding_free):
            raise ValueError("kd_alpha does not work with packing=true or padding_free=true yet")
        return self


# ----------------------------------------------------------------------------- aliases


@dataclass(frozen=True)
class Alias:
    """``name`` (a Hugging Face ``TrainingArguments`` / TRL spelling) stands for alignkit's ``target``
    in every config that has ``target`` and the ``requires`` fields, and no key called ``name``."""

    name: str
    target: str
    requires: tuple[str, ...] = ()
    note: str = ""  # what the name means, for the error when a method does not take it


#: HF/TRL name -> alignkit key. Names alignkit already spells the same way (``max_grad_norm``,
#: ``warmup_ratio``, ``logging_steps``, ``beta``, ``num_generations``, ``cliprange``, ``kl_coef``, ...)
#: need no alias; names whose meaning differs (TRL ORPO's ``beta``, PPO's ``whiten_rewards``, the
#: ``lora_*`` keys that TRL applies only with ``use_peft``) have none.
ALIASES: dict[str, Alias] = {a.name: a for a in (
    # transformers TrainingArguments
    Alias("learning_rate", "lr"),
    Alias("per_device_train_batch_size", "batch_size"),
    Alias("gradient_accumulation_steps", "grad_accum"),
    Alias("num_train_epochs", "epochs"),
    Alias("lr_scheduler_type", "scheduler"),
    Alias("save_total_limit", "keep_checkpoints"),
    Alias("resume_from_checkpoint", "resume"),
    Alias("per_device_eval_batch_size", "eval_batch_size"),
    # TRL ModelConfig
    Alias("model_name_or_path", "model"),
    # TRL SFTConfig
    Alias("max_seq_length", "max_length"),
    Alias("neftune_noise_alpha", "neftune_alpha"),
    # TRL DPOConfig / CPOConfig: the DPO family's loss choice and SimPO's margin
    Alias("loss_type", "loss", note="the DPO family's 'loss'"),
    Alias("simpo_gamma", "gamma", requires=("loss",), note="the DPO family's SimPO margin 'gamma' (loss=simpo)"),
    # TRL GRPOConfig / OnlineDPOConfig
    Alias("max_completion_length", "max_new_tokens", note="'max_new_tokens' of the methods that generate"),
    Alias("epsilon_high", "eps_high"),
    # TRL PPOConfig
    Alias("num_ppo_epochs", "ppo_epochs"),
    Alias("num_mini_batches", "num_minibatches"),
    Alias("response_length", "max_new_tokens", note="'max_new_tokens' of the methods that generate"),
)}

#: HF/TRL names that look like an alignkit key but are not one
_NOT_ALIASES = {
    "dataset_name": "set data=hf:org/name[:split] for a Hugging Face Hub dataset, or data=FILE (.jsonl, .json, "
                    ".csv, .parquet or a save_to_disk directory)",
}


def aliases_for(config_cls: type[BaseModel]) -> dict[str, str]:
    """The aliases ``config_cls`` accepts: HF/TRL name -> alignkit key."""
    keys = set(_all_keys(config_cls))
    return {a.name: a.target for a in ALIASES.values()
            if a.name not in keys and a.target in keys and all(r in config_cls.model_fields for r in a.requires)}


def counts_completions(config_cls: type[BaseModel]) -> bool:
    """True for the GRPO family, whose TRL ``per_device_train_batch_size`` counts completions
    (alignkit's ``batch_size`` counts prompts, each sampled ``num_generations`` times)."""
    fields = config_cls.model_fields
    return "num_generations" in fields and "eps_low" in fields


def _as_number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _same_value(a: Any, b: Any) -> bool:
    """``1e-4`` (YAML reads it as a string), ``0.0001`` and ``1.0e-4`` are the same value."""
    na, nb = _as_number(a), _as_number(b)
    if na is not None and nb is not None:
        return na == nb
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    return a == b


def _show(value: Any) -> str:
    return value if isinstance(value, str) else yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


def _canonical(items: list[tuple[str, Any]], aliases: dict[str, str], where: str) -> dict[str, tuple[str, Any]]:
    """Map one source's ``(key, value)`` items (in order) to alignkit keys: alignkit key -> (key as
    spelled, value). A key given twice under the same spelling: the later wins; an alias and its
    target with different values: an error naming both."""
    out: dict[str, tuple[str, Any]] = {}
    for key, value in items:
        target = aliases.get(key, key)
        prev = out.get(target)
        if prev is not None and prev[0] != key and not _same_value(prev[1], value):
            alias, canon = (key, prev[0]) if key != target else (prev[0], key)
            raise ConfigError(
                f"{where}config keys {prev[0]}={_show(prev[1])} and {key}={_show(value)} disagree: '{alias}' is "
                f"the Hugging Face/TRL name of '{canon}'; give only one of them"
            )
        out[target] = (key, value)
    return out


def _completions_to_prompts(given: dict[str, tuple[str, Any]], config_cls: type[BaseModel]) -> None:
    """GRPO family: TRL's ``per_device_train_batch_size`` counts completions; turn it into prompts."""
    spelled, value = given["batch_size"]
    gen = given.get("num_generations", (None, config_cls.model_fields["num_generations"].default))[1]
    n, g = _as_number(value), _as_number(gen)
    if n is None or g is None or n != int(n) or g != int(g) or g < 1:
        return  # the validator reports the bad value
    n, g = int(n), int(g)
    if n % g:
        raise ConfigError(
            f"config key '{spelled}'={n}: TRL's GRPO counts completions per device, alignkit's batch_size "
            f"counts prompts of num_generations={g} completions each, and {n} is not a multiple of {g}; "
            f"set per_device_train_batch_size to a multiple of {g}, or batch_size (prompts) instead"
        )
    given["batch_size"] = (spelled, n // g)


# ----------------------------------------------------------------------------- loading


def _parse_value(text: str) -> Any:
    """Parse an override value the way YAML would (``8`` -> 8, ``true`` -> True, ``[a, b]`` -> list). A
    mapping only when written in braces (``{a: 1}``): ``judge:`` or ``rm: path`` stay the strings typed (YAML
    would read them as ``{judge: None}``, and a spec's own check then says what is missing)."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if isinstance(value, dict) and not text.lstrip().startswith("{"):
        return text
    return value


def _all_keys(model_cls: type[BaseModel], prefix: str = "") -> list[str]:
    keys = []
    for name, field in model_cls.model_fields.items():
        keys.append(prefix + name)
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            keys.extend(_all_keys(ann, prefix + name + "."))
    return keys


def _unknown_key_error(key: str, model_cls: type[BaseModel]) -> ConfigError:
    if key in _NOT_ALIASES:
        return ConfigError(f"unknown config key '{key}': {_NOT_ALIASES[key]}")
    aliases = aliases_for(model_cls)
    known = ALIASES.get(key)
    if known is not None and key not in aliases:
        what = known.note or f"'{known.target}'"
        return ConfigError(f"unknown config key '{key}': it is the Hugging Face/TRL name of {what}, "
                           "a key this method does not have")
    valid = _all_keys(model_cls)
    close = difflib.get_close_matches(key, valid + list(aliases), n=1, cutoff=0.5)
    hint = ""
    if close:
        name = close[0]
        hint = f"; did you mean '{aliases[name]}' (alias '{name}')?" if name in aliases else f"; did you mean '{name}'?"
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


def check_output_dir(output_dir: str | Path) -> None:
    """Refuse an ``output_dir`` that is (or lies inside) an existing regular file; nothing is touched."""
    try:
        check_output_path(output_dir, "output_dir", directory=True)
    except OutputPathError as e:
        raise ConfigError(str(e)) from None


def load_config(config_cls: type[TrainConfig], yaml_path: str | Path | None = None,
                overrides: list[str] | tuple[str, ...] = ()) -> TrainConfig:
    """Build a validated config from an optional YAML file and ``key=value`` overrides (later wins).

    Hugging Face / TRL names are accepted for the keys :func:`aliases_for` lists; the config holds
    alignkit's names (so does the run directory's ``config.yaml``).
    """
    aliases = aliases_for(config_cls)
    file_items: list[tuple[str, Any]] = []
    where_file = ""
    if yaml_path is not None:
        path = Path(yaml_path)
        where_file = f"{path}: "
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
                file_items.extend((f"{k}.{sub_k}", sub_v) for sub_k, sub_v in v.items())
            else:
                file_items.append((str(k), v))
    override_items: list[tuple[str, Any]] = []
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"expected key=value, got '{item}'")
        key, _, raw = item.partition("=")
        override_items.append((key.strip(), _parse_value(raw)))
    # each source on its own (an alias and its target disagreeing there is an error), then overrides win
    given = _canonical(file_items, aliases, where_file)
    given.update(_canonical(override_items, aliases, ""))
    if "batch_size" in given and given["batch_size"][0] != "batch_size" and counts_completions(config_cls):
        _completions_to_prompts(given, config_cls)
    tree: dict[str, Any] = {}
    for key, (_, value) in given.items():
        _set_dotted(tree, key, value)
    _check_keys(tree, config_cls, "", config_cls)
    try:
        config = config_cls(**tree)
    except ValidationError as e:
        lines = []
        for err in e.errors():
            loc = ".".join(str(p) for p in err["loc"])
            if not loc:  # a check across keys (a model validator): its message names the keys
                lines.append(err["msg"].removeprefix("Value error, "))
                continue
            spelled = given.get(loc, (loc,))[0]
            as_given = f" (given as '{spelled}')" if spelled != loc else ""
            lines.append(f"config key '{loc}'{as_given}: {err['msg']} (got {err.get('input')!r})")
        if len(lines) == 1:  # the usual case: one line
            raise ConfigError(f"invalid config: {lines[0]}") from None
        raise ConfigError("invalid config:\n  " + "\n  ".join(lines)) from None
    check_output_dir(config.output_dir)
    return config


def dump_config(config: BaseModel, path: str | Path) -> None:
    """Write the fully resolved config as YAML (the run directory's ``config.yaml``)."""
    Path(path).write_text(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))
