"""``report_to=``: trackers through accelerate, offline, with the metric names of SPEC 5.

One DPO run (tiny-random, 2 steps) reports to every tracker installed here at once; each tracker's own
files are read back and compared with ``metrics.jsonl``. W&B runs with ``WANDB_MODE=offline``, trackio in
a temporary ``TRACKIO_DIR``, MLflow in its file store inside the run directory: no network.
"""

from __future__ import annotations

import glob
import importlib.util
import json
import sqlite3
from pathlib import Path

import pytest

from alignkit.cli import main
from alignkit.config import ConfigError, SFTConfig, load_config, parse_report_to
from alignkit.engine import trackers
from alignkit.engine.logging import read_metrics
from tests.helpers import preference_rows, run_cli, sft_rows, write_jsonl

INSTALLED = [t for t, module in (("tensorboard", "tensorboard"), ("wandb", "wandb"), ("trackio", "trackio"),
                                 ("mlflow", "mlflow")) if importlib.util.find_spec(module) is not None]


def test_report_to_values():
    assert parse_report_to("none") == [] and parse_report_to(None) == [] and parse_report_to([]) == []
    assert parse_report_to("wandb") == ["wandb"]
    assert parse_report_to("tensorboard, mlflow") == ["tensorboard", "mlflow"]
    assert parse_report_to(["trackio", "none", "trackio"]) == ["trackio"]
    assert load_config(SFTConfig, None, ["report_to=[wandb,mlflow]"]).report_to == ["wandb", "mlflow"]
    assert load_config(SFTConfig, None, []).report_to == []
    with pytest.raises(ConfigError, match="unknown tracker 'neptune'.*tensorboard, wandb, trackio, mlflow"):
        load_config(SFTConfig, None, ["report_to=neptune"])


def test_flat_config_and_numeric():
    assert trackers.flat_config({"lora": {"r": 8, "target_modules": ["q", "v"]}, "data": None}) == {
        "lora.r": 8, "lora.target_modules": "['q', 'v']", "data": "None"}
    assert trackers.numeric({"loss": 0.5, "step": 3, "bad": float("nan"), "name": "x", "flag": True}) == {
        "loss": 0.5, "step": 3.0}


def test_missing_package_is_a_one_line_error_before_training(tmp_path, monkeypatch, capsys):
    real = importlib.util.find_spec
    monkeypatch.setattr(trackers.importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    data = write_jsonl(tmp_path / "sft.jsonl", sft_rows(4))
    out = tmp_path / "run"
    rc = main(["sft", "model=tiny-random", f"data={data}", f"output_dir={out}", "max_steps=1", "report_to=wandb"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "\n" not in err and "Traceback" not in err
    assert "report_to=wandb needs the 'wandb' package" in err and "pip install 'alignkit[wandb]'" in err
    assert not (out / "metrics.jsonl").exists()


@pytest.mark.skipif(not INSTALLED, reason="no tracker package installed (pip install 'alignkit[trackers]')")
def test_every_installed_tracker_gets_the_metrics(tmp_path):
    data = write_jsonl(tmp_path / "pref.jsonl", preference_rows(4))
    out = tmp_path / "run"
    env = {"WANDB_MODE": "offline", "WANDB_SILENT": "true", "TRACKIO_DIR": str(tmp_path / "trackio"),
           "MLFLOW_TRACKING_URI": "", "HF_HUB_OFFLINE": "1"}
    proc = run_cli("dpo", "model=tiny-random", f"data={data}", f"output_dir={out}", "max_steps=2", "batch_size=2",
                   "max_length=64", "lr=1e-3", f"report_to=[{','.join(INSTALLED)}]", env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = read_metrics(out)
    assert [r["step"] for r in rows] == [1, 2]
    names = ("loss", "rewards/chosen", "rewards/margins", "logps/rejected", "tokens_per_second")
    expected = {n: [r[n] for r in rows] for n in names}
    if "tensorboard" in INSTALLED:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        (events,) = glob.glob(str(out / "tensorboard" / "alignkit-dpo" / "events.out.tfevents.*"))
        acc = EventAccumulator(events)
        acc.Reload()
        for n in names:
            got = [(e.step, e.value) for e in acc.Scalars(n)]
            assert got == [(s, pytest.approx(v, rel=1e-6)) for s, v in zip((1, 2), expected[n])]
    if "mlflow" in INSTALLED:
        (run_dir,) = [p for p in (out / "mlruns").glob("*/*") if (p / "metrics").is_dir()]
        for n in names:
            lines = (run_dir / "metrics" / n).read_text().split("\n")
            got = [(int(x.split()[2]), float(x.split()[1])) for x in lines if x.strip()]
            assert got == [(s, pytest.approx(v, rel=1e-6)) for s, v in zip((1, 2), expected[n])]
        assert (run_dir / "params" / "loss").read_text() == "sigmoid"  # the config went along
    if "trackio" in INSTALLED:
        db = sqlite3.connect(tmp_path / "trackio" / "alignkit-dpo.db")
        logged = {step: json.loads(m) for step, m in db.execute("select step, metrics from metrics order by step")}
        assert sorted(logged) == [1, 2]
        for n in names:
            assert [logged[s][n] for s in (1, 2)] == pytest.approx(expected[n], rel=1e-6)
    if "wandb" in INSTALLED:
        (log,) = glob.glob(str(out / "wandb" / "offline-run-*" / "run-*.wandb"))
        raw = Path(log).read_bytes()  # history values are stored as JSON text in the offline log
        for n in names:
            assert n.encode() in raw and all(json.dumps(v).encode() in raw for v in expected[n])
