"""Hub names (``model=org/name``, ``data=hf:org/name[:split]``) from a Hugging Face cache the tests build.

Nothing here touches the network: conftest sets ``HF_HUB_OFFLINE=1``; the one test of the download path
replaces ``huggingface_hub.snapshot_download`` and checks that it is asked to download only when allowed.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from alignkit.cli import main
from alignkit.data.io import DataError, read_rows
from alignkit.engine.logging import read_metrics
from alignkit.hub import hub_cache_dir, is_hub_name, network_allowed, split_name
from alignkit.models.loading import (
    ModelNotFoundError,
    build_tiny_random,
    load_model,
    load_tokenizer,
    resolve_model,
)
from alignkit.models.tokenizer import load_smollm2_tokenizer
from tests.helpers import sft_rows

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _snapshot(cache: Path, kind: str, repo: str) -> Path:
    """The hub cache layout: ``{kind}s--org--name/snapshots/<commit>/`` with ``refs/main`` -> commit."""
    root = cache / f"{kind}s--{repo.replace('/', '--')}"
    snap = root / "snapshots" / COMMIT
    snap.mkdir(parents=True)
    (root / "refs").mkdir()
    (root / "refs" / "main").write_text(COMMIT)
    return snap


@pytest.fixture
def hub(tmp_path, monkeypatch):
    cache = tmp_path / "hf" / "hub"
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf" / "datasets"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache


@pytest.fixture
def tiny_on_hub(hub):
    snap = _snapshot(hub, "model", "org/tiny")
    build_tiny_random().save_pretrained(snap)
    load_smollm2_tokenizer().save_pretrained(snap)
    return snap


def test_names_and_environment(hub, monkeypatch):
    assert hub_cache_dir() == hub
    monkeypatch.setenv("HF_HUB_CACHE", "/x/y")
    assert hub_cache_dir() == Path("/x/y")
    assert split_name("org/name@v1.0") == ("org/name", "v1.0") and split_name("org/name") == ("org/name", None)
    assert is_hub_name("HuggingFaceTB/SmolLM2-135M") and not is_hub_name("a/b/c") and not is_hub_name("tiny-random")
    assert not network_allowed()
    for value, allowed in (("0", True), ("", True), ("false", True), ("1", False), ("TRUE", False)):
        monkeypatch.setenv("HF_HUB_OFFLINE", value)
        assert network_allowed() is allowed


def test_model_from_cache_offline(tiny_on_hub):
    assert resolve_model("org/tiny") == tiny_on_hub
    assert resolve_model(f"org/tiny@{COMMIT}") == tiny_on_hub
    model = load_model("org/tiny")
    ref = build_tiny_random()
    assert all((a == b).all() for a, b in zip(model.state_dict().values(), ref.state_dict().values()))
    assert load_tokenizer("org/tiny").chat_template


def test_model_missing_offline_says_how_to_predownload(hub):
    with pytest.raises(ModelNotFoundError) as e:
        resolve_model("org/not-cached")
    msg = str(e.value)
    assert "\n" not in msg and "HF_HUB_OFFLINE" in msg and "hf download org/not-cached" in msg
    assert str(hub) in msg


def test_download_only_when_network_allowed(hub, tmp_path, monkeypatch):
    import huggingface_hub
    from huggingface_hub.errors import LocalEntryNotFoundError

    calls = []
    fetched = tmp_path / "fetched"

    def fake_snapshot_download(repo_id, **kw):
        calls.append(kw.get("local_files_only", False))
        if calls[-1]:
            raise LocalEntryNotFoundError("not cached")
        fetched.mkdir(exist_ok=True)
        build_tiny_random().config.save_pretrained(fetched)
        assert "*.safetensors" in kw["allow_patterns"] and not any(".bin" in p for p in kw["allow_patterns"])
        return str(fetched)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    with pytest.raises(ModelNotFoundError, match="HF_HUB_OFFLINE"):
        resolve_model("org/remote")
    assert calls == [True]  # offline: only the cache was asked
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    assert resolve_model("org/remote") == fetched
    assert calls == [True, True, False]  # cache first, then the download


def test_sft_run_on_cached_hub_model_and_dataset(tiny_on_hub, hub, tmp_path):
    data = _snapshot(hub, "dataset", "org/qa") / "data"
    data.mkdir()
    (data / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in sft_rows(8)))
    (data / "test.jsonl").write_text(json.dumps(sft_rows(1)[0]) + "\n")
    assert [n for n, _ in read_rows("hf:org/qa:test")] == [1]
    out = tmp_path / "run"
    rc = main(["sft", "model=org/tiny", "data=hf:org/qa", f"output_dir={out}", "max_steps=2", "batch_size=2",
               "max_length=64", "lr=1e-3"])
    assert rc == 0
    assert [r["step"] for r in read_metrics(out)] == [1, 2]
    assert json.loads((out / "final" / "alignkit.json").read_text())["base_model"] == "org/tiny"


def test_dataset_errors_are_one_line(hub, capsys):
    data = _snapshot(hub, "dataset", "org/qa") / "data"
    data.mkdir()
    (data / "train.jsonl").write_text(json.dumps({"prompt": "a", "completion": "b"}) + "\n")
    with pytest.raises(DataError, match="no split 'validation' .*has train"):
        read_rows("hf:org/qa:validation")
    with pytest.raises(DataError, match="expected hf:org/name"):
        read_rows("hf:not-a-name")
    rc = main(["sft", "model=tiny-random", "data=hf:org/absent", "max_steps=1"])
    err = capsys.readouterr().err.strip()
    assert rc != 0 and "Traceback" not in err
    assert "hf:org/absent" in err and "HF_HUB_OFFLINE" in err and "--repo-type dataset" in err
