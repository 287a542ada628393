"""The annotation web app (Starlette): server-rendered pages, one POST + CSRF token per write.

Routes: ``GET /`` (the next task, or ``?token=T`` to sign in: the token moves into an HttpOnly cookie
and out of the address bar), ``POST /judge``, ``POST /undo``, ``GET /health``, ``/static/*``.

Safety: Jinja2 autoescaping on every page and a Content-Security-Policy that allows only the app's own
script file (so text that looks like ``<script>`` is shown, never run); a CSRF token (an HMAC of the
annotator's token hash under a secret kept in the database) on every form; request bodies over
:data:`MAX_BODY` bytes refused with 413; no debug pages; with ``auth_token`` set (required off
loopback) every request must carry that token too (``?auth=``, a cookie, or ``Authorization: Bearer``).
"""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path
from typing import Any

import jinja2
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from alignkit.annotate.db import RELEASED, Shown, Store, StoreError
from alignkit.annotate.tasks import text_of

HERE = Path(__file__).parent
MAX_BODY = 16 * 1024  # a judgement form is well under 4 KiB; the reason field is capped at 2,000 chars
MAX_REASON = 2000
TOKEN_COOKIE, AUTH_COOKIE = "alignkit_annotator", "alignkit_auth"
PAIR_KEYS = {"1": 0, "2": 1}  # key -> display position; 3 = tie, 0 = both bad, s = skip
OTHER_KEYS = {"3": "tie", "0": "both_bad", "s": "skip"}
SECURITY_HEADERS = {
    "content-security-policy": "default-src 'none'; script-src 'self'; style-src 'self'; form-action 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'",
    "x-content-type-options": "nosniff", "x-frame-options": "DENY", "referrer-policy": "no-referrer",
    "cache-control": "no-store",
}


class BodyLimit:
    """ASGI middleware: refuse a request body over ``limit`` bytes (by Content-Length, or as it streams)."""

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            await PlainTextResponse("request too large", status_code=413)(scope, receive, send)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise _TooLarge()
            return message

        try:
            await self.app(scope, limited, send)
        except _TooLarge:
            await PlainTextResponse("request too large", status_code=413)(scope, receive, send)


class _TooLarge(Exception):
    pass


def _turns(prompt: Any) -> list[dict[str, str]]:
    if isinstance(prompt, list):
        return [{"role": str(m.get("role", "")), "content": str(m.get("content", ""))} for m in prompt]
    return [{"role": "", "content": str(prompt)}]


class AnnotateApp:
    """The routes over one :class:`Store`; ``overlap`` annotators judge each task."""

    def __init__(self, store: Store, overlap: int = 1, auth_token: str | None = None,
                 secure_cookies: bool = False) -> None:
        self.store, self.overlap, self.auth_token = store, overlap, auth_token
        self.secure = secure_cookies
        self.secret = store.secret().encode()
        self.known: dict[str, tuple[int, str]] = {}  # token -> (annotator id, name)
        self.env = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True)

    # ------------------------------------------------------------------ helpers

    def csrf_for(self, token: str) -> str:
        digest = hashlib.sha256(token.encode()).hexdigest()
        return hmac.new(self.secret, f"csrf:{digest}".encode(), hashlib.sha256).hexdigest()

    def page(self, name: str, status: int = 200, **ctx: Any) -> HTMLResponse:
        return HTMLResponse(self.env.get_template(name).render(**ctx), status_code=status,
                            headers=SECURITY_HEADERS)

    def message(self, heading: str, text: str, status: int) -> HTMLResponse:
        return self.page("message.html", status=status, heading=heading, text=text, annotator=None)

    def authorised(self, request: Request) -> bool:
        if self.auth_token is None:
            return True
        header = request.headers.get("authorization", "")
        given = [request.query_params.get("auth", ""), request.cookies.get(AUTH_COOKIE, ""),
                 header[7:] if header.lower().startswith("bearer ") else ""]
        return any(g and hmac.compare_digest(g.encode(), self.auth_token.encode()) for g in given)

    async def annotator(self, request: Request) -> tuple[int, str, str] | None:
        token = request.cookies.get(TOKEN_COOKIE, "")
        if not token:
            return None
        found = self.known.get(token)  # annotators are never deleted, so a found one stays valid
        if found is None:
            found = await run_in_threadpool(self.store.annotator_for, token)
            if found is None:
                return None
            if len(self.known) < 10_000:
                self.known[token] = found
        return found[0], found[1], token

    def set_cookie(self, response: Response, name: str, value: str) -> None:
        response.set_cookie(name, value, httponly=True, samesite="strict", secure=self.secure, max_age=30 * 86400)

    # ------------------------------------------------------------------ routes

    async def index(self, request: Request) -> Response:
        token = request.query_params.get("token")
        if token is not None or request.query_params.get("auth") is not None:  # sign in, then a clean URL
            response = RedirectResponse("/", status_code=303, headers=SECURITY_HEADERS)
            if token is not None:
                self.set_cookie(response, TOKEN_COOKIE, token)
            if self.auth_token and request.query_params.get("auth"):
                self.set_cookie(response, AUTH_COOKIE, request.query_params["auth"])
            return response
        who = await self.annotator(request)
        if who is None:
            return self.message("Sign in", "Open the link with your annotator token "
                                "(http://HOST:PORT/?token=...), as printed by `alignkit annotate serve`.", 401)
        annotator_id, name, token = who
        shown, done, remaining = await run_in_threadpool(self.store.page_state, annotator_id, self.overlap)
        ctx = {"annotator": name, "done": done, "remaining": remaining, "csrf": self.csrf_for(token)}
        if shown is None:
            return self.page("done.html", **ctx)
        return self.task_page(shown, ctx)

    def task_page(self, shown: Shown, ctx: dict[str, Any]) -> HTMLResponse:
        view = "pairwise.html" if len(shown.order) == 2 else "ranking.html"
        return self.page(view, task_id=shown.task_id, prompt=_turns(shown.prompt),
                         answers=[text_of(a) for a in shown.shown], **ctx)

    async def judge(self, request: Request) -> Response:
        who, form = await self._checked_post(request)
        if isinstance(who, Response):
            return who
        annotator_id = who[0]
        try:
            task_id = int(form.get("task_id", ""))
        except ValueError:
            return self.message("Bad request", "task_id must be a number", 400)
        held = await run_in_threadpool(self.store.held, annotator_id, task_id)
        if held is not None and held[1] == "judged":  # a double click or a resent form: nothing to do
            return RedirectResponse("/", status_code=303, headers=SECURITY_HEADERS)
        if held is not None and held[1] == "released":
            return self.message("Task handed on", RELEASED, 409)
        try:
            fields = self.parse_choice(form, None if held is None else held[0], task_id)
            await run_in_threadpool(lambda: self.store.record(annotator_id, task_id, **fields))
        except StoreError as e:
            return self.message("Bad request", str(e), 400)
        return RedirectResponse("/", status_code=303, headers=SECURITY_HEADERS)

    def parse_choice(self, form: Any, held: Shown | None, task_id: int) -> dict[str, Any]:
        """The store's judgement fields from a form; the display order is the one recorded for it."""
        if held is None:
            raise StoreError(f"task {task_id} is not assigned to you")
        order, n = held.order, len(held.order)
        reason = str(form.get("reason", ""))[:MAX_REASON]
        likert: list[int | None] = [None] * n
        for pos in range(n):
            value = str(form.get(f"likert_{pos}", "")).strip()
            if value:
                if value not in {str(v) for v in range(1, 8)}:
                    raise StoreError(f"likert_{pos} must be 1 to 7")
                likert[order[pos]] = int(value)
        out: dict[str, Any] = {"reason": reason, "likert": likert if any(v is not None for v in likert) else None}
        key = str(form.get("choice", ""))
        if key in OTHER_KEYS:
            return {**out, "choice": OTHER_KEYS[key]}
        if n == 2 and key in PAIR_KEYS:
            winner = order[PAIR_KEYS[key]]
            return {**out, "choice": "A" if winner == 0 else "B", "shown_position": PAIR_KEYS[key]}
        if n > 2 and key == "rank":
            ranks = [str(form.get(f"rank_{pos}", "")).strip() for pos in range(n)]
            if sorted(ranks) != [str(r) for r in range(1, n + 1)]:
                raise StoreError(f"give each answer a different rank from 1 to {n}")
            by_rank = sorted(range(n), key=lambda pos: int(ranks[pos]))
            return {**out, "choice": "rank", "ranking": [order[pos] for pos in by_rank]}
        raise StoreError(f"unknown choice {key!r}")

    async def undo(self, request: Request) -> Response:
        who, _ = await self._checked_post(request)
        if isinstance(who, Response):
            return who
        await run_in_threadpool(self.store.undo, who[0])
        return RedirectResponse("/", status_code=303, headers=SECURITY_HEADERS)

    async def _checked_post(self, request: Request) -> tuple[Any, Any]:
        who = await self.annotator(request)
        if who is None:
            return self.message("Sign in", "no annotator token", 401), None
        form = await request.form(max_files=0, max_fields=64)
        given = str(form.get("csrf", ""))
        if not hmac.compare_digest(given.encode(), self.csrf_for(who[2]).encode()):
            return self.message("Forbidden", "missing or wrong CSRF token; reload the page", 403), None
        return who, form

    async def health(self, request: Request) -> Response:
        return PlainTextResponse("ok")

    async def static(self, request: Request) -> Response:
        name = request.path_params["name"]
        if name not in ("annotate.js", "annotate.css"):
            return PlainTextResponse("not found", status_code=404)
        kind = "text/javascript" if name.endswith(".js") else "text/css"
        return FileResponse(HERE / "static" / name, media_type=kind, headers={"x-content-type-options": "nosniff"})

    # ------------------------------------------------------------------ the ASGI app

    def asgi(self) -> ASGIApp:
        routes = [Route("/", self.index, methods=["GET"]), Route("/judge", self.judge, methods=["POST"]),
                  Route("/undo", self.undo, methods=["POST"]), Route("/health", self.health, methods=["GET"]),
                  Route("/static/{name}", self.static, methods=["GET"])]
        app = Starlette(debug=False, routes=routes, exception_handlers={500: _server_error})
        gated = _AuthGate(app, self) if self.auth_token else app
        return BodyLimit(gated)


class _AuthGate:
    """Refuse every request without the server's auth token (``--auth-token``), health checks aside."""

    def __init__(self, app: ASGIApp, owner: AnnotateApp) -> None:
        self.app, self.owner = app, owner

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] != "/health" and not self.owner.authorised(Request(scope)):
            await PlainTextResponse("unauthorised: this server needs its --auth-token (?auth=TOKEN once, or "
                                    "Authorization: Bearer TOKEN)", status_code=401)(scope, receive, send)
            return
        await self.app(scope, receive, send)


async def _server_error(request: Request, exc: Exception) -> Response:
    return PlainTextResponse("internal error (the server log has the details)", status_code=500)


def create_app(store: Store, overlap: int = 1, auth_token: str | None = None, secure_cookies: bool = False) -> ASGIApp:
    """The ASGI app for uvicorn (see :class:`AnnotateApp`)."""
    return AnnotateApp(store, overlap, auth_token, secure_cookies).asgi()
