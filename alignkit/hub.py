"""Hugging Face Hub names (``org/name``): the local cache first, a download only when the network is allowed.

The rule every Hugging Face tool follows, read at call time (not at import) so a test or a caller can set it:

* the cache is ``$HF_HUB_CACHE``, else ``$HF_HOME/hub``, else ``~/.cache/huggingface/hub``, in the
  layout ``models--org--name/{refs/main, snapshots/<commit>/...}`` (``datasets--org--name`` for data);
* a snapshot found there is used as it is, with no network access;
* otherwise it is downloaded when ``HF_HUB_OFFLINE`` is unset or false, and refused with a one-line error
  that says how to pre-download it when it is set.

The embedded model and ``tiny-random`` never come here.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

#: ``org/name`` with an optional ``@revision``; a path that exists on disk always wins over a hub name
HUB_NAME = re.compile(r"^(?P<repo>[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*)(?:@(?P<rev>[\w./-]+))?$")
_FALSE = {"", "0", "false", "no", "off"}

#: files a model snapshot needs: config, safetensors weights, tokenizer, chat template (never *.bin / *.pt)
MODEL_FILES = ["*.json", "*.safetensors", "*.txt", "*.model", "*.jinja", "tokenizer*"]


class HubUnavailable(FileNotFoundError):
    """A hub name that is neither in the local cache nor allowed to be downloaded (or failed to)."""


def is_hub_name(text: str) -> bool:
    """True for ``org/name`` (or ``org/name@rev``) that does not exist as a local path."""
    return bool(HUB_NAME.match(text)) and not Path(text).expanduser().exists()


def split_name(text: str) -> tuple[str, str | None]:
    """``"org/name@rev"`` -> ``("org/name", "rev")``; no revision means the ``main`` ref."""
    m = HUB_NAME.match(text)
    if m is None:
        raise ValueError(f"'{text}' is not a hub name of the form org/name[@revision]")
    return m.group("repo"), m.group("rev")


def hub_cache_dir() -> Path:
    """The Hugging Face hub cache this process uses (``HF_HUB_CACHE``, ``HF_HOME``, default)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "huggingface"
    return Path(home).expanduser() / "hub"


def network_allowed() -> bool:
    """False when ``HF_HUB_OFFLINE`` is set to a true value (1, true, yes, on)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _FALSE


def predownload_hint(repo: str, repo_type: str) -> str:
    kind = " --repo-type dataset" if repo_type == "dataset" else ""
    return (f"pre-download it on a machine with network access (`hf download {repo}{kind}`, the same cache "
            f"layout under HF_HOME), or unset HF_HUB_OFFLINE to let alignkit download it")


def snapshot(name: str, repo_type: str = "model", allow_patterns: list[str] | None = None) -> Path:
    """The local snapshot directory of hub name ``name`` (``org/name[@rev]``), cache first.

    Raises :class:`HubUnavailable` with a one-line message when it is not cached and the network is
    off, or when the download fails (no such repository, no network, gated).
    """
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    repo, rev = split_name(name)
    cache = hub_cache_dir()
    what = "dataset" if repo_type == "dataset" else "model"
    try:
        return Path(snapshot_download(repo, repo_type=repo_type, revision=rev, cache_dir=str(cache),
                                      local_files_only=True, allow_patterns=allow_patterns))
    except LocalEntryNotFoundError:
        pass
    except (OSError, ValueError) as e:
        raise HubUnavailable(f"{what} '{name}': the cached snapshot in {cache} is unreadable ({_one_line(e)})") from e
    if not network_allowed():
        raise HubUnavailable(f"{what} '{name}' is not in the local Hugging Face cache ({cache}) and HF_HUB_OFFLINE "
                             f"forbids downloading it; {predownload_hint(repo, repo_type)}")
    try:
        return Path(snapshot_download(repo, repo_type=repo_type, revision=rev, cache_dir=str(cache),
                                      allow_patterns=allow_patterns))
    except Exception as e:  # noqa: BLE001 - hub/network errors come in many types; all mean "not available"
        raise HubUnavailable(f"{what} '{name}': not in the local cache ({cache}) and the download failed: "
                             f"{type(e).__name__}: {_one_line(e)}") from e


def _one_line(error: BaseException, limit: int = 300) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."
