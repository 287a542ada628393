"""Reward sources for online methods (GRPO, PPO, online DPO): README "Reward functions".

A *reward source* is anything with a ``name`` and ``__call__(prompts, completions, **columns) ->
list[float]`` (one score per completion; see :class:`RewardSource`). :func:`alignkit.scoring.load_reward_functions`
(the one place that parses ``reward=``/``judge=`` specs) turns the ``reward=`` config value into a
:class:`RewardSet` of sources with weights; this module holds the sources and loads functions:

``FILE.py:FUNC``
    A plain Python function in a file. **Loading the file executes it** (it is imported as a module),
    exactly as TRL and any Python training script would: only point at files you trust. A bare file
    name that is not found in the working directory is looked up among the reward files shipped in
    ``alignkit/assets/rewards`` (``reward=format.py:word_limit`` works anywhere).
``package.module:FUNC``
    A function in an importable module (e.g. ``alignkit.assets.rewards.tokens:even_token_fraction``).
``[SPEC, SPEC, ...]`` with ``reward_weights=[w1, w2, ...]``
    Several sources; the total reward is the weighted sum (weights default to 1).
``rm:PATH``
    A reward model trained with ``alignkit rm`` (its own tokenizer; loaded through
    ``alignkit.reward_model.load_reward_model``).
``judge:MODEL``
    An LLM judge (:mod:`alignkit.judges`: additive 0-5 rubric, final ``Score: N`` line, samples averaged):
    ``judge:self`` (the policy being trained; the method binds it with ``alignkit.judges.bind_policy``),
    ``judge:PATH_OR_NAME`` (another local model) or ``judge:http://HOST:PORT/v1`` (an OpenAI-compatible
    endpoint, key from ``ALIGNKIT_JUDGE_API_KEY``). Options ride on a query string:
    ``judge:self?samples=3&temperature=0.7&max_new_tokens=256&unparsable=0`` (``model=NAME`` for HTTP).
    A completion without any parsable score gets ``unparsable`` (default 0).

The reward-function signature is TRL's::

    def my_reward(prompts, completions, **columns) -> list[float]:
        ...

``prompts`` holds each completion's prompt as it appears in the data (a string, or a list of chat
messages); ``completions`` holds the generated text as a string for string prompts, or as
``[{"role": "assistant", "content": text}]`` for chat prompts (as TRL passes them). Every other
dataset column arrives as a keyword argument holding one value per completion (a prompt's value is
repeated for each of its completions), plus ``completion_ids`` (the generated token ids, EOS
included when one was generated). Accept ``**kwargs`` to ignore what you do not need.

A source that raises, returns the wrong number of scores, or returns something that is not a
finite real number stops the run with a :class:`RewardError` naming the source.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import math
import numbers
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch

from alignkit.config import ConfigError

__all__ = [
    "RewardError",
    "RewardSource",
    "FunctionReward",
    "ModelReward",
    "RewardSet",
    "SHIPPED_REWARDS_DIR",
    "completion_text",
    "load_function",
]

SHIPPED_REWARDS_DIR = Path(__file__).resolve().parent / "assets" / "rewards"


class RewardError(ConfigError):
    """A reward source could not be loaded, or misbehaved during the run (the message names it).

    A :class:`~alignkit.config.ConfigError` so that the command line prints it and exits with status 2.
    """


@runtime_checkable
class RewardSource(Protocol):
    """What every reward source provides (functions, reward models, judges)."""

    name: str

    def __call__(self, prompts: list[Any], completions: list[Any], **columns: list[Any]) -> list[float]: ...


def completion_text(completion: Any) -> str:
    """The text of a completion in either form a reward function receives (string or message list)."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list) and completion and isinstance(completion[-1], dict):
        return str(completion[-1].get("content", ""))
    if isinstance(completion, dict):
        return str(completion.get("content", ""))
    return str(completion)


# ----------------------------------------------------------------------------- checking outputs


def _where_raised(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return ""
    last = frames[-1]
    return f" (at {last.filename}:{last.lineno})"


def _as_scores(name: str, out: Any, n: int) -> list[float]:
    """Validate a source's output: exactly ``n`` finite real numbers."""
    if isinstance(out, torch.Tensor):
        out = out.detach().reshape(-1).tolist() if out.dim() <= 1 else out
    elif hasattr(out, "tolist") and not isinstance(out, (list, tuple)):  # numpy arrays
        out = out.tolist()
    if not isinstance(out, (list, tuple)):
        raise RewardError(f"reward function '{name}' returned {type(out).__name__}, expected a list of "
                          f"{n} numbers (one per completion)")
    if len(out) != n:
        raise RewardError(f"reward function '{name}' returned {len(out)} values for {n} completions "
                          "(it must return one number per completion)")
    scores = []
    for i, v in enumerate(out):
        if isinstance(v, torch.Tensor) and v.numel() == 1:
            v = v.item()
        elif hasattr(v, "item") and not isinstance(v, numbers.Number):  # numpy scalars
            try:
                v = v.item()
            except Exception:  # noqa: BLE001 - reported below as a non-number
                pass
        if not isinstance(v, numbers.Real):
            raise RewardError(f"reward function '{name}' returned {v!r} ({type(v).__name__}) for completion "
                              f"{i}; every reward must be a real number")
        f = float(v)
        if not math.isfinite(f):
            raise RewardError(f"reward function '{name}' returned {f} for completion {i}; rewards must be "
                              "finite numbers")
        scores.append(f)
    return scores


# ----------------------------------------------------------------------------- sources


class FunctionReward:
    """A Python callable ``func(prompts, completions, **columns)`` as a reward source.

    Calling it runs the function and checks its output; any exception it raises, a wrong count, or a
    non-number becomes a :class:`RewardError` naming ``name`` (and ``origin``, where it was loaded from).
    """

    def __init__(self, func: Callable[..., Any], name: str | None = None, origin: str | None = None) -> None:
        if not callable(func):
            raise RewardError(f"reward '{name or func!r}' is not callable")
        self.func = func
        self.name = name or getattr(func, "__name__", None) or type(func).__name__
        self.origin = origin or self.name

    def __call__(self, prompts: list[Any], completions: list[Any], **columns: list[Any]) -> list[float]:
        try:
            out = self.func(prompts, completions, **columns)
        except RewardError:
            raise
        except Exception as e:  # noqa: BLE001 - user code: report whatever it raised, with its name
            raise RewardError(f"reward function '{self.name}' ({self.origin}) raised "
                              f"{type(e).__name__}: {e}{_where_raised(e)}") from e
        return _as_scores(self.name, out, len(completions))

    def __repr__(self) -> str:
        return f"FunctionReward({self.origin})"


class ModelReward:
    """A reward model trained with ``alignkit rm`` (``reward=rm:PATH``), with its own tokenizer.

    It receives the prompts as they are in the data and the completions as plain text, and returns
    ``scorer.score(prompts, texts)``.
    """

    def __init__(self, path: str, scorer: Any = None, name: str | None = None) -> None:
        self.path = path
        self.name = name or (Path(path).name or "reward_model")
        if scorer is None:
            scorer = _load_reward_model(path)
        self.scorer = scorer

    def __call__(self, prompts: list[Any], completions: list[Any], **columns: list[Any]) -> list[float]:
        texts = [completion_text(c) for c in completions]
        try:
            out = self.scorer.score(list(prompts), texts)
        except RewardError:
            raise
        except Exception as e:  # noqa: BLE001
            raise RewardError(f"reward model '{self.name}' ({self.path}) failed: {type(e).__name__}: {e}") from e
        return _as_scores(self.name, out, len(completions))

    def __repr__(self) -> str:
        return f"ModelReward({self.path})"


def _load_reward_model(path: str) -> Any:
    if not Path(path).exists():
        raise RewardError(f"reward=rm:{path}: no such reward model directory")
    try:
        from alignkit.reward_model import load_reward_model
    except ImportError as e:
        raise RewardError(f"reward=rm:{path}: reward models (alignkit.reward_model, written by `alignkit rm`) "
                          f"are not available in this build of alignkit ({e})") from None
    try:
        return load_reward_model(path)
    except RewardError:
        raise
    except Exception as e:  # noqa: BLE001
        raise RewardError(f"reward=rm:{path}: cannot load the reward model: {type(e).__name__}: {e}") from e


def _module_name_for(path: Path) -> str:
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:10]
    stem = "".join(c if c.isalnum() else "_" for c in path.stem)
    return f"alignkit_user_rewards.{stem}_{digest}"


def _load_file_module(file_part: str, spec: str) -> Any:
    path = Path(file_part).expanduser()
    if not path.is_file() and len(path.parts) == 1 and (SHIPPED_REWARDS_DIR / path.name).is_file():
        path = SHIPPED_REWARDS_DIR / path.name
    if not path.is_file():
        shipped = sorted(p.name for p in SHIPPED_REWARDS_DIR.glob("*.py") if not p.name.startswith("_"))
        raise RewardError(f"reward={spec}: file not found: {file_part} (shipped reward files: "
                          f"{', '.join(shipped) or 'none'})")
    path = path.resolve()
    name = _module_name_for(path)
    if name in sys.modules:
        return sys.modules[name]
    mod_spec = importlib.util.spec_from_file_location(name, path)
    if mod_spec is None or mod_spec.loader is None:
        raise RewardError(f"reward={spec}: cannot import {path} as a Python module")
    module = importlib.util.module_from_spec(mod_spec)
    sys.modules[name] = module  # before exec: dataclasses and pickling look the module up
    try:
        mod_spec.loader.exec_module(module)
    except Exception as e:  # noqa: BLE001 - the user's file failed to import
        del sys.modules[name]
        raise RewardError(f"reward={spec}: importing {path} raised {type(e).__name__}: {e}{_where_raised(e)}") from e
    return module


def _load_module(module_part: str, spec: str) -> Any:
    try:
        return importlib.import_module(module_part)
    except ModuleNotFoundError as e:
        raise RewardError(f"reward={spec}: cannot import module '{module_part}' ({e}); for a file use "
                          "FILE.py:FUNC") from None
    except Exception as e:  # noqa: BLE001
        raise RewardError(f"reward={spec}: importing '{module_part}' raised {type(e).__name__}: {e}") from e


def _callables_of(module: Any) -> list[str]:
    return sorted(n for n, v in vars(module).items()
                  if not n.startswith("_") and inspect.isfunction(v) and getattr(v, "__module__", None) == module.__name__)


def load_function(spec: str) -> FunctionReward:
    """The reward source of a ``FILE.py:FUNC`` or ``package.module:FUNC`` spec (the file is executed)."""
    target, sep, func_name = spec.rpartition(":")
    if not sep or not target or not func_name:
        raise RewardError(f"reward={spec}: expected FILE.py:FUNC, package.module:FUNC, rm:PATH or judge:MODEL")
    if target.endswith(".py") or "/" in target or "\\" in target:
        module = _load_file_module(target, spec)
    else:
        module = _load_module(target, spec)
    func = getattr(module, func_name, None)
    if func is None:
        have = _callables_of(module)
        hint = f"; it defines {', '.join(have)}" if have else ""
        raise RewardError(f"reward={spec}: no function '{func_name}' in {target}{hint}")
    if not callable(func):
        raise RewardError(f"reward={spec}: '{func_name}' in {target} is not a function")
    return FunctionReward(func, name=func_name, origin=spec)


class RewardSet:
    """Weighted reward sources. ``rs(prompts, completions, columns)`` runs every source and returns
    ``(total, per_source)``: ``total`` float32 tensor [N] = sum_i w_i * r_i and ``per_source`` an
    ordered dict name -> float32 tensor [N] of each source's raw (unweighted) scores.

    Source names are unique (``name``, ``name_2``, ... for repeats); the metric of source ``name`` is
    ``rewards/name``.
    """

    def __init__(self, sources: Sequence[RewardSource], weights: Sequence[float] | None = None) -> None:
        if not sources:
            raise RewardError("no reward source given")
        if weights is None:
            weights = [1.0] * len(sources)
        weights = [float(w) for w in weights]
        if len(weights) != len(sources):
            raise RewardError(f"reward_weights has {len(weights)} entries for {len(sources)} reward sources")
        if any(not math.isfinite(w) for w in weights):
            raise RewardError(f"reward_weights must be finite numbers, got {weights}")
        self.sources = list(sources)
        self.weights = weights
        names, seen = [], {}
        for s in self.sources:
            base = str(getattr(s, "name", None) or type(s).__name__)
            seen[base] = seen.get(base, 0) + 1
            names.append(base if seen[base] == 1 else f"{base}_{seen[base]}")
        self.names = names

    def __len__(self) -> int:
        return len(self.sources)

    def __call__(self, prompts: Sequence[Any], completions: Sequence[Any],
                 columns: dict[str, Sequence[Any]] | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        n = len(completions)
        if len(prompts) != n:
            raise ValueError(f"{len(prompts)} prompts for {n} completions")
        columns = dict(columns or {})
        for k, v in columns.items():
            if len(v) != n:
                raise ValueError(f"column '{k}' has {len(v)} values for {n} completions")
        per: dict[str, torch.Tensor] = {}
        total = torch.zeros(n, dtype=torch.float32)
        for name, source, w in zip(self.names, self.sources, self.weights):
            scores = source(list(prompts), list(completions), **{k: list(v) for k, v in columns.items()})
            if isinstance(source, FunctionReward) or isinstance(source, ModelReward):
                values = scores  # already checked
            else:  # a foreign source (e.g. a judge): check its output here
                values = _as_scores(name, scores, n)
            t = torch.tensor(values, dtype=torch.float32)
            per[name] = t
            total += w * t
        return total, per

    def __repr__(self) -> str:
        return f"RewardSet({', '.join(f'{w:g}*{n}' for n, w in zip(self.names, self.weights))})"
