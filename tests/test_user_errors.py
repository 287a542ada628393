"""Errors a user can cause with paths (a damaged model file, an output_dir that is a file, a damaged
checkpoint): each is one line on stderr naming the path and a non-zero exit, never a traceback."""

from __future__ import annotations

import pytest

from alignkit.cli import main
from alignkit.config import ConfigError, SFTConfig
from tests.helpers import run_cli, sft_rows, write_jsonl


@pytest.fixture(scope="module")
def sft_data(tmp_path_factory):
    d = tmp_path_factory.mktemp("data")
    return write_jsonl(d / "sft.jsonl", sft_rows(8))


def _sft(*args: str) -> int:
    return main(["sft", "model=tiny-random", "lr=1e-3", "batch_size=2", "max_length=64", *args])


def _one_line_error(err: str, *must_contain: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, err
    assert "Traceback" not in err, err
    for text in must_contain:
        assert text in lines[0], (text, lines[0])
    return lines[0]


# ----------------------------------------------------------------------------- 4a: damaged .gguf


def _damaged_ggufs(tmp_path):
    from alignkit.models import embedded_gguf_path

    real = embedded_gguf_path().read_bytes()
    files = {
        "truncated": real[:2_000_000],       # a download cut short: metadata fine, tensors missing
        "cut_in_metadata": real[:100_000],   # cut inside the metadata block
        "bad_version": b"GGUF" + bytes([0x88, 0x88, 0xB8, 0x8C]) + bytes(range(200)),
        "not_gguf": b"hello, I am not a model\n",
        "empty": b"",
    }
    out = {}
    for name, blob in files.items():
        p = tmp_path / f"{name}.gguf"
        p.write_bytes(blob)
        out[name] = p
    return out


def test_damaged_gguf_is_one_line_error(sft_data, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("ALIGNKIT_CACHE", str(tmp_path / "cache"))
    for name, path in _damaged_ggufs(tmp_path).items():
        rc = main(["sft", f"model={path}", f"data={sft_data}", f"output_dir={tmp_path / name}", "max_steps=1"])
        line = _one_line_error(capsys.readouterr().err, str(path))
        assert rc == 2, (name, line)
        assert "gguf" in line.lower(), line
        assert not (tmp_path / name).exists()  # stopped before the run directory was made
    # nothing half-converted is left in the cache
    assert not [p for p in (tmp_path / "cache").rglob("*") if p.is_file() and p.suffix == ".safetensors"]


def test_damaged_gguf_in_other_commands(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("ALIGNKIT_CACHE", str(tmp_path / "cache"))
    path = _damaged_ggufs(tmp_path)["truncated"]
    prompts = write_jsonl(tmp_path / "prompts.jsonl", [{"prompt": "Hi"}])
    rc = main(["generate", "--model", str(path), "--prompts", str(prompts)])
    err = capsys.readouterr().err
    assert rc != 0 and "Traceback" not in err
    assert str(path) in err and len([ln for ln in err.splitlines() if str(path) in ln]) == 1


def test_damaged_gguf_subprocess_no_traceback(sft_data, tmp_path):
    path = _damaged_ggufs(tmp_path)["bad_version"]
    proc = run_cli("sft", f"model={path}", f"data={sft_data}", f"output_dir={tmp_path / 'run'}",
                   env={"ALIGNKIT_CACHE": str(tmp_path / "cache")})
    assert proc.returncode == 2, proc.stderr[-3000:]
    _one_line_error(proc.stderr, str(path))


def test_damaged_safetensors_model_dir(sft_data, tmp_path, capsys):
    from alignkit.models import build_tiny_random, load_smollm2_tokenizer, save_model

    model_dir = tmp_path / "model"
    save_model(build_tiny_random(), load_smollm2_tokenizer(), model_dir, base_name="tiny-random")
    weights = next(model_dir.glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:5000])
    rc = main(["sft", f"model={model_dir}", f"data={sft_data}", f"output_dir={tmp_path / 'run'}", "max_steps=1"])
    assert rc == 2
    _one_line_error(capsys.readouterr().err, str(model_dir))


# ----------------------------------------------------------------------------- 4b: output_dir is a file


def test_output_dir_that_is_a_file(sft_data, tmp_path, capsys):
    target = tmp_path / "notes.txt"
    content = b"my precious notes\n\x00\x01binary too"
    target.write_bytes(content)
    for out in (target, target / "sub"):
        assert _sft(f"data={sft_data}", f"output_dir={out}", "max_steps=1") == 2
        line = _one_line_error(capsys.readouterr().err, str(target), "output_dir")
        assert "file" in line
        assert target.read_bytes() == content
    # resume=true on it too: the same error, not "no checkpoint"
    assert _sft(f"data={sft_data}", f"output_dir={target}", "max_steps=1", "resume=true") == 2
    _one_line_error(capsys.readouterr().err, str(target), "output_dir")
    assert target.read_bytes() == content


def test_output_dir_file_checked_by_trainer_before_loading(sft_data, tmp_path, monkeypatch):
    """The programmatic path (Trainer) refuses it too, before the tokenizer or model is loaded."""
    from alignkit import models
    from alignkit.engine.trainer import Trainer
    from alignkit.methods.sft import SFT

    target = tmp_path / "file"
    target.write_bytes(b"x")

    def boom(*a, **k):
        raise AssertionError("loaded a tokenizer before checking output_dir")

    monkeypatch.setattr(models, "load_tokenizer", boom)
    cfg = SFTConfig(model="tiny-random", data=str(sft_data), output_dir=str(target), max_steps=1)
    with pytest.raises(ConfigError, match="output_dir"):
        Trainer(SFT, cfg)
    assert target.read_bytes() == b"x"


def test_output_dir_file_subprocess(sft_data, tmp_path):
    target = tmp_path / "file.bin"
    target.write_bytes(b"\x00keep me")
    proc = run_cli("sft", "model=tiny-random", f"data={sft_data}", f"output_dir={target}", "max_steps=1")
    assert proc.returncode == 2, proc.stderr[-3000:]
    _one_line_error(proc.stderr, str(target))
    assert target.read_bytes() == b"\x00keep me"


# ----------------------------------------------------------------------------- 4c: damaged checkpoint


def _truncate(path, keep=None):
    data = path.read_bytes()
    path.write_bytes(data[: (len(data) // 2 if keep is None else keep)])


def test_resume_from_truncated_checkpoint_names_older_one(sft_data, tmp_path, capsys):
    out = tmp_path / "run"
    common = [f"data={sft_data}", f"output_dir={out}", "save_steps=2"]
    assert _sft(*common, "max_steps=4") == 0
    step2, step4 = out / "checkpoints" / "step-2", out / "checkpoints" / "step-4"
    assert step2.is_dir() and step4.is_dir()
    _truncate(step4 / "trainable.safetensors")
    capsys.readouterr()

    assert _sft(*common, "max_steps=6", "resume=true") == 2
    line = _one_line_error(capsys.readouterr().err, str(step4), str(step2), f"resume={step2}", "trainable.safetensors")
    assert "damaged" in line

    # resume=PATH to the damaged checkpoint says the same
    assert _sft(*common, "max_steps=6", f"resume={step4}") == 2
    _one_line_error(capsys.readouterr().err, str(step4), f"resume={step2}")

    # and the advice works
    assert _sft(*common, "max_steps=6", f"resume={step2}") == 0
    assert (out / "checkpoints" / "step-6").is_dir()


def test_resume_damaged_only_checkpoint(sft_data, tmp_path, capsys):
    out = tmp_path / "run"
    common = [f"data={sft_data}", f"output_dir={out}"]
    assert _sft(*common, "max_steps=2") == 0
    ckpt = out / "checkpoints" / "step-2"
    _truncate(ckpt / "trainable.safetensors", keep=6)
    capsys.readouterr()
    assert _sft(*common, "max_steps=4", "resume=true") == 2
    line = _one_line_error(capsys.readouterr().err, str(ckpt))
    assert "no older" in line


@pytest.mark.parametrize("damage", ["optimizer.pt", "state.json", "scheduler.json", "rng.pt", "missing"])
def test_resume_other_damaged_files(sft_data, tmp_path, capsys, damage):
    out = tmp_path / "run"
    common = [f"data={sft_data}", f"output_dir={out}", "save_steps=1"]
    assert _sft(*common, "max_steps=2") == 0
    step1, step2 = out / "checkpoints" / "step-1", out / "checkpoints" / "step-2"
    if damage == "missing":
        (step2 / "trainable.safetensors").unlink()
    else:
        _truncate(step2 / damage)
    capsys.readouterr()
    assert _sft(*common, "max_steps=3", "resume=true") == 2
    _one_line_error(capsys.readouterr().err, str(step2), f"resume={step1}")


def test_resume_damaged_checkpoint_subprocess(sft_data, tmp_path):
    out = tmp_path / "run"
    common = ["sft", "model=tiny-random", "batch_size=2", "max_length=64", f"data={sft_data}", f"output_dir={out}"]
    assert _sft(*common[1:], "max_steps=1") == 0
    ckpt = out / "checkpoints" / "step-1"
    _truncate(ckpt / "trainable.safetensors")
    proc = run_cli(*common, "max_steps=2", "resume=true")
    assert proc.returncode == 2, proc.stderr[-3000:]
    _one_line_error(proc.stderr, str(ckpt))


def test_load_checkpoint_itself_reports_damage_and_restores_nothing(tmp_path):
    """The backstop without the early check: load_checkpoint reads every file before restoring any."""
    import torch

    from alignkit.engine.checkpoint import ResumeError, load_checkpoint, save_checkpoint
    from alignkit.engine.schedule import build_scheduler

    def parts():
        model = torch.nn.Linear(4, 4)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        return model, opt, build_scheduler(opt, 10, 0, "linear")

    model, opt, sched = parts()
    model(torch.randn(2, 4)).sum().backward()
    opt.step()
    for step in (1, 2):
        save_checkpoint(tmp_path, step, model, opt, sched)
    ckpt = tmp_path / "checkpoints" / "step-2"
    _truncate(ckpt / "optimizer.pt")
    fresh, fresh_opt, fresh_sched = parts()
    before = {k: v.clone() for k, v in fresh.state_dict().items()}
    with pytest.raises(ResumeError) as e:
        load_checkpoint(ckpt, fresh, fresh_opt, fresh_sched)
    msg = str(e.value)
    assert "\n" not in msg and str(ckpt) in msg and "optimizer.pt" in msg
    assert f"resume={tmp_path / 'checkpoints' / 'step-1'}" in msg
    assert all(torch.equal(before[k], v) for k, v in fresh.state_dict().items())  # nothing half-restored


def test_model_load_error_is_caught_where_model_not_found_is():
    from alignkit.models import ModelNotFoundError
    from alignkit.models.loading import ModelLoadError

    assert issubclass(ModelLoadError, ModelNotFoundError)


@pytest.mark.parametrize("args, flag, bad", [
    (["generate", "--model", "tiny-random", "--prompts", "{prompts}", "--output", "{dir}"], "--output", "{dir}"),
    (["score", "--model", "tiny-random", "--data", "{prompts}", "--output", "{dir}"], "--output", "{dir}"),
    (["eval", "--model", "tiny-random", "--prompts", "{prompts}", "--output-dir", "{file}"], "--output-dir", "{file}"),
    (["compare", "--model", "tiny-random", "--output-dir", "{file}/sub"], "--output-dir", "{file}/sub"),
    (["weak-to-strong", "--weak", "tiny-random", "--strong", "tiny-random", "--train", "{prompts}", "--eval",
      "{prompts}", "--output-dir", "{file}"], "--output-dir", "{file}"),
    (["data", "safety", "--output", "{file}/rows.jsonl"], "--output", "{file}/rows.jsonl"),
    (["report", "{dir}", "--output", "{dir}"], "--output", "{dir}"),
])
def test_output_paths_that_cannot_be_written_fail_before_any_work(args, flag, bad, tmp_path, capsys):
    # before: generate/eval/compare ran the whole job, then crashed writing (IsADirectoryError, FileExistsError)
    existing_file = tmp_path / "notes.txt"
    existing_file.write_text("keep me\n")
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"prompt": "hi"}\n')
    fill = {"prompts": str(prompts), "dir": str(tmp_path), "file": str(existing_file)}
    argv = [a.format(**fill) for a in args]
    assert main(argv) == 2
    line = _one_line_error(capsys.readouterr().err, f"{flag} '{bad.format(**fill)}'", "left untouched")
    assert ("existing directory" in line) if bad == "{dir}" else ("existing file" in line)
    assert existing_file.read_text() == "keep me\n"


def test_eval_default_output_dir_checked_before_any_work(tmp_path, capsys, monkeypatch):
    # without --output-dir, eval writes to ./eval-results (or RUN/eval): a file there used to end the run in a
    # traceback after every answer was generated
    import alignkit.evaluation.runner as runner

    monkeypatch.chdir(tmp_path)
    (tmp_path / "eval-results").write_text("keep me\n")
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"prompt": "hi"}\n')
    monkeypatch.setattr(runner, "evaluate_models", lambda *a, **k: pytest.fail("evaluated before the path check"))
    assert main(["eval", "--model", "tiny-random", "--prompts", str(prompts)]) == 2
    line = _one_line_error(capsys.readouterr().err, "--output-dir 'eval-results'", "existing file")
    assert "choose another --output-dir" in line
    assert (tmp_path / "eval-results").read_text() == "keep me\n"


def test_check_output_path_by_case(tmp_path):
    from alignkit.files import OutputPathError, check_output_path, output_path_problem

    f = tmp_path / "f.txt"
    f.write_text("x")
    check_output_path(tmp_path / "new" / "out.jsonl", "--output")  # missing parents are fine
    check_output_path(tmp_path, "--output-dir", directory=True)
    with pytest.raises(OutputPathError, match="is an existing directory, not a file"):
        check_output_path(tmp_path, "--output")
    with pytest.raises(OutputPathError, match="is an existing file, not a directory"):
        check_output_path(f, "--output-dir", directory=True)
    with pytest.raises(OutputPathError, match=r"lies inside '.*f\.txt', an existing file \(left untouched\)"):
        check_output_path(f / "a" / "b.jsonl", "--output")
    assert output_path_problem(None, "--output") is None
    assert output_path_problem(f, "--output") is None  # an existing file is replaced atomically
