"""``alignkit bench``: both benches run end to end on tiny-random (the alignkit side always; the TRL side
only where the optional ``bench`` extra, i.e. trl, is installed)."""

import importlib.util
import json
import math

import pytest

from alignkit.bench.grpo import build_prompts
from alignkit.cli import main

HAS_TRL = importlib.util.find_spec("trl") is not None


def test_grpo_prompts_are_distinct_chat_turns():
    rows = build_prompts(10)
    texts = [r["prompt"][0]["content"] for r in rows]
    assert len(set(texts)) == 10 and all(r["prompt"][0]["role"] == "user" for r in rows)


def test_bench_grpo_alignkit_side(tmp_path, capsys):
    out = tmp_path / "bench"
    assert main(["bench", "grpo", "--model", "tiny-random", "--steps", "2", "--max-new-tokens", "8",
                 "--only", "alignkit", "--output-dir", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "s / step" in printed and "alignkit" in printed
    rows = [json.loads(line) for line in (out / "alignkit-run" / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if "reward" in r]
    assert [r["step"] for r in steps] == [1, 2]
    assert all(0.0 <= r["reward"] <= 1.0 for r in steps)  # word_limit is a fraction
    assert "compute-bound time" in printed and "alignkit / bound" in printed and "ISA:" in printed
    result = json.loads((out / "bench.json").read_text())
    assert_limit_fields(result)
    assert result["flops"]["generation"] > 0 and 1 <= result["flops"]["decode_steps"] <= 2 * 7
    assert len(result["alignkit"]["completion_lengths"]) == 2


def assert_limit_fields(result: dict) -> None:
    """The machine, throughput, FLOPs and bound fields every bench writes."""
    assert result["machine"]["cpu"]["model"] and isinstance(result["machine"]["cpu"]["flags"], list)
    assert result["machine"]["throughput"]["float32"]["gflops"] > 0
    assert result["machine"]["bandwidth"]["read_gbs"] > 0
    assert result["flops"]["forward"] > 0 and result["flops"]["backward"] > 0
    assert result["bound"]["total_s"] > 0 and result["bound_shared_prompt"]["total_s"] <= result["bound"]["total_s"]
    a = result["alignkit"]
    assert a["bound_ratio"] == pytest.approx(a["train_s"] / result["bound"]["total_s"])


def test_bench_dpo_alignkit_side_first_loss_is_ln2(tmp_path, capsys):
    out = tmp_path / "bench"
    assert main(["bench", "dpo", "--model", "tiny-random", "--steps", "2", "--batch-size", "2",
                 "--max-length", "64", "--only", "alignkit", "--output-dir", str(out)]) == 0
    printed = capsys.readouterr().out
    line = next(ln for ln in printed.splitlines() if ln.startswith("alignkit"))
    first_loss = float(line.split()[-1])
    assert abs(first_loss - math.log(2)) < 1e-4
    result = json.loads((out / "bench.json").read_text())
    assert_limit_fields(result)
    assert result["flops"]["reference"] > 0 and result["flops"]["generation"] == 0
    assert "loop / bound" in (out / "bench.md").read_text()


def test_bench_unknown_model_is_one_line(tmp_path, capsys):
    for which in ("dpo", "grpo", "sample"):
        assert main(["bench", which, "--model", "no-such-model", "--output-dir", str(tmp_path / which)]) == 2
        err = capsys.readouterr().err
        assert "no-such-model" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("args", [["dpo", "--steps", "0"], ["dpo", "--batch-size", "0"], ["dpo", "--lora-r", "0"],
                                  ["grpo", "--num-generations", "0"], ["grpo", "--prompts-per-step", "-1"],
                                  ["sample", "--repeats", "0"], ["sample", "--prompts", "0"]])
def test_bench_counts_below_one_are_one_line_errors(args, tmp_path, capsys):
    # before: `bench dpo --steps 0` wrote an empty pairs file and ended in a traceback from the data loader
    assert main(["bench", *args, "--output-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"{args[1]} must be at least 1, got {args[2]}" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "pairs.jsonl").exists()


def test_bench_checkpointing_mode_reaches_the_alignkit_run(tmp_path):
    out = tmp_path / "bench"
    base = ["bench", "dpo", "--model", "tiny-random", "--steps", "1", "--batch-size", "1", "--max-length", "64",
            "--only", "alignkit", "--output-dir", str(out)]
    for flags, want in (([], False), (["--gradient-checkpointing"], "full"),
                        (["--gradient-checkpointing", "mlp"], "mlp")):
        assert main(base + flags) == 0
        assert json.loads((out / "bench.json").read_text())["settings"]["gradient_checkpointing"] == want
        config = (out / "alignkit-run" / "config.yaml").read_text()
        assert f"gradient_checkpointing: {str(want).lower()}" in config


def test_bench_dpo_sweep_alignkit_side(tmp_path, capsys):
    out = tmp_path / "bench"
    assert main(["bench", "dpo", "--model", "tiny-random", "--steps", "1", "--batch-size", "1",
                 "--prompt-tokens", "8", "--only", "alignkit", "--output-dir", str(out)] + ["--sweep"]) == 0
    points = json.loads((out / "sweep.json").read_text())
    assert [p["tokens"] for p in points] == [64, 128, 256]
    assert points[0]["bound_s"] < points[1]["bound_s"] < points[2]["bound_s"]  # more tokens, more FLOPs
    settings = json.loads((out / "sweep-256" / "bench.json").read_text())["settings"]
    assert settings["max_length"] > 256  # raised to fit 8 + 256 tokens and the chat template
    assert "scaling with answer length" in capsys.readouterr().out


@pytest.mark.skipif(not HAS_TRL, reason="needs the bench extra (trl)")
def test_bench_grpo_both_sides(tmp_path, capsys):
    out = tmp_path / "bench"
    assert main(["bench", "grpo", "--model", "tiny-random", "--steps", "2", "--max-new-tokens", "8",
                 "--output-dir", str(out)]) == 0
    result = json.loads((out / "bench.json").read_text())
    assert len(result["trl"]["rewards"]) == 2 and len(result["alignkit"]["rewards"]) == 2
    assert result["speedup_step_s"] == pytest.approx(result["trl"]["step_s"] / result["alignkit"]["step_s"])
    assert "time per step" in capsys.readouterr().out


def test_bench_sample_compares_the_samplers(tmp_path, capsys):
    out = tmp_path / "s"
    assert main(["bench", "sample", "--model", "tiny-random", "--prompts", "2", "--generations", "3",
                 "--max-new-tokens", "6", "--temperature", "0", "--repeats", "1", "--lora-r", "4",
                 "--output-dir", str(out)]) == 0
    result = json.loads((out / "bench.json").read_text())
    # both decode loops' greedy tokens are HF generate's, through an unmerged LoRA adapter too
    assert result["greedy_rows_equal_fast"] == result["greedy_rows_equal_lean"] == "6/6"
    assert result["settings"]["lora_r"] == 4
    assert result["completion_tokens"]["hf"] == result["completion_tokens"]["fast"] == 36
    assert result["completion_tokens"]["lean"] == 36
    assert result["speedup"] == pytest.approx(result["seconds"]["hf"] / result["seconds"]["fast"])
    assert result["lean_over_fast"] == pytest.approx(result["seconds"]["fast"] / result["seconds"]["lean"])
    # 6 rows x 6 tokens: one prefill per prompt, 5 decode steps for every row
    assert result["flops"]["decode_steps"] == 5 and result["bound"]["generation_s"] > 0
    assert "tokens/s" in capsys.readouterr().out and (out / "bench.md").is_file()
    assert main(["bench", "sample", "--model", "tiny-random", "--prompts", "0", "--output-dir", str(out)]) == 2
