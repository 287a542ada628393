"""The annotation store: every query the app and the commands make, one transaction each.

The tables, the engine set-up (SQLite WAL / PostgreSQL) and the schema versions are in
:mod:`alignkit.annotate.schema`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import random
import secrets
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from alignkit.annotate.schema import (
    CHOICES,
    SCHEMA_VERSION,
    StoreError,
    annotators,
    assignments,
    current_version,
    ensure_schema,
    judgements,
    make_engine,
    settings,
    tasks,
    token_hash,
)

__all__ = ["SCHEMA_VERSION", "Shown", "Store", "StoreError", "TaskIn", "current_version", "ensure_schema",
           "make_engine", "token_hash"]


RELEASED = ("this task went back to the pool after you held it past the lease without judging it; "
            "reload for your next task")


def _now() -> float:
    return time.time()


@dataclass
class TaskIn:
    """A task to add: a prompt, its candidates, where it came from and extra metadata."""

    prompt: Any
    candidates: list[Any]
    source: str = ""
    meta: dict[str, Any] | None = None

    def key(self) -> str:
        """Duplicates share a key: the same prompt and the same set of candidates, in any order."""
        cands = sorted(json.dumps(c, sort_keys=True, ensure_ascii=False) for c in self.candidates)
        text = json.dumps([self.prompt, cands], sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass
class Shown:
    """A task as one annotator sees it: candidates in ``order`` (candidate index per display position)."""

    task_id: int
    prompt: Any
    candidates: list[Any]
    order: list[int]
    assigned_at: float

    @property
    def shown(self) -> list[Any]:
        return [self.candidates[i] for i in self.order]


class Store:
    """Every read and write the app and the commands make; each method is one transaction."""

    def __init__(self, url: str, create: bool = True, lease_seconds: float | None = 1800.0) -> None:
        self.url = url
        self.engine = make_engine(url)
        self.is_sqlite = self.engine.dialect.name == "sqlite"
        self._lock = threading.Lock() if self.is_sqlite else None
        self._claimable_cache: dict[int, tuple[float, int]] = {}
        self.lease_seconds = lease_seconds  # a task held this long without a judgement goes back to the pool
        self._last_release = 0.0
        try:
            if create:
                ensure_schema(self.engine)
            else:
                with self.engine.connect() as conn:
                    if current_version(conn) == 0:
                        raise StoreError(f"{url}: no annotation database there (run `alignkit annotate "
                                         "add-tasks` or `serve` first)")
        except sa.exc.OperationalError as e:
            raise StoreError(f"--db {url}: cannot open the database: {e.orig}") from None

    @contextlib.contextmanager
    def _tx(self) -> Iterator[Connection]:
        """One transaction. On SQLite the writers of this process queue on a lock first: SQLite's own
        busy handler polls with sleeps of up to 100 ms, which would dominate the tail latency."""
        if self._lock is None:
            with self.engine.begin() as conn:
                yield conn
            return
        with self._lock, self.engine.begin() as conn:
            yield conn

    def close(self) -> None:
        self.engine.dispose()

    # ------------------------------------------------------------------ setup

    def secret(self) -> str:
        """The server's CSRF secret, created once and kept in the database (forms survive a restart)."""
        with self._tx() as conn:
            value = conn.execute(sa.select(settings.c.value).where(settings.c.key == "csrf_secret")).scalar()
            if value is None:
                value = secrets.token_hex(32)
                conn.execute(settings.insert().values(key="csrf_secret", value=value))
            return value

    def add_tasks(self, items: Sequence[TaskIn], chunk: int = 2000) -> tuple[int, int]:
        """Append tasks; returns (added, duplicates). A task already in the database, or twice in
        ``items``, is a duplicate and is not added again."""
        added = dupes = 0
        self._claimable_cache.clear()
        seen: set[str] = set()
        now = _now()
        for start in range(0, len(items), chunk):
            batch = [(t.key(), t) for t in items[start:start + chunk]]
            with self._tx() as conn:
                keys = [k for k, _ in batch]
                existing = set(conn.execute(sa.select(tasks.c.task_key).where(tasks.c.task_key.in_(keys))).scalars())
                rows = []
                for key, t in batch:
                    if key in existing or key in seen:
                        dupes += 1
                        continue
                    seen.add(key)
                    rows.append({"task_key": key, "prompt": json.dumps(t.prompt, ensure_ascii=False),
                                 "candidates": json.dumps(t.candidates, ensure_ascii=False),
                                 "n_candidates": len(t.candidates), "source": t.source[:500],
                                 "meta": json.dumps(t.meta or {}, ensure_ascii=False), "created_at": now,
                                 "assigned": 0})
                if rows:
                    conn.execute(tasks.insert(), rows)
                added += len(rows)
        return added, dupes

    def add_annotator(self, name: str) -> str:
        """Create an annotator; returns their token (shown once: only its hash is stored)."""
        token = secrets.token_urlsafe(32)
        try:
            with self._tx() as conn:
                conn.execute(annotators.insert().values(name=name, token_hash=token_hash(token), created_at=_now()))
        except sa.exc.IntegrityError:
            raise StoreError(f"annotator '{name}' exists already") from None
        return token

    def annotator_for(self, token: str) -> tuple[int, str] | None:
        """(id, name) of the annotator holding ``token``, or None."""
        with self._tx() as conn:
            row = conn.execute(sa.select(annotators.c.id, annotators.c.name)
                               .where(annotators.c.token_hash == token_hash(token))).first()
        return None if row is None else (row.id, row.name)

    def annotator_names(self) -> dict[int, str]:
        with self._tx() as conn:
            return dict(conn.execute(sa.select(annotators.c.id, annotators.c.name)).all())

    # ------------------------------------------------------------------ assignment

    def next_task(self, annotator_id: int, overlap: int = 1, rng: random.Random | None = None,
                  tries: int = 20) -> Shown | None:
        """The task to show ``annotator_id``: the one they hold, else a newly claimed one that fewer
        than ``overlap`` annotators hold and that they never held (None: nothing left for them).

        A claim bumps ``tasks.assigned`` only while it is below ``overlap`` (an atomic conditional
        update) and inserts the (task, annotator) assignment under a unique constraint, so concurrent
        requests neither over-assign a task nor hand it twice to one annotator; a lost race retries."""
        return self.page_state(annotator_id, overlap, rng, tries, with_progress=False)[0]

    def page_state(self, annotator_id: int, overlap: int = 1, rng: random.Random | None = None, tries: int = 20,
                   with_progress: bool = True) -> tuple[Shown | None, int, int]:
        """(:meth:`next_task`, judged, remaining) in one transaction: what one page shows."""
        rng = rng or random.SystemRandom()
        if self.lease_seconds and time.monotonic() - self._last_release > min(30.0, self.lease_seconds / 2):
            self.release_stale()
        for _ in range(tries):
            try:
                with self._tx() as conn:
                    shown = self._open_assignment(conn, annotator_id) or self._claim(conn, annotator_id, overlap, rng)
                    done, remaining = self._progress(conn, annotator_id, overlap) if with_progress else (0, 0)
                return shown, done, remaining
            except sa.exc.IntegrityError:  # the same annotator claimed the same task in a parallel request
                continue
        raise StoreError("could not claim a task (too many concurrent claims); try again")

    def _open_assignment(self, conn: Connection, annotator_id: int) -> Shown | None:
        row = conn.execute(
            sa.select(assignments.c.task_id, assignments.c.shown_order, assignments.c.assigned_at,
                      tasks.c.prompt, tasks.c.candidates)
            .join(tasks, tasks.c.id == assignments.c.task_id)
            .where(assignments.c.annotator_id == annotator_id, assignments.c.done.is_(False))
            .order_by(assignments.c.assigned_at.desc(), assignments.c.id).limit(1)).first()
        if row is None:
            return None
        return Shown(row.task_id, json.loads(row.prompt), json.loads(row.candidates), json.loads(row.shown_order),
                     row.assigned_at)

    def release_stale(self, now: float | None = None) -> int:
        """Give back the slots of tasks held longer than the lease without a judgement (the holder
        never sees them again; their late form is refused with a message). Returns how many."""
        self._last_release = time.monotonic()
        if not self.lease_seconds:
            return 0
        cutoff = (now if now is not None else _now()) - self.lease_seconds
        with self._tx() as conn:
            stale = conn.execute(sa.select(assignments.c.id, assignments.c.task_id)
                                 .where(assignments.c.done.is_(False), assignments.c.assigned_at < cutoff)
                                 .limit(1000)).all()
            for row in stale:
                conn.execute(assignments.update().where(assignments.c.id == row.id).values(done=True, released=True))
                conn.execute(tasks.update().where(tasks.c.id == row.task_id).values(assigned=tasks.c.assigned - 1))
        if stale:
            self._claimable_cache.clear()
        return len(stale)

    def held(self, annotator_id: int, task_id: int) -> tuple[Shown, str] | None:
        """The task as ``annotator_id`` was shown it and its state, ``open``, ``judged`` or ``released``
        (None: never theirs)."""
        with self._tx() as conn:
            row = conn.execute(
                sa.select(assignments.c.shown_order, assignments.c.assigned_at, assignments.c.done,
                          assignments.c.released, tasks.c.prompt, tasks.c.candidates)
                .join(tasks, tasks.c.id == assignments.c.task_id)
                .where(assignments.c.annotator_id == annotator_id, assignments.c.task_id == task_id)).first()
        if row is None:
            return None
        shown = Shown(task_id, json.loads(row.prompt), json.loads(row.candidates), json.loads(row.shown_order),
                      row.assigned_at)
        return shown, "released" if row.released else "judged" if row.done else "open"

    def _claim(self, conn: Connection, annotator_id: int, overlap: int, rng: random.Random) -> Shown | None:
        mine = sa.select(assignments.c.id).where(assignments.c.task_id == tasks.c.id,
                                                 assignments.c.annotator_id == annotator_id)
        for _ in range(50):
            query = (sa.select(tasks.c.id, tasks.c.prompt, tasks.c.candidates, tasks.c.n_candidates, tasks.c.assigned)
                     .where(tasks.c.assigned < overlap, ~mine.exists())
                     .order_by(tasks.c.assigned, tasks.c.id).limit(1))
            if not self.is_sqlite:
                query = query.with_for_update(skip_locked=True, of=tasks)
            row = conn.execute(query).first()
            if row is None:
                return None
            bumped = conn.execute(tasks.update().where(tasks.c.id == row.id, tasks.c.assigned < overlap)
                                  .values(assigned=tasks.c.assigned + 1)).rowcount
            if not bumped:  # another annotator took the last slot first
                continue
            cached = self._claimable_cache.get(overlap)
            if cached is not None and row.assigned + 1 >= overlap:  # keep the cached count exact here
                self._claimable_cache[overlap] = (cached[0], cached[1] - 1)
            order = list(range(row.n_candidates))
            rng.shuffle(order)
            now = _now()
            conn.execute(assignments.insert().values(task_id=row.id, annotator_id=annotator_id,
                                                     shown_order=json.dumps(order), assigned_at=now, done=False))
            return Shown(row.id, json.loads(row.prompt), json.loads(row.candidates), order, now)
        return None

    def progress(self, annotator_id: int, overlap: int = 1) -> tuple[int, int]:
        """(judged by this annotator, still to do for them: held now + claimable)."""
        with self._tx() as conn:
            return self._progress(conn, annotator_id, overlap)

    def _claimable(self, conn: Connection, overlap: int) -> int:
        """Tasks fewer than ``overlap`` annotators hold, for the progress line. Counting walks the whole
        index (about 15 ms at 100k tasks), so the count is taken at most once a second and kept up to
        date by this process's claims in between (other processes' claims show within a second)."""
        now = time.monotonic()
        cached = self._claimable_cache.get(overlap)
        if cached is not None and now - cached[0] < 1.0:
            return cached[1]
        value = int(conn.execute(sa.select(sa.func.count()).select_from(tasks).where(tasks.c.assigned < overlap)).scalar())
        self._claimable_cache[overlap] = (now, value)
        return value

    def _progress(self, conn: Connection, annotator_id: int, overlap: int) -> tuple[int, int]:
        done = conn.execute(sa.select(sa.func.count()).select_from(judgements)
                            .where(judgements.c.annotator_id == annotator_id)).scalar()
        open_now = conn.execute(sa.select(sa.func.count()).select_from(assignments)
                                .where(assignments.c.annotator_id == annotator_id,
                                       assignments.c.done.is_(False))).scalar()
        claimable = self._claimable(conn, overlap)
        held_claimable = conn.execute(
            sa.select(sa.func.count()).select_from(assignments.join(tasks, tasks.c.id == assignments.c.task_id))
            .where(assignments.c.annotator_id == annotator_id, tasks.c.assigned < overlap)).scalar()
        return int(done), int(open_now + claimable - held_claimable)

    # ------------------------------------------------------------------ judgements

    def record(self, annotator_id: int, task_id: int, choice: str, *, ranking: list[int] | None = None,
               shown_position: int | None = None, likert: list[int | None] | None = None,
               reason: str = "") -> bool:
        """Store one judgement (one transaction) for a task the annotator holds. Returns False when it
        was already judged (a double click or a resent form): nothing is stored twice."""
        if choice not in CHOICES:
            raise StoreError(f"choice must be one of {', '.join(CHOICES)}, got {choice!r}")
        try:
            with self._tx() as conn:
                held = conn.execute(sa.select(assignments.c.id, assignments.c.shown_order, assignments.c.assigned_at,
                                              assignments.c.done, assignments.c.released)
                                    .where(assignments.c.task_id == task_id,
                                           assignments.c.annotator_id == annotator_id)).first()
                if held is None:
                    raise StoreError(f"task {task_id} is not assigned to this annotator")
                if held.released:
                    raise StoreError(RELEASED)
                if held.done:
                    return False
                conn.execute(judgements.insert().values(
                    task_id=task_id, annotator_id=annotator_id, choice=choice,
                    ranking=None if ranking is None else json.dumps(ranking), shown_order=held.shown_order,
                    shown_position=shown_position, likert=None if likert is None else json.dumps(likert),
                    reason=reason, shown_at=held.assigned_at, created_at=_now()))
                conn.execute(assignments.update().where(assignments.c.id == held.id).values(done=True))
                if choice == "skip":  # the slot goes to another annotator (this one never sees it again)
                    conn.execute(tasks.update().where(tasks.c.id == task_id).values(assigned=tasks.c.assigned - 1))
                    self._claimable_cache.clear()
        except sa.exc.IntegrityError:
            return False
        return True

    def undo(self, annotator_id: int) -> int | None:
        """Delete the annotator's latest judgement and hand its task back to them (shown next, same
        order); returns its task id, or None when there is nothing to undo."""
        with self._tx() as conn:
            row = conn.execute(sa.select(judgements.c.id, judgements.c.task_id, judgements.c.choice)
                               .where(judgements.c.annotator_id == annotator_id)
                               .order_by(judgements.c.id.desc()).limit(1)).first()
            if row is None:
                return None
            conn.execute(judgements.delete().where(judgements.c.id == row.id))
            # a fresh assigned_at puts it first among the tasks held (the newest is shown first)
            conn.execute(assignments.update()
                         .where(assignments.c.task_id == row.task_id, assignments.c.annotator_id == annotator_id)
                         .values(done=False, released=False, assigned_at=_now()))
            if row.choice == "skip":  # it takes its slot back (possibly one above the overlap)
                conn.execute(tasks.update().where(tasks.c.id == row.task_id).values(assigned=tasks.c.assigned + 1))
                self._claimable_cache.clear()
        return int(row.task_id)

    def import_judgement(self, task: TaskIn, annotator: str, choice: str, ranking: list[int] | None = None,
                         reason: str = "") -> bool:
        """Store a judgement made elsewhere (Label Studio, Argilla): the task is added when new, the
        annotator created (with a token nobody holds), the display order taken as the file order. Returns
        False when that annotator already judged that task."""
        self.add_tasks([task])
        now = _now()
        try:
            with self._tx() as conn:
                task_id = conn.execute(sa.select(tasks.c.id).where(tasks.c.task_key == task.key())).scalar_one()
                who = conn.execute(sa.select(annotators.c.id).where(annotators.c.name == annotator)).scalar()
                if who is None:
                    who = conn.execute(annotators.insert().values(
                        name=annotator, token_hash=token_hash(secrets.token_urlsafe(32)), created_at=now)
                    ).inserted_primary_key[0]
                order = json.dumps(list(range(len(task.candidates))))
                conn.execute(assignments.insert().values(task_id=task_id, annotator_id=who, shown_order=order,
                                                         assigned_at=now, done=True))
                conn.execute(tasks.update().where(tasks.c.id == task_id).values(assigned=tasks.c.assigned + 1))
                conn.execute(judgements.insert().values(
                    task_id=task_id, annotator_id=who, choice=choice,
                    ranking=None if ranking is None else json.dumps(ranking), shown_order=order, reason=reason,
                    shown_at=now, created_at=now))
        except sa.exc.IntegrityError:
            return False
        return True

    def iter_judgements(self) -> Iterator[dict[str, Any]]:
        """Every judgement with its task and annotator name, in id order (for export and stats)."""
        query = (sa.select(judgements, tasks.c.prompt, tasks.c.candidates, tasks.c.source, tasks.c.meta,
                           annotators.c.name.label("annotator"))
                 .join(tasks, tasks.c.id == judgements.c.task_id)
                 .join(annotators, annotators.c.id == judgements.c.annotator_id)
                 .order_by(judgements.c.id))
        with self.engine.connect() as conn:
            for row in conn.execute(query).mappings():
                out = dict(row)
                for key in ("prompt", "candidates", "shown_order", "ranking", "likert", "meta"):
                    if out.get(key) is not None:
                        out[key] = json.loads(out[key])
                yield out

    def iter_tasks(self) -> Iterator[dict[str, Any]]:
        with self.engine.connect() as conn:
            for row in conn.execute(sa.select(tasks).order_by(tasks.c.id)).mappings():
                out = dict(row)
                for key in ("prompt", "candidates", "meta"):
                    out[key] = json.loads(out[key])
                yield out

    def counts(self) -> dict[str, int]:
        with self.engine.connect() as conn:
            return {name: int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar())
                    for name, table in (("tasks", tasks), ("annotators", annotators),
                                        ("assignments", assignments), ("judgements", judgements))}
