"""The annotation database's tables, engine set-up, schema version and upgrades.

One SQLAlchemy 2 code path for SQLite (the default, WAL journal, ``synchronous=FULL``) and PostgreSQL
(``postgresql+psycopg://``). Each write is one transaction, so a killed server loses at most the request
in flight. The tables:

* ``tasks``: a prompt and its 2..N candidate answers (JSON text), where they came from, and how many
  annotators hold the task (``assigned``, indexed with ``id``: the assignment query walks that index);
* ``annotators``: a name and the SHA-256 of the annotator's token (the token itself is never stored);
* ``assignments``: which annotator holds which task, and the randomised order its answers are shown
  in; unique per (task, annotator), so a task is never handed twice to one annotator;
* ``judgements``: one per (task, annotator): the choice in candidate terms (``A`` = candidate 0,
  ``B`` = candidate 1, ``tie``, ``both_bad``, ``skip``, or ``rank`` with a ranking), the order shown,
  the display position picked, optional 1-7 Likert scores per candidate, a reason and timestamps;
* ``settings`` (the CSRF secret) and ``alignkit_schema`` (the schema version, see :data:`MIGRATIONS`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

CHOICES = ("A", "B", "tie", "both_bad", "skip", "rank")

metadata = sa.MetaData()

tasks = sa.Table(
    "tasks", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("task_key", sa.String(64), nullable=False, unique=True),  # sha256 of prompt + candidate set
    sa.Column("prompt", sa.Text, nullable=False),  # JSON: a string or chat messages
    sa.Column("candidates", sa.Text, nullable=False),  # JSON list of 2..N answers
    sa.Column("n_candidates", sa.Integer, nullable=False),
    sa.Column("source", sa.String(500), nullable=False, default=""),
    sa.Column("meta", sa.Text, nullable=False, default="{}"),
    sa.Column("created_at", sa.Double, nullable=False),
    sa.Column("assigned", sa.Integer, nullable=False, default=0),
)
sa.Index("ix_tasks_open", tasks.c.assigned, tasks.c.id)

annotators = sa.Table(
    "annotators", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(200), nullable=False, unique=True),
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("created_at", sa.Double, nullable=False),
)

assignments = sa.Table(
    "assignments", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("task_id", sa.Integer, sa.ForeignKey("tasks.id"), nullable=False),
    sa.Column("annotator_id", sa.Integer, sa.ForeignKey("annotators.id"), nullable=False),
    sa.Column("shown_order", sa.Text, nullable=False),  # JSON list: candidate index at each display position
    sa.Column("assigned_at", sa.Double, nullable=False),
    sa.Column("done", sa.Boolean, nullable=False, default=False),
    # held past the lease without a judgement: done, and the slot went back to the pool
    sa.Column("released", sa.Boolean, nullable=False, default=False),
    sa.UniqueConstraint("task_id", "annotator_id", name="uq_assignment"),
)
sa.Index("ix_assignments_open", assignments.c.annotator_id, assignments.c.done, assignments.c.id)
sa.Index("ix_assignments_stale", assignments.c.done, assignments.c.assigned_at)

judgements = sa.Table(
    "judgements", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("task_id", sa.Integer, sa.ForeignKey("tasks.id"), nullable=False),
    sa.Column("annotator_id", sa.Integer, sa.ForeignKey("annotators.id"), nullable=False),
    sa.Column("choice", sa.String(16), nullable=False),
    sa.Column("ranking", sa.Text, nullable=True),  # JSON list of candidate indices, best first
    sa.Column("shown_order", sa.Text, nullable=False),
    sa.Column("shown_position", sa.Integer, nullable=True),  # display position picked (0 = left), pairwise
    sa.Column("likert", sa.Text, nullable=True),  # JSON list of 1-7 or null per candidate
    sa.Column("reason", sa.Text, nullable=False, default=""),
    sa.Column("shown_at", sa.Double, nullable=False),
    sa.Column("created_at", sa.Double, nullable=False),
    sa.UniqueConstraint("task_id", "annotator_id", name="uq_judgement"),
)
sa.Index("ix_judgements_annotator", judgements.c.annotator_id, judgements.c.id)

settings = sa.Table(
    "settings", metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

schema_version = sa.Table("alignkit_schema", metadata, sa.Column("version", sa.Integer, nullable=False))


def _index_judgements_by_annotator(conn: Connection) -> None:
    conn.execute(sa.text("CREATE INDEX IF NOT EXISTS ix_judgements_annotator ON judgements (annotator_id, id)"))


def _assignment_leases(conn: Connection) -> None:
    if "released" not in {c["name"] for c in sa.inspect(conn).get_columns("assignments")}:
        conn.execute(sa.text("ALTER TABLE assignments ADD COLUMN released BOOLEAN NOT NULL DEFAULT FALSE"))
    conn.execute(sa.text("CREATE INDEX IF NOT EXISTS ix_assignments_stale ON assignments (done, assigned_at)"))


#: the tables above are the newest schema (a new database gets them whole); an older database is
#: brought from version N-1 to N by MIGRATIONS[N], in order, in one transaction
MIGRATIONS: dict[int, Callable[[Connection], None]] = {2: _index_judgements_by_annotator, 3: _assignment_leases}
SCHEMA_VERSION = max(MIGRATIONS, default=1)


class StoreError(ValueError):
    """A database URL or state the user can fix (one line)."""


def token_hash(token: str) -> str:
    """SHA-256 of an annotator token. Tokens are 32 random bytes, so an unsalted hash cannot be
    reversed by guessing, and a deterministic one lets a request be looked up by it."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def make_engine(url: str) -> Engine:
    """An engine for ``url``: SQLite (WAL, FULL sync, 30 s busy wait, ``BEGIN IMMEDIATE`` so that
    concurrent writers queue instead of failing) or PostgreSQL through psycopg 3."""
    try:
        parsed = sa.engine.make_url(url)
    except sa.exc.ArgumentError:
        raise StoreError(f"--db {url!r}: not a database URL; expected sqlite:///FILE.db or "
                         "postgresql+psycopg://USER@HOST:PORT/DB") from None
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(parsed, connect_args={"check_same_thread": False, "timeout": 30},
                                  pool_size=8, max_overflow=32)

        @sa.event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # SQLAlchemy's begin event below starts transactions
            cur = dbapi_conn.cursor()
            for pragma in ("journal_mode=WAL", "synchronous=FULL", "foreign_keys=ON", "busy_timeout=30000"):
                cur.execute(f"PRAGMA {pragma}")
            cur.close()

        @sa.event.listens_for(engine, "begin")
        def _on_begin(conn: Connection) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    if backend == "postgresql":
        if parsed.get_driver_name() != "psycopg":
            raise StoreError(f"--db {url!r}: use the psycopg 3 driver, postgresql+psycopg://...")
        return sa.create_engine(parsed, pool_size=10, max_overflow=30, pool_pre_ping=True)
    raise StoreError(f"--db {url!r}: unsupported database '{backend}'; expected sqlite:/// or postgresql+psycopg://")


def current_version(conn: Connection) -> int:
    """The schema version of the database (0: no schema yet)."""
    if not sa.inspect(conn).has_table(schema_version.name):
        return 0
    return int(conn.execute(sa.select(schema_version.c.version)).scalar() or 0)


def ensure_schema(engine: Engine) -> int:
    """Create the tables, or upgrade them to :data:`SCHEMA_VERSION`; returns the version reached."""
    with engine.begin() as conn:
        version = current_version(conn)
        if version > SCHEMA_VERSION:
            raise StoreError(f"the database has schema version {version}, newer than this alignkit "
                             f"({SCHEMA_VERSION}); upgrade alignkit")
        if version == 0:
            metadata.create_all(conn)
            conn.execute(schema_version.insert().values(version=SCHEMA_VERSION))
            return SCHEMA_VERSION
        while version < SCHEMA_VERSION:
            version += 1
            MIGRATIONS[version](conn)
            conn.execute(schema_version.update().values(version=version))
    return version
