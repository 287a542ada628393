"""Run reports from synthetic metrics files, and `alignkit report` on one and on two runs."""

from __future__ import annotations

import json
import math
import re

import pytest

from alignkit.cli import main
from alignkit.report import metric_series, plot_groups, write_run_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def make_run(path, steps=60, offset=0.0, online=False, eval_results=None):
    """A run directory with a synthetic metrics.jsonl (DPO-like, or GRPO-like with ``online``)."""
    path.mkdir(parents=True)
    rows = []
    for s in range(1, steps + 1):
        row = {"step": s, "loss": 0.7 * math.exp(-s / 30) + offset + 0.02 * math.sin(s),
               "learning_rate": 1e-5 * (1 - s / steps), "grad_norm": 1.0 + 0.1 * math.cos(s),
               "epoch": s / steps, "tokens_per_second": 900.0 + s}
        if online:
            row.update({"reward": s / steps, "reward_std": 0.1, "kl": 0.01 * s, "completion_length": 40 + s % 7})
        else:
            row.update({"rewards/chosen": 0.01 * s, "rewards/rejected": -0.01 * s, "rewards/margins": 0.02 * s,
                        "rewards/accuracies": min(1.0, 0.5 + s / 100), "logps/chosen": -50.0 + s / 10,
                        "logps/rejected": -60.0 - s / 10})
        if s % 20 == 0:
            row["eval_loss"] = row["loss"] + 0.05
        rows.append(row)
    rows.append({"step": steps, "eval_loss": "nan", "note": "text is ignored", "ok": True})
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (path / "config.yaml").write_text(f"model: tiny-random\ndata: data.jsonl\noutput_dir: {path}\nmax_steps: {steps}\n")
    if eval_results is not None:
        (path / "eval").mkdir()
        (path / "eval" / "results.json").write_text(json.dumps(eval_results))
    return path


def eval_results(model: str, rate: float) -> dict:
    return {"prompts": {"file": "instructions.jsonl", "split": "test", "n": 32}, "settings": {},
            "models": [{"model": "smollm2-135m", "name": "smollm2-135m",
                        "gold": {"prompt_level": 0.1, "instruction_level": 0.2, "n_prompts": 32, "n_instructions": 45,
                                 "per_type": {"no_commas": {"pass_rate": 0.1, "passed": 1, "total": 10}}},
                        "completion_tokens": 50.0, "truncated_rate": 0.0},
                       {"model": model, "name": model,
                        "gold": {"prompt_level": rate, "instruction_level": 0.6, "n_prompts": 32, "n_instructions": 45,
                                 "per_type": {"no_commas": {"pass_rate": 0.7, "passed": 7, "total": 10}}},
                        "completion_tokens": 40.0, "truncated_rate": 0.0}],
            "win_rate": {"model_a": "smollm2-135m", "model_b": model, "judge": "j.py:f", "n": 32, "wins": 3,
                         "losses": 20, "ties": 9, "inconsistent": 5, "win_rate": 0.234375}}


def test_series_and_groups():
    series = metric_series([{"step": 1, "loss": 1.0, "eval_loss": 1.2, "flag": True, "x": "nan", "rewards/chosen": 1},
                            {"step": 2, "loss": float("inf"), "rewards/rejected": 0.5}])
    assert series["loss"] == ([1], [1.0]) and "flag" not in series and "x" not in series
    assert list(series)[:2] == ["loss", "eval_loss"]
    groups = dict(plot_groups(list(series) + ["epoch", "kl", "eval_kl", "eval_rewards/chosen"]))
    assert groups["loss"] == ["loss", "eval_loss"] and groups["kl"] == ["kl", "eval_kl"]
    assert groups["rewards/chosen vs rejected"] == ["rewards/chosen", "rewards/rejected", "eval_rewards/chosen"]
    assert "epoch" not in str(groups)


def test_run_report_is_self_contained(tmp_path):
    run = make_run(tmp_path / "dpo-run", eval_results=eval_results("dpo-run", 0.4))
    (run / "plots").mkdir()
    (run / "plots" / "stale.png").write_bytes(PNG_MAGIC)
    out = write_run_report(run)
    assert out == run / "report.html"
    page = out.read_text()
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    pngs = sorted(p.name for p in (run / "plots").glob("*.png"))
    assert len(images) == len(pngs) >= 6 and "stale.png" not in pngs
    for name in ("loss.png", "learning_rate.png", "rewards_margins.png", "rewards_accuracies.png",
                 "rewards_chosen_vs_rejected.png", "logps_chosen_vs_rejected.png"):
        assert (run / "plots" / name).read_bytes().startswith(PNG_MAGIC), name
    import base64

    assert base64.b64decode(images[0]).startswith(PNG_MAGIC)
    assert "src=\"http" not in page and "<script" not in page  # nothing fetched from elsewhere
    assert "Final metrics" in page and "rewards/margins" in page and "model tiny-random" in page
    assert "Evaluation" in page and "40.0%" in page and "no_commas" in page  # eval results of the run
    assert "config.yaml" in page


def test_online_run_report_and_no_metrics(tmp_path):
    run = make_run(tmp_path / "grpo", steps=8, online=True)
    write_run_report(run)
    for name in ("reward.png", "kl.png", "completion_length.png", "reward_std.png"):
        assert (run / "plots" / name).is_file(), name
    empty = tmp_path / "empty"
    empty.mkdir()
    assert write_run_report(empty) is None
    (empty / "metrics.jsonl").write_text('{"step": 1, "note": "x"}\n')
    assert write_run_report(empty) is None


def test_safe_run_report_plots_lambda_first(tmp_path):
    """A cost-constrained run (safe-grpo / safe-ppo) logs lambda, cost and cost_violation: lambda's trajectory
    gets its own figure, right after the loss, and the final-metrics table holds its last/min/max."""
    run = make_run(tmp_path / "safe", steps=6, online=True)
    lams = [1.0, 1.35, 1.6, 1.6, 1.45, 1.2]  # rises while the cost is above the limit, then falls
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    for row, lam in zip(rows, lams):
        row.update({"lambda": lam, "cost": 0.4, "cost_violation": 0.3})
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    page = write_run_report(run).read_text()
    assert [t for t, _ in plot_groups(list(metric_series(rows)))][:4] == ["loss", "lambda", "cost", "cost_violation"]
    assert (run / "plots" / "lambda.png").read_bytes().startswith(PNG_MAGIC)
    assert 'alt="lambda"' in page and "lambda: last 1.2" in page
    assert "<td>lambda</td><td>1.2</td><td>1</td><td>1.6</td><td>6</td>" in page


def test_report_cli_one_and_two_runs(tmp_path, capsys):
    from alignkit.cli import main

    a = make_run(tmp_path / "runs" / "dpo", eval_results=eval_results("dpo", 0.4))
    b = make_run(tmp_path / "runs" / "ift", steps=40, offset=0.1, eval_results=eval_results("ift", 0.3))
    c = make_run(tmp_path / "runs" / "grpo", steps=10, online=True)

    assert main(["report", str(a)]) == 0
    assert (a / "report.html").is_file() and "report:" in capsys.readouterr().out

    out = tmp_path / "compare.html"
    assert main(["report", str(a), str(b), str(c), "--output", str(out)]) == 0
    page = out.read_text()
    assert all(name in page for name in ("dpo", "ift", "grpo"))
    assert "Final metrics" in page and "<table>" in page
    table = page[page.index("Final metrics"):page.index("Curves")]
    assert "loss" in table and "rewards/margins" in table and "reward_std" in table
    assert "40.0%" in table and "30.0%" in table  # eval results, the run's own model picked
    assert len(re.findall(r"data:image/png;base64,", page)) >= 4  # loss, learning_rate, grad_norm, ...
    assert "logged by one run only" in page

    assert main(["report", str(tmp_path / "nope")]) == 2
    assert "no such run directory" in capsys.readouterr().err
    assert main(["report", str(tmp_path)]) == 2
    assert "no metrics.jsonl" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["report", "--help"], ["eval", "--help"]])
def test_commands_are_wired(argv, capsys):
    from alignkit.cli import COMMANDS, main

    assert COMMANDS["eval"] and COMMANDS["report"]
    assert main(argv) == 0
    assert "usage: alignkit " + argv[0] in capsys.readouterr().out


def test_metrics_file_cut_off_last_line_is_dropped_and_resume_rewrites_it(tmp_path):
    from alignkit.engine.logging import MetricsFileError, MetricsLog, read_metrics

    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1, "loss": 0.5}\n{"step": 2, "loss": 0.4}\n{"step": 3, "lo')  # killed mid-write
    assert read_metrics(tmp_path) == [{"step": 1, "loss": 0.5}, {"step": 2, "loss": 0.4}]
    MetricsLog(tmp_path, resume_step=1)  # a resume from step 1 keeps rows <= 1 and drops the cut-off one
    assert path.read_text() == '{"step": 1, "loss": 0.5}\n'
    path.write_text('{"step": 1}\nnot json\n{"step": 2}\n')
    with pytest.raises(MetricsFileError, match=r"metrics.jsonl: line 2: not a JSON object"):
        read_metrics(tmp_path)
    path.write_text('{"step": 1}\n[1, 2]\n')  # parses, but not a row of metrics: not a cut-off write
    with pytest.raises(MetricsFileError, match="line 2"):
        read_metrics(path)


def test_report_of_a_corrupt_metrics_file_is_one_line(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    (tmp_path / "metrics.jsonl").write_text("not json\n{\"step\": 1, \"loss\": 1.0}\n")
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "metrics.jsonl: line 1: not a JSON object" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
