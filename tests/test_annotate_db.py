"""The annotation database on SQLite and on a real PostgreSQL server: schema and upgrades, task files,
duplicates, and assignment under concurrent requests."""

from __future__ import annotations

import itertools
import json
import random
import threading
import time
from collections import Counter

import pytest
import sqlalchemy as sa

from alignkit.annotate.db import (
    SCHEMA_VERSION,
    Store,
    StoreError,
    TaskIn,
    current_version,
    ensure_schema,
    make_engine,
)
from alignkit.annotate.tasks import read_task_file
from alignkit.data.io import DataError
from tests.annotate_support import postgres_server

_counter = itertools.count()


@pytest.fixture(scope="module")
def pg_server():
    with postgres_server() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'a.db'}"
    base = request.getfixturevalue("pg_server")
    name = f"t{next(_counter)}"
    engine = sa.create_engine(base, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    engine.dispose()
    return base.rsplit("/", 1)[0] + f"/{name}"


def _tasks(n: int, k: int = 2) -> list[TaskIn]:
    return [TaskIn(f"prompt {i}", [f"answer {i}.{c}" for c in range(k)], "test") for i in range(n)]


def _as_version_1(url: str) -> None:
    """Turn a new database into one as schema version 1 left it (before migrations 2 and 3)."""
    engine = make_engine(url)
    assert ensure_schema(engine) == SCHEMA_VERSION == 3
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP INDEX ix_judgements_annotator")
        conn.exec_driver_sql("DROP INDEX ix_assignments_stale")
        conn.exec_driver_sql("ALTER TABLE assignments DROP COLUMN released")
        conn.exec_driver_sql("UPDATE alignkit_schema SET version = 1")
    engine.dispose()


def test_schema_created_and_upgraded(db_url):
    _as_version_1(db_url)
    store = Store(db_url)  # opening it upgrades
    with store.engine.connect() as conn:
        assert current_version(conn) == SCHEMA_VERSION
        inspector = sa.inspect(conn)
        assert {"tasks", "annotators", "assignments", "judgements", "settings", "alignkit_schema"} <= set(
            inspector.get_table_names())
        assert "ix_judgements_annotator" in {i["name"] for i in inspector.get_indexes("judgements")}
        assert "ix_tasks_open" in {i["name"] for i in inspector.get_indexes("tasks")}
        assert "released" in {c["name"] for c in inspector.get_columns("assignments")}
        if store.is_sqlite:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    assert Store(db_url).secret() == store.secret()  # kept in the database across restarts
    store.close()


def test_stale_assignments_and_skips_free_their_slot(db_url):
    store = Store(db_url, lease_seconds=600)
    store.add_tasks(_tasks(2))
    a, b = (store.annotator_for(store.add_annotator(n))[0] for n in ("idle", "busy"))
    held = store.next_task(a)
    assert store.release_stale(now=time.time() + 60) == 0  # within the lease
    assert store.release_stale(now=time.time() + 601) == 1
    with pytest.raises(StoreError, match="went back to the pool"):
        store.record(a, held.task_id, "A")
    assert store.next_task(b).task_id == held.task_id  # the slot is free again: b gets it
    assert store.record(b, held.task_id, "skip")  # and skips it: the slot is free once more
    second = store.next_task(b)
    assert second.task_id != held.task_id
    c = store.annotator_for(store.add_annotator("third"))[0]
    assert store.next_task(c).task_id == held.task_id
    assert store.next_task(a) is None  # a never sees the released task again; the other is b's
    store.close()


def test_duplicates_detected(db_url):
    store = Store(db_url)
    assert store.add_tasks(_tasks(5)) == (5, 0)
    reordered = TaskIn("prompt 1", ["answer 1.1", "answer 1.0"])  # the same set in another order
    assert store.add_tasks(_tasks(6) + [reordered]) == (1, 6)
    assert store.counts()["tasks"] == 6
    store.close()


def test_concurrent_assignment_never_repeats_a_task(db_url):
    """8 annotators x 3 threads each claim and judge as fast as they can, overlap 2: no annotator gets
    a task twice, no task gets more than 2 annotators, and every task ends with exactly 2 judgements."""
    store = Store(db_url)
    store.add_tasks(_tasks(40))
    names = [f"a{i}" for i in range(8)]
    ids = {}
    for name in names:
        store.annotator_for(store.add_annotator(name))
    ids = {v: k for k, v in store.annotator_names().items()}
    seen: dict[str, list[int]] = {n: [] for n in names}
    errors: list[BaseException] = []
    lock = threading.Lock()
    start = threading.Barrier(len(names) * 3)

    def work(name: str) -> None:
        rng = random.Random(hash(name))
        try:
            start.wait()
            while True:
                shown = store.next_task(ids[name], overlap=2, rng=rng)
                if shown is None:
                    return
                if store.record(ids[name], shown.task_id, rng.choice(["A", "B", "tie"])):
                    with lock:
                        seen[name].append(shown.task_id)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(n,)) for n in names for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    for name, got in seen.items():
        assert len(got) == len(set(got)), f"{name} judged a task twice: {got}"
    per_task = Counter(j["task_id"] for j in store.iter_judgements())
    assert len(per_task) == 40 and set(per_task.values()) == {2}
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT max(assigned) FROM tasks").scalar() == 2
    store.close()


def test_undo_and_progress(db_url):
    store = Store(db_url)
    store.add_tasks(_tasks(3, k=3))
    who = store.annotator_for(store.add_annotator("u"))[0]
    first = store.next_task(who)
    assert store.progress(who) == (0, 3)
    assert store.record(who, first.task_id, "rank", ranking=list(reversed(first.order)))
    assert not store.record(who, first.task_id, "A")  # a resent form stores nothing
    second = store.next_task(who)
    assert second.task_id != first.task_id and store.progress(who) == (1, 2)
    assert store.undo(who) == first.task_id
    again = store.next_task(who)  # the undone task comes back first, in the order it was shown
    assert (again.task_id, again.order) == (first.task_id, first.order)
    assert store.progress(who) == (0, 3)
    store.close()


def test_generate_output_groups_into_tasks(tmp_path):
    rows = [{"prompt": [{"role": "user", "content": "hi"}], "completion": [{"role": "assistant", "content": c}]}
            for c in ("a", "b", "a", "c")]
    rows += [{"prompt": "lonely", "completion": "only one"}]
    rows += [{"prompt": "q", "chosen": "good", "rejected": "bad", "source": "rlaif"}]
    rows += [{"prompt": "r", "candidates": ["x", "y", "z"]}]
    path = tmp_path / "cands.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    loaded = read_task_file(path)
    assert loaded.single == 1  # "lonely" has one answer
    hi, pref, ranked = loaded.tasks
    assert hi.prompt == [{"role": "user", "content": "hi"}] and len(hi.candidates) == 3
    assert hi.candidates[0] == [{"role": "assistant", "content": "a"}]
    assert pref.candidates == ["good", "bad"] and pref.meta["source"] == "rlaif"
    assert len(ranked.candidates) == 3


def test_bad_task_rows_name_file_row_and_field(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"prompt": "p", "candidates": ["x", "y"]}) + "\n"
                    + json.dumps({"prompt": "p", "candidates": ["only"]}) + "\n")
    with pytest.raises(DataError) as e:
        read_task_file(path)
    assert str(e.value).startswith(f"{path}: row 2: field 'candidates': expected a list of 2 to 9")
    path.write_text(json.dumps({"prompt": "p", "answer": "x"}) + "\n")
    with pytest.raises(DataError, match="row 1: expected 'candidates'"):
        read_task_file(path)
