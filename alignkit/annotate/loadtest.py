"""``alignkit annotate loadtest``: simulated annotators against a real server on loopback.

Fills a fresh database with ``--tasks`` synthetic pairwise tasks, creates ``--annotators`` annotators,
starts ``alignkit annotate serve`` as a subprocess on a free 127.0.0.1 port, and runs one thread per
annotator for ``--seconds``: GET the page with its next task, POST a judgement (key 1 or 2), repeat.
First it times 100 page loads by a single annotator on the idle server (the page-render figure).
Afterwards it checks the database against what the clients were told: every acknowledged judgement
is there, none twice, nothing extra. Traffic goes only to 127.0.0.1 and stops by itself.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from typing import Any

from alignkit.annotate.db import Store, TaskIn

FIELD = re.compile(r'name="(csrf|task_id)" value="([^"]*)"')


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


class Annotator:
    """One simulated annotator on a keep-alive connection; times each request in milliseconds."""

    def __init__(self, port: int, token: str, seed: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.cookie = f"alignkit_annotator={token}"
        self.rng = random.Random(seed)
        self.page_ms: list[float] = []
        self.post_ms: list[float] = []
        self.acked: list[int] = []
        self.errors = 0

    def _send(self, method: str, path: str, body: str | None = None) -> tuple[int, str]:
        headers = {"Cookie": self.cookie}
        if body is not None:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        self.conn.request(method, path, body=body, headers=headers)
        r = self.conn.getresponse()
        return r.status, r.read().decode()

    def page(self) -> dict[str, str] | None:
        t0 = time.perf_counter()
        status, html = self._send("GET", "/")
        self.page_ms.append((time.perf_counter() - t0) * 1000)
        fields = dict(FIELD.findall(html))
        return fields if status == 200 and "task_id" in fields else None

    def judge(self, fields: dict[str, str]) -> None:
        body = urllib.parse.urlencode({**fields, "choice": self.rng.choice("12")})
        t0 = time.perf_counter()
        status, _ = self._send("POST", "/judge", body)
        self.post_ms.append((time.perf_counter() - t0) * 1000)
        if status == 303:
            self.acked.append(int(fields["task_id"]))
        else:
            self.errors += 1

    def run(self, until: float) -> None:
        while time.time() < until:
            fields = self.page()
            if fields is None:
                return
            self.judge(fields)


def prepare(url: str, n_tasks: int, n_annotators: int) -> tuple[Store, list[str]]:
    store = Store(url)
    if store.counts()["tasks"]:
        store.close()
        raise SystemExit(f"error: {url} already holds tasks; the load test needs a fresh database")
    t0 = time.time()
    store.add_tasks([TaskIn(f"Load-test prompt {i}: explain item {i}.", [f"Answer one to {i}.", f"Answer two to {i}."],
                            "loadtest") for i in range(n_tasks)], chunk=5000)
    print(f"added {n_tasks} tasks in {time.time() - t0:.1f} s", file=sys.stderr)
    return store, [store.add_annotator(f"load{i}") for i in range(n_annotators)]


def run_load(url: str, annotators: int = 20, seconds: float = 60.0, tasks: int = 100_000,
             overlap: int = 1) -> dict[str, Any]:
    """Run the load test against ``url`` (a fresh database); returns the figures."""
    store, tokens = prepare(url, tasks, annotators)
    port = _free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    server = subprocess.Popen([sys.executable, "-m", "alignkit", "annotate", "serve", "--db", url, "--port", str(port),
                               "--overlap", str(overlap)], stdout=subprocess.DEVNULL, env=env)
    try:
        for _ in range(300):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        idle = Annotator(port, tokens[0], seed=-1)
        for _ in range(100):
            idle.page()
        sims = [Annotator(port, tok, seed=i) for i, tok in enumerate(tokens)]
        start = time.time()
        threads = [threading.Thread(target=s.run, args=(start + seconds,)) for s in sims]
        for t in threads:
            t.start()
        for t in threads:
            t.join(seconds + 120)
        elapsed = time.time() - start
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(30)
    acked = [(i, task) for i, s in enumerate(sims) for task in s.acked]
    judged = [(j["annotator"], j["task_id"]) for j in store.iter_judgements()]
    stored = {(int(name.removeprefix("load")), task) for name, task in judged}
    pages = [ms for s in sims for ms in s.page_ms]
    posts = [ms for s in sims for ms in s.post_ms]
    store.close()
    return {
        "db": store.engine.dialect.name, "tasks": tasks, "annotators": annotators, "seconds": round(elapsed, 1),
        "requests": len(pages) + len(posts), "requests_per_s": round((len(pages) + len(posts)) / elapsed, 1),
        "judgements_per_s": round(len(acked) / elapsed, 1),
        "page_ms_p50": round(_quantile(pages, 0.5), 1), "page_ms_p99": round(_quantile(pages, 0.99), 1),
        "post_ms_p50": round(_quantile(posts, 0.5), 1), "post_ms_p99": round(_quantile(posts, 0.99), 1),
        "idle_page_ms_p50": round(_quantile(idle.page_ms, 0.5), 1),
        "idle_page_ms_p99": round(_quantile(idle.page_ms, 0.99), 1),
        "acknowledged": len(acked), "stored": len(judged), "lost": len(set(acked) - stored),
        "doubled": len(judged) - len(set(judged)), "unacknowledged_extra": len(stored - set(acked)),
        "errors": sum(s.errors for s in sims),
    }


def main(args: Any) -> int:
    figures = run_load(args.db, args.annotators, args.seconds, args.tasks, args.overlap)
    print(json.dumps(figures, indent=2))
    if args.json:
        from alignkit.files import write_json

        write_json(args.json, figures)
    ok = figures["lost"] == 0 and figures["doubled"] == 0 and figures["unacknowledged_extra"] == 0
    print("no judgement lost or doubled" if ok else "MISMATCH between acknowledged and stored judgements",
          file=sys.stderr)
    return 0 if ok else 1
