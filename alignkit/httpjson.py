"""JSON over HTTP with timeouts and retries: the one client every OpenAI-compatible caller in alignkit
uses (the HTTP judge, the ``vllm-server`` rollout backend).

:func:`request_json` sends one request (``GET``, or ``POST`` with a JSON body) and returns the decoded
JSON answer. Each attempt waits at most ``timeout`` seconds; timeouts, HTTP 429 and 5xx answers and
dropped connections are retried ``retries`` times with exponential back-off (0.5, 1, 2, ... s, at most
8 s). Everything else fails at once. Failures raise ``error`` (default :class:`ServiceError`, a
:class:`~alignkit.config.ConfigError`: the command line prints it as one line) with a message that
starts with ``what`` and the URL, and never contains the API key.
"""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.request
from typing import Any

from alignkit.config import ConfigError

__all__ = ["ServiceError", "request_json"]


class ServiceError(ConfigError):
    """An HTTP service could not be reached or answered badly (the message names the URL)."""


def _backoff(attempt: int) -> float:
    """Seconds to wait before retry ``attempt`` (1-based): 0.5, 1, 2, 4, 8, 8, ..."""
    return min(8.0, 0.5 * 2 ** (attempt - 1))


def request_json(url: str, body: dict | None = None, *, method: str | None = None, timeout: float = 60.0,
                 retries: int = 2, api_key: str | None = None, what: str = "endpoint", auth_hint: str = "",
                 error: type[Exception] = ServiceError, text_ok: bool = False) -> Any:
    """Send ``body`` as JSON (``POST``; no body: ``GET``) to ``url`` and return the decoded JSON answer
    (``None`` for an empty 2xx answer; with ``text_ok`` a 2xx answer that is not JSON comes back as
    its text, as vLLM's LoRA routes answer). See the module docstring for timeouts and retries;
    ``auth_hint`` is appended to the message of an HTTP 401/403."""
    method = method or ("GET" if body is None else "POST")
    data = None if body is None else json.dumps(body).encode()
    headers = {"Accept": "application/json"}
    if data is not None:
        headers["Content-Type"] = "application/json"
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    last = ""
    for attempt in range(max(0, int(retries)) + 1):
        if attempt:
            time.sleep(_backoff(attempt))
        req = urllib.request.Request(url, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as e:
            detail = _error_detail(e)
            if e.code in (401, 403):
                raise error(f"{what} {url} refused the request (HTTP {e.code}{detail}){auth_hint}") from None
            if e.code == 429 or e.code >= 500:
                last = f"HTTP {e.code}{detail}"
                continue
            raise error(f"{what} {url} answered HTTP {e.code}{detail}") from None
        except urllib.error.URLError as e:
            reason = e.reason
            if isinstance(reason, ConnectionRefusedError):
                raise error(f"cannot reach the {what} {url}: connection refused (is the server running, and are "
                            "host and port right?)") from None
            if isinstance(reason, TimeoutError):
                last = f"no answer within {timeout:g} s"
                continue
            if isinstance(reason, socket.gaierror):
                raise error(f"cannot reach the {what} {url}: unknown host ({reason})") from None
            last = str(reason)
            continue
        except TimeoutError:
            last = f"no answer within {timeout:g} s"
            continue
        except (ConnectionError, OSError) as e:
            last = f"{type(e).__name__}: {e}"
            continue
        if not raw.strip():
            return None
        try:
            return json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            if text_ok:
                return raw.decode("utf-8", "replace")
            raise error(f"{what} {url} did not answer with JSON: {raw[:200]!r}") from None
    raise error(f"{what} {url} failed after {max(0, int(retries)) + 1} attempt(s): {last}")


def _error_detail(e: urllib.error.HTTPError) -> str:
    try:
        body = e.read()[:300].decode("utf-8", "replace").strip()
    except Exception:  # noqa: BLE001
        body = ""
    return f": {body}" if body else ""
