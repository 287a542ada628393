"""Helpers for the annotate tests: a server on a loopback port, a cookie-keeping HTTP client, and a
throw-away PostgreSQL server (initdb + pg_ctl on a temp dir)."""

from __future__ import annotations

import contextlib
import glob
import http.cookiejar
import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running(app) -> Iterator[str]:
    """Serve ``app`` with uvicorn in a thread on a free loopback port; yields the base URL."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    wait_for(url)
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(10)


def wait_for(url: str, timeout: float = 30.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url + "/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer in {timeout} s")


class Client:
    """A browser-like HTTP client: keeps cookies, follows redirects, returns (status, body)."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))

    def request(self, path: str, data: dict | bytes | None = None, headers: dict | None = None) -> tuple[int, str]:
        body = urllib.parse.urlencode(data).encode() if isinstance(data, dict) else data
        req = urllib.request.Request(self.base + path, data=body, headers=headers or {})
        try:
            with self.opener.open(req, timeout=30) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def get(self, path: str = "/") -> tuple[int, str]:
        return self.request(path)

    def post(self, path: str, data: dict) -> tuple[int, str]:
        return self.request(path, data)


def form_fields(html: str) -> dict[str, str]:
    """The hidden csrf and task_id of a judging page."""
    out = {}
    for name in ("csrf", "task_id"):
        m = re.search(rf'name="{name}" value="([^"]*)"', html)
        if m:
            out[name] = m.group(1)
    return out


def require(what: str, reason: str) -> None:
    """Skip locally with a printed reason; under CI (where .ci/run installs it) fail loudly instead."""
    if os.environ.get("CI"):
        pytest.fail(f"{what} is missing under CI (.ci/run should have installed it): {reason}")
    print(f"SKIP: {what}: {reason}")
    pytest.skip(f"{what}: {reason}")


def _pg_bin() -> str | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return os.path.dirname(found[-1])
    initdb = shutil.which("initdb")
    return os.path.dirname(initdb) if initdb else None


@contextlib.contextmanager
def postgres_server(durable: bool = False) -> Iterator[str]:
    """A throw-away PostgreSQL server on a free loopback port; yields its SQLAlchemy URL. initdb refuses
    to run as root, so as root the server runs as the unprivileged user ``nobody``. Tests run it with
    ``fsync=off`` (faster; nothing to keep); ``durable=True`` keeps PostgreSQL's defaults (load tests)."""
    bindir = _pg_bin()
    if bindir is None:
        require("PostgreSQL", "no initdb in /usr/lib/postgresql/*/bin or on PATH")
    root = tempfile.mkdtemp(prefix="alignkit-pg-")
    data = os.path.join(root, "data")
    as_user = {}
    if os.geteuid() == 0:
        import pwd

        nobody = pwd.getpwnam("nobody")
        os.chown(root, nobody.pw_uid, nobody.pw_gid)
        as_user = {"user": nobody.pw_uid, "group": nobody.pw_gid}
    port = free_port()
    env = {**os.environ, "LC_ALL": "C", "LANG": "C"}
    run = dict(check=True, capture_output=True, env=env, cwd=root, **as_user)
    try:
        subprocess.run([f"{bindir}/initdb", "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8"], **run)
        opts = f"-c listen_addresses=127.0.0.1 -p {port} -k {root} -c max_connections=200"
        opts += "" if durable else " -c fsync=off"
        subprocess.run([f"{bindir}/pg_ctl", "-D", data, "-l", os.path.join(root, "log"), "-o", opts, "-w", "start"],
                       **run)
    except subprocess.CalledProcessError as e:
        shutil.rmtree(root, ignore_errors=True)
        raise RuntimeError(f"PostgreSQL did not start: {e.stderr.decode(errors='replace')[-2000:]}") from None
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([f"{bindir}/pg_ctl", "-D", data, "-m", "immediate", "stop"], capture_output=True, env=env,
                       cwd=root, **as_user)
        shutil.rmtree(root, ignore_errors=True)
