"""The training engine through SFT on tiny-random: run directory, resume, Ctrl-C, NaN, 2 processes."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys

import pytest
import torch

from alignkit.cli import main
from alignkit.engine.logging import read_metrics
from alignkit.methods.sft import SFT, neftune_hook
from tests.helpers import REPO, run_cli, sft_rows, write_jsonl


@pytest.fixture(scope="module")
def sft_data(tmp_path_factory):
    d = tmp_path_factory.mktemp("data")
    return write_jsonl(d / "sft.jsonl", sft_rows(16))


def _run(*args: str) -> int:
    return main(["sft", "model=tiny-random", "lr=1e-3", "batch_size=2", "max_length=64", *args])


def test_cli_writes_run_directory(sft_data, tmp_path):
    out = tmp_path / "run"
    proc = run_cli("sft", "model=tiny-random", f"data={sft_data}", f"output_dir={out}", "max_steps=4",
                   "batch_size=2", "lr=1e-3")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (out / "config.yaml").is_file()
    cfg = (out / "config.yaml").read_text()
    assert "max_steps: 4" in cfg and "model: tiny-random" in cfg
    rows = read_metrics(out)
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    for key in ("loss", "learning_rate", "grad_norm", "tokens_per_second"):
        assert all(math.isfinite(r[key]) for r in rows), key
    assert rows[0]["loss"] > 0
    assert (out / "checkpoints" / "step-4" / "state.json").is_file()
    assert (out / "final" / "config.json").is_file()
    assert list((out / "final").glob("*.safetensors"))
    assert not list(out.rglob("*.bin"))


def test_loss_decreases_and_lora_saves_adapter(sft_data, tmp_path):
    out = tmp_path / "lora"
    assert _run(f"data={sft_data}", f"output_dir={out}", "max_steps=12", "lora.r=8", "lr=5e-3") == 0
    rows = read_metrics(out)
    first, last = rows[0]["loss"], sum(r["loss"] for r in rows[-3:]) / 3
    assert last < first, (first, last)
    assert (out / "final" / "adapter_config.json").is_file()
    assert (out / "final" / "adapter_model.safetensors").is_file()


def _losses(out):
    return [(r["step"], r["loss"], r["grad_norm"]) for r in read_metrics(out)]


def test_resume_reproduces_uninterrupted_run(sft_data, tmp_path, monkeypatch):
    common = [f"data={sft_data}", "max_steps=6", "save_steps=2", "neftune_alpha=5"]
    ref = tmp_path / "ref"
    assert _run(*common, f"output_dir={ref}") == 0

    # Ctrl-C during step 5 (index 4): the engine saves step-4 and exits 130
    run = tmp_path / "run"
    original = SFT.loss

    def interrupting(self, model, batch, step):
        if step == 4:
            raise KeyboardInterrupt
        return original(self, model, batch, step)

    monkeypatch.setattr(SFT, "loss", interrupting)
    assert _run(*common, f"output_dir={run}") == 130
    monkeypatch.setattr(SFT, "loss", original)
    assert (run / "checkpoints" / "step-4").is_dir()
    assert json.loads((run / "checkpoints" / "step-4" / "state.json").read_text())["step"] == 4
    assert not list((run / "checkpoints").glob(".tmp-*"))

    # a second copy resumes from the periodic checkpoint at step 2 instead
    run2 = tmp_path / "run2"
    shutil.copytree(run, run2)
    shutil.rmtree(run2 / "checkpoints" / "step-4")

    assert _run(*common, f"output_dir={run}", "resume=true") == 0
    assert _run(*common, f"output_dir={run2}", "resume=true") == 0
    assert _losses(run) == _losses(ref)
    assert _losses(run2) == _losses(ref)


def test_existing_checkpoints_need_resume(sft_data, tmp_path, capsys):
    out = tmp_path / "run"
    assert _run(f"data={sft_data}", f"output_dir={out}", "max_steps=1") == 0
    assert _run(f"data={sft_data}", f"output_dir={out}", "max_steps=1") == 2
    assert "resume=true" in capsys.readouterr().err
    assert _run(f"data={sft_data}", f"output_dir={tmp_path / 'none'}", "max_steps=1", "resume=true") == 2


def test_nan_loss_stops_and_keeps_last_checkpoint(sft_data, tmp_path, monkeypatch, capsys):
    original = SFT.loss

    def nan_at_step_3(self, model, batch, step):
        out = original(self, model, batch, step)
        if step == 2:
            out.loss_sum = out.loss_sum * float("nan")
        return out

    monkeypatch.setattr(SFT, "loss", nan_at_step_3)
    out = tmp_path / "nan"
    assert _run(f"data={sft_data}", f"output_dir={out}", "max_steps=5", "save_steps=1") == 3
    err = capsys.readouterr().err
    assert "loss became nan at step 3" in err and "step-2" in err
    assert (out / "checkpoints" / "step-2").is_dir() and not (out / "checkpoints" / "step-3").exists()
    assert [r["step"] for r in read_metrics(out)] == [1, 2]


def test_grad_accum_matches_bigger_batch(sft_data, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    assert _run(f"data={sft_data}", f"output_dir={a}", "max_steps=3", "batch_size=4") == 0
    assert _run(f"data={sft_data}", f"output_dir={b}", "max_steps=3", "batch_size=2", "grad_accum=2") == 0
    for ra, rb in zip(read_metrics(a), read_metrics(b)):
        assert ra["loss"] == pytest.approx(rb["loss"], abs=1e-5)
        assert ra["grad_norm"] == pytest.approx(rb["grad_norm"], rel=1e-4)


def test_two_processes_match_one(sft_data, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    args = ["model=tiny-random", f"data={sft_data}", "max_steps=3", "lr=1e-3", "max_length=64"]
    assert _run(*args[1:], f"output_dir={one}", "batch_size=4") == 0
    # accelerate's torchrun-based launcher; on a machine without CUDA the engine runs gloo on CPU
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "-m", "alignkit", "sft", *args, f"output_dir={two}", "batch_size=2"]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    r1, r2 = read_metrics(one), read_metrics(two)
    assert len(r1) == len(r2) == 3
    for a, b in zip(r1, r2):
        assert a["loss"] == pytest.approx(b["loss"], abs=1e-5)
        assert a["grad_norm"] == pytest.approx(b["grad_norm"], rel=1e-4)


def test_neftune_noise_only_in_training():
    emb = torch.nn.Embedding(10, 8)
    emb.register_forward_hook(neftune_hook(5.0))
    ids = torch.tensor([[1, 2, 3, 4]])
    emb.train()
    noisy = emb(ids)
    diff = (noisy - emb.weight[ids]).abs()
    bound = 5.0 / math.sqrt(4 * 8)
    assert diff.max() > 0 and diff.max() <= bound + 1e-6
    emb.eval()
    assert torch.equal(emb(ids), emb.weight[ids])


def test_bad_row_stops_before_training(tmp_path, capsys):
    data = tmp_path / "bad.jsonl"
    rows = sft_rows(4, chat=False)
    rows[2] = {"prompt": "hi", "completion": ""}
    write_jsonl(data, rows)
    out = tmp_path / "run"
    assert _run(f"data={data}", f"output_dir={out}", "max_steps=1") == 2
    err = capsys.readouterr().err
    assert "bad.jsonl" in err and "row 3" in err and "completion" in err
    assert not (out / "checkpoints").exists()


def test_best_model_by_hand(tmp_path):
    from alignkit.config import TrainConfig
    from alignkit.engine.best import BestModel, lower_is_better

    assert lower_is_better("eval_loss", None) and lower_is_better("eval_cost", None)
    assert not lower_is_better("eval_reward", None) and lower_is_better("eval_reward", False)
    cfg = TrainConfig(eval_data="x.jsonl", eval_steps=1, metric_for_best_model="eval_reward",
                      best_model_constraint="eval_len<=10", load_best_model_at_end=True)
    model = torch.nn.Linear(2, 1)
    best = BestModel(cfg, tmp_path)
    seen = []
    for step, reward, length in [(1, 0.1, 14), (2, 0.9, 12), (3, 0.5, 10), (4, 0.5, 3), (5, 0.4, 1), (6, 1.0, 11)]:
        with torch.no_grad():
            model.weight.fill_(step)
        seen.append(best.consider(step, {"eval_reward": reward, "eval_len": length}, model))
        if step == 2:  # none meets the constraint yet: the one missing it by least (12 > 10 by 2, not 4)
            assert best.record["step"] == 2 and not best.record["meets_constraint"]
    # step 3 meets it and beats every miss; step 4 ties step 3 (the earlier one stays); step 6 misses it
    assert seen == [True, True, True, False, False, False] and best.record["step"] == 3
    assert best.record["meets_constraint"] and best.record["rank"] == [0, -0.5]
    assert [p.name for p in (tmp_path / "best").glob("*.safetensors")] == ["trainable-step-3.safetensors"]
    with torch.no_grad():
        model.weight.zero_()
    assert BestModel(cfg, tmp_path, resumed=True).restore(model) == 3 and torch.all(model.weight == 3)
    assert BestModel(cfg, tmp_path).restore(model) is None  # a fresh run ignores an earlier run's best
