"""Online DPO on tiny-random: config, pair selection, one step that raises the margin of the judged-better
completion (a deterministic stub judge), a CLI run labelled by an HTTP judge (stub server) writing the
run directory, and exact resume with judge:self + a rule reward."""

from __future__ import annotations

import math

import pytest
import torch

from alignkit.cli import main
from alignkit.config import ConfigError, load_config
from alignkit.engine.logging import read_metrics
from alignkit.judges import CallableBackend, LLMJudge, judge_reward
from alignkit.methods import get_method
from alignkit.methods.online import completion_token_logps
from alignkit.methods.online_dpo import OnlineDPO, OnlineDPOConfig, select_pairs
from alignkit.rewards import RewardSet
from tests.helpers import write_jsonl
from tests.test_judges import StubJudgeServer, length_score

QUESTIONS = ["What is 2+2?", "Name a fruit.", "Say hello.", "What colour is the sky?", "Count to three.",
             "Name a colour.", "What is 3*3?", "Spell dog."]
FAST = ["model=tiny-random", "max_length=64", "max_new_tokens=6", "num_generations=2", "batch_size=2",
        "log_completions_steps=1", "lr=1e-3"]


@pytest.fixture(scope="module")
def prompt_data(tmp_path_factory):
    d = tmp_path_factory.mktemp("odpo")
    return write_jsonl(d / "prompts.jsonl", [{"prompt": [{"role": "user", "content": q}]} for q in QUESTIONS])


@pytest.fixture(scope="module")
def reward_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("odpo_rewards") / "odpo_rewards.py"
    path.write_text(
        "def count_e(prompts, completions, **kw):\n"
        "    texts = [c if isinstance(c, str) else c[-1]['content'] for c in completions]\n"
        "    return [float(t.count('e')) + 0.01 * len(t) for t in texts]\n"
    )
    return path


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny-model work runs faster on one thread on a busy machine; restored afterwards."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(autouse=True)
def no_report(monkeypatch):
    """The HTML report is the engine's (tested there); skipping it keeps these runs fast."""
    monkeypatch.setattr("alignkit.cli.write_run_report", lambda out: None)


def test_config_and_registry():
    assert get_method("online-dpo") is OnlineDPO
    cfg = load_config(OnlineDPOConfig, overrides=["reward=judge:self"])
    assert (cfg.num_generations, cfg.max_new_tokens, cfg.temperature, cfg.batch_size) == (2, 64, 0.9, 2)
    assert (cfg.loss, cfg.beta, cfg.precompute_ref_log_probs) == ("sigmoid", 0.1, False)
    assert (cfg.judge_samples, cfg.judge_temperature, cfg.judge_max_new_tokens, cfg.judge_unparsable) == (3, 0.7, 256, 0.0)
    with pytest.raises(ConfigError, match="precompute_ref_log_probs"):
        load_config(OnlineDPOConfig, overrides=["reward=x.py:f", "precompute_ref_log_probs=true"])
    with pytest.raises(ConfigError, match="num_generations"):
        load_config(OnlineDPOConfig, overrides=["reward=x.py:f", "num_generations=1"])
    with pytest.raises(ConfigError, match="loss"):
        load_config(OnlineDPOConfig, overrides=["reward=x.py:f", "loss=kto"])


def test_select_pairs_drops_ties_and_identical_completions():
    rewards = torch.tensor([1.0, 3.0, 2.0, 0.5,   2.0, 2.0, 2.0, 2.0,   0.0, 1.0, 1.0, 0.0])
    assert select_pairs(rewards, 4) == ([1, 9], [3, 8])
    ids = [[1], [2], [3], [4], [5], [5], [5], [5], [8], [8], [8], [8]]
    assert select_pairs(rewards, 4, ids) == ([1], [3])  # group 3's best and worst are the same tokens


def test_step_raises_margin_of_judged_better(prompt_data, tmp_path):
    from accelerate import Accelerator

    from alignkit.models import load_tokenizer

    cfg = load_config(OnlineDPOConfig, overrides=["model=tiny-random", "reward=format.py:one_sentence",
                                                  f"output_dir={tmp_path}", "num_generations=4", "max_new_tokens=8",
                                                  "max_length=64", "log_completions_steps=0", "beta=0.5"])
    tok = load_tokenizer("tiny-random")
    method = OnlineDPO(cfg, tok)

    def judge_fn(text, i):  # deterministic stub judge: prefers answers whose length is 5 mod 6
        answer = text.split("<answer>\n")[1].split("\n</answer>")[0]
        return f"Looks fine.\nScore: {len(answer) % 6}"

    judged = judge_reward(LLMJudge(CallableBackend(judge_fn), judge_samples=2))
    method.rewards, method.judges = RewardSet([judged]), [judged]
    model = method.build_model()
    method.setup(model, Accelerator(cpu=True))
    batch = method.collate(method.build_examples(str(prompt_data))[:2])
    micro, metrics = method.prepare_step(model, [batch], step=0)
    assert metrics["pairs_kept"][0] >= 1 and metrics["judge/parse_rate"] == (16.0, 16.0)
    pairs = micro[0]
    B = pairs["input_ids"].shape[0] // 2

    # the chosen rows are the completions the judge scored higher
    def texts(rows):
        P = pairs["input_ids"].shape[1] - pairs["completion_mask"].shape[1]
        return [tok.decode(pairs["input_ids"][r, P:][pairs["completion_mask"][r].bool()], skip_special_tokens=True)
                for r in rows]

    score = {t: len(t) % 6 for t in texts(range(2 * B))}
    assert all(score[c] > score[r] for c, r in zip(texts(range(B)), texts(range(B, 2 * B))))

    def margins():
        with torch.no_grad():
            lp = (completion_token_logps(model, pairs) * pairs["completion_mask"]).sum(-1)
        return lp[:B] - lp[B:]

    before = margins()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    out = method.loss(model, pairs, step=0)
    assert out.metrics["rewards/margins"][1] == B and math.isclose(float(out.loss_sum.detach()) / B, math.log(2), rel_tol=1e-4)
    out.loss_sum.backward()
    opt.step()
    after = margins()
    assert (after > before).all(), (before, after)


def test_cli_run_with_http_judge_writes_run_dir(prompt_data, tmp_path):
    out = tmp_path / "run"
    with StubJudgeServer(length_score) as server:
        rc = main(["online-dpo", *FAST, f"data={prompt_data}", f"output_dir={out}", "max_steps=2",
                   f"reward=judge:{server.url}", "judge_samples=1", "judge_model=stub", "loss=ipo"])
        assert rc == 0
        assert server.requests and {r["model"] for r in server.requests} == {"stub"}
    assert "reward: judge:http" in (out / "config.yaml").read_text()
    rows = read_metrics(out)
    assert [r["step"] for r in rows] == [1, 2]
    for key in ("loss", "learning_rate", "grad_norm", "tokens_per_second", "rewards/chosen", "rewards/rejected",
                "rewards/margins", "rewards/accuracies", "logps/chosen", "logps/rejected", "reward", "reward_std",
                "pairs_kept", "completion_length", "judge/parse_rate"):
        assert all(math.isfinite(r[key]) for r in rows), key
    assert rows[0]["judge/parse_rate"] == 1.0
    assert (out / "checkpoints" / "step-2" / "state.json").is_file()
    assert (out / "final" / "config.json").is_file()
    assert (out / "completions.jsonl").is_file()


def _interrupt_at_step_2_then_resume(common: list[str], run, monkeypatch):
    """Ctrl-C during step 2 (exit 130), then ``resume=true`` to the end; returns the run directory."""
    original = OnlineDPO.loss

    def interrupting(self, model, batch, step):
        if step == 2:
            raise KeyboardInterrupt
        return original(self, model, batch, step)

    monkeypatch.setattr(OnlineDPO, "loss", interrupting)
    assert main(["online-dpo", *common, f"output_dir={run}"]) == 130
    monkeypatch.setattr(OnlineDPO, "loss", original)
    assert main(["online-dpo", *common, f"output_dir={run}", "resume=true"]) == 0
    return run


def test_resume_matches_uninterrupted_run(prompt_data, reward_file, tmp_path, monkeypatch):
    common = [*FAST, f"data={prompt_data}", "max_steps=3", "save_steps=1", "lora.r=4", "lr=5e-3",
              f"reward=[judge:self?samples=1&max_new_tokens=3, {reward_file}:count_e]"]
    ref = tmp_path / "ref"
    assert main(["online-dpo", *common, f"output_dir={ref}"]) == 0

    run = _interrupt_at_step_2_then_resume(common, tmp_path / "run", monkeypatch)

    def losses(out):
        return [(r["step"], r["loss"], r["reward"], r["rewards/margins"]) for r in read_metrics(out)]

    assert losses(run) == losses(ref)
    assert all("rewards/judge_self" in r for r in read_metrics(ref))


def test_bfloat16_rollout_copy_resumes_exactly(prompt_data, reward_file, tmp_path, monkeypatch):
    """rollout_dtype=bfloat16: samples come from a merged bf16 copy rebuilt after a resume; the resumed
    run must still match the uninterrupted one (the copy mirrors the restored weights)."""
    common = [*FAST, f"data={prompt_data}", "max_steps=3", "save_steps=1", "lora.r=4", "lr=5e-3",
              f"reward={reward_file}:count_e", "rollout_dtype=bfloat16"]
    ref = tmp_path / "ref"
    assert main(["online-dpo", *common, f"output_dir={ref}"]) == 0
    run = _interrupt_at_step_2_then_resume(common, tmp_path / "run", monkeypatch)

    def rows(out):
        return [(r["step"], r["loss"], r["reward"]) for r in read_metrics(out)]

    assert rows(run) == rows(ref) and len(rows(ref)) == 3
