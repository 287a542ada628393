"""Small data files and CLI runners shared by the tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

QA = [
    ("What is the capital of France?", "Paris."),
    ("Add 2 and 3.", "2 + 3 = 5."),
    ("Name a primary colour.", "Red is a primary colour."),
    ("Say hello in Spanish.", "Hola."),
    ("What is water made of?", "Hydrogen and oxygen."),
    ("How many legs does a spider have?", "Eight."),
    ("Spell 'cat' backwards.", "tac"),
    ("What comes after Monday?", "Tuesday."),
    ("Is the sun a star?", "Yes, the sun is a star."),
    ("Give me a synonym for happy.", "Joyful."),
    ("What is 10 divided by 2?", "5."),
    ("Which animal says moo?", "A cow."),
]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def sft_rows(n: int = 12, chat: bool = True) -> list[dict]:
    rows = []
    for i in range(n):
        q, a = QA[i % len(QA)]
        if chat:
            rows.append({"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]})
        else:
            rows.append({"prompt": q + "\n", "completion": a})
    return rows


def preference_rows(n: int = 12) -> list[dict]:
    rows = []
    for i in range(n):
        q, a = QA[i % len(QA)]
        rows.append({"prompt": [{"role": "user", "content": q}],
                     "chosen": [{"role": "assistant", "content": a}],
                     "rejected": [{"role": "assistant", "content": "I don't know."}]})
    return rows


def run_cli(*args: str, env: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "alignkit", *args], capture_output=True, text=True,
                          cwd=REPO, env=full_env, timeout=timeout)


def scrambled_tiny_random(seed: int):
    """tiny-random with large weights (N(0, 0.3²) in every matrix), so greedy continuations vary from
    prompt to prompt (plain tiny-random tends to echo); in eval mode."""
    import torch

    from alignkit.models import build_tiny_random

    model = build_tiny_random()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim == 2:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
    return model.eval()


class StubJudgeServer:
    """A tiny OpenAI-compatible server on 127.0.0.1 (a free port) for the tests: ``GET /v1/models`` and
    ``POST /v1/chat/completions``, answering ``reply(prompt_text, request_json) -> str``. Records the
    requests and their Authorization headers; ``fail_first`` answers HTTP 503 that many times first;
    ``delay`` sleeps before answering. Runs in a daemon thread; stop() (or the context manager) ends it,
    and every socket operation has a timeout, so it cannot outlive the test."""

    def __init__(self, reply, fail_first: int = 0, delay: float = 0.0, models=("stub-judge",)) -> None:
        self.reply, self.fail_first, self.delay, self.models = reply, fail_first, delay, list(models)
        self.requests: list[dict] = []
        self.auth: list[str | None] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            timeout = 5

            def log_message(self, *args):
                pass

            def _send(self, code, obj):
                body = json.dumps(obj).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                if self.path.endswith("/models"):
                    self._send(200, {"object": "list", "data": [{"id": m} for m in server.models]})
                else:
                    self._send(404, {"error": "not found"})

            def do_POST(self):
                data = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                server.requests.append(data)
                server.auth.append(self.headers.get("Authorization"))
                if server.delay:
                    time.sleep(server.delay)
                if server.fail_first > 0:
                    server.fail_first -= 1
                    self._send(503, {"error": "busy"})
                    return
                if not self.path.endswith("/chat/completions"):
                    self._send(404, {"error": "not found"})
                    return
                text = server.reply(data["messages"][-1]["content"], data)
                self._send(200, {"id": "x", "object": "chat.completion", "model": data["model"],
                                 "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                              "finish_reason": "stop"}]})

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.httpd.timeout = 1
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)
