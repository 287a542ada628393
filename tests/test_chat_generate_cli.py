"""`alignkit chat` and `alignkit generate` on tiny-random."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from alignkit.commands import chat, generate

REPO = Path(__file__).resolve().parents[1]


def run_chat(monkeypatch, capsys, argv, stdin_text):
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin_text))
    rc = chat.main(argv)
    out = capsys.readouterr()
    return rc, out.out, out.err


@pytest.fixture
def spy_generate(monkeypatch):
    """Replace the model call with a recorder; the REPL logic is what is under test."""
    import alignkit.generation

    calls = []

    def fake(model, tokenizer, prompts, **kwargs):
        calls.append([list(map(dict, p)) for p in prompts])
        return [f"reply {len(calls)}"]

    monkeypatch.setattr(alignkit.generation, "generate", fake)
    return calls


def test_chat_keeps_history_and_resets(monkeypatch, capsys, spy_generate):
    rc, out, err = run_chat(monkeypatch, capsys, ["--model", "tiny-random", "--system", "Be brief."],
                            "hello\nand then?\n\n/reset\nagain\n/exit\nnever read\n")
    assert rc == 0
    assert out.split("\n\n")[:3] == ["reply 1", "reply 2", "reply 3"]
    assert "never read" not in out and len(spy_generate) == 3
    assert spy_generate[0] == [[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hello"}]]
    assert spy_generate[1][0] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "hello"},
        {"role": "assistant", "content": "reply 1"},
        {"role": "user", "content": "and then?"},
    ]
    assert spy_generate[2][0] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "again"}]
    assert "cleared" in err


def test_chat_real_model_until_eof(monkeypatch, capsys):
    rc, out, _ = run_chat(monkeypatch, capsys, ["--model", "tiny-random", "--max-new-tokens", "4"], "hi\nthere\n")
    assert rc == 0
    assert out.count("\n\n") >= 2  # one reply (and a blank line) per turn


def test_chat_help_and_errors(monkeypatch, capsys):
    assert chat.main(["--help"]) == 0
    assert "--max-new-tokens" in capsys.readouterr().out
    rc, _, err = run_chat(monkeypatch, capsys, ["--model", "org/some-hub-model"], "hi\n")
    assert rc == 2 and "HF_HUB_OFFLINE" in err
    assert chat.main(["--temperature", "abc"]) == 2


@pytest.mark.slow  # a fresh interpreter costs ~8 s; the monkeypatched-stdin tests cover the same REPL
def test_chat_piped_subprocess():
    code = "import sys; from alignkit.commands.chat import main; sys.exit(main())"
    proc = subprocess.run(
        [sys.executable, "-c", code, "--model", "tiny-random", "--max-new-tokens", "3"],
        input="hello\n/reset\nbye\n/exit\n", capture_output=True, text=True, cwd=REPO, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("\n\n") == 2
    assert "Traceback" not in proc.stderr


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_batch_size_is_a_number_or_auto(tmp_path, capsys):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("What is 2+2?\n")
    out = tmp_path / "auto.jsonl"
    assert generate.main(["--model", "tiny-random", "--prompts", str(prompts), "--output", str(out),
                          "--max-new-tokens", "3", "--batch-size", "auto"]) == 0
    assert len(read_jsonl(out)) == 1
    for bad in ("0", "-2", "many"):
        capsys.readouterr()
        assert generate.main(["--model", "tiny-random", "--prompts", str(prompts), "--batch-size", bad]) == 2
        err = capsys.readouterr().err
        assert f"expected a whole number >= 1 or auto, got '{bad}'" in err and "Traceback" not in err


def test_generate_txt_to_file(tmp_path, capsys):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("What is 2+2?\n\nName a colour.\n")
    out = tmp_path / "out" / "completions.jsonl"
    rc = generate.main(["--model", "tiny-random", "--prompts", str(prompts), "--output", str(out),
                        "--max-new-tokens", "4", "--batch-size", "1"])
    assert rc == 0
    rows = read_jsonl(out)
    # .txt lines are user turns: written as messages, the completion as an assistant message
    assert [r["prompt"] for r in rows] == [[{"role": "user", "content": "What is 2+2?"}],
                                           [{"role": "user", "content": "Name a colour."}]]
    assert all(r["completion"][0]["role"] == "assistant" for r in rows)
    assert "wrote 2 completions" in capsys.readouterr().err


def test_generate_rows_read_back_to_the_sampled_tokens(tmp_path):
    """A file `alignkit generate` writes tokenises (as training data) to the prompt it sampled from."""
    from alignkit.data import load_examples, tokenize_sft
    from alignkit.data.render import render_prompt
    from alignkit.models import load_tokenizer

    tok = load_tokenizer("tiny-random")
    prompts = tmp_path / "p.jsonl"
    prompts.write_text(json.dumps({"prompt": "Say hi."}) + "\n")
    for mode, conversational in (("auto", False), ("always", True)):
        out = tmp_path / f"{mode}.jsonl"
        assert generate.main(["--model", "tiny-random", "--prompts", str(prompts), "--output", str(out),
                              "--max-new-tokens", "8", "--temperature", "1.0", "--seed", "0",
                              "--chat-template", mode]) == 0
        row = read_jsonl(out)[0]
        assert isinstance(row["prompt"], list) == conversational
        sampled = render_prompt(tok, "Say hi.", mode).ids
        ex = tokenize_sft(load_examples(out, ("prompt_completion",)), tok, 256)[0]
        n_prompt = sum(1 for x in ex["labels"] if x == -100)
        assert ex["input_ids"][:n_prompt] == sampled


def test_generate_jsonl_to_stdout(tmp_path, capsys):
    prompts = tmp_path / "p.jsonl"
    rows = [{"prompt": "Say hi.", "chosen": "hi", "rejected": "no"},
            {"prompt": [{"role": "user", "content": "Say bye."}]}]
    prompts.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    rc = generate.main(["--model", "tiny-random", "--prompts", str(prompts), "--max-new-tokens", "3",
                        "--temperature", "0.8", "--seed", "1"])
    assert rc == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [x["prompt"] for x in lines] == ["Say hi.", [{"role": "user", "content": "Say bye."}]]
    assert set(lines[0]) == {"prompt", "completion"}
    # a string prompt is plain text (TRL's convention), a message list is a conversation
    assert isinstance(lines[0]["completion"], str) and lines[1]["completion"][0]["role"] == "assistant"


def test_generate_errors(tmp_path, capsys):
    rc = generate.main(["--model", "tiny-random", "--prompts", str(tmp_path / "missing.jsonl")])
    assert rc == 2 and "not found" in capsys.readouterr().err
    prompts = tmp_path / "p.txt"
    prompts.write_text("hi\n")
    rc = generate.main(["--model", str(tmp_path / "no-model"), "--prompts", str(prompts)])
    err = capsys.readouterr().err
    assert rc == 2 and "no such model name" in err and "Traceback" not in err
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"prompt": "ok"}) + "\n" + json.dumps({"question": "no prompt"}) + "\n")
    rc = generate.main(["--model", "tiny-random", "--prompts", str(bad)])
    err = capsys.readouterr().err
    assert rc == 2 and "bad.jsonl" in err and "2" in err and "prompt" in err
    empty = tmp_path / "empty.txt"
    empty.write_text("\n")
    assert generate.main(["--model", "tiny-random", "--prompts", str(empty)]) == 2
    assert generate.main(["--help"]) == 0
    assert "--prompts" in capsys.readouterr().out
    assert generate.main(["--model", "tiny-random"]) == 2  # --prompts is required
