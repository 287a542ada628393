"""The annotation app over HTTP: judging, undo, CSRF, escaping, sign-in, limits, the localhost default,
the auth token, kill -9 durability, export, interop and stats."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from alignkit.annotate.app import create_app
from alignkit.annotate.db import Store, TaskIn
from alignkit.annotate.export import preference_rows
from alignkit.annotate.interop import from_argilla, from_label_studio, to_argilla, to_label_studio
from alignkit.commands.annotate import main as annotate_main
from alignkit.commands.annotate import serve_problem
from tests.annotate_support import Client, form_fields, free_port, running, wait_for

ROOT = Path(__file__).resolve().parent.parent
XSS = '<script>document.title="pwned"</script>'


@pytest.fixture
def store(tmp_path):
    s = Store(f"sqlite:///{tmp_path / 'app.db'}")
    s.add_tasks([TaskIn(f"Tell me {i} {XSS}", [f"first {i}", f"second {i} <b>bold</b>"]) for i in range(4)]
                + [TaskIn("Rank these", ["r0", "r1", "r2"])])
    yield s
    s.close()


def _signed_in(url: str, store: Store, name: str = "ann") -> tuple[Client, str]:
    client = Client(url)
    status, html = client.get(f"/?token={store.add_annotator(name)}")
    assert status == 200
    return client, html


def test_judging_undo_and_export(store):
    with running(create_app(store)) as url:
        client, html = _signed_in(url, store)
        assert "done 0 &middot; remaining 5" in html
        picks = {}
        for _ in range(4):
            fields = form_fields(html)
            answer1 = re.search(r'id="answer-1">\s*<h2>Answer 1</h2>\s*<pre>([^<]*)', html).group(1)
            picks[int(fields["task_id"])] = answer1  # key 1 picks whatever is shown on the left
            status, html = client.post("/judge", {**fields, "choice": "1", "likert_0": "6", "reason": "clearer"})
            assert status == 200
        assert 'data-view="ranking"' in html  # the 3-candidate task
        fields = form_fields(html)
        status, html = client.post("/judge", {**fields, "choice": "rank", "rank_0": "1", "rank_1": "1", "rank_2": "2"})
        assert status == 400 and "different rank" in html
        status, html = client.post("/undo", {"csrf": fields["csrf"]})  # undoes the 4th pairwise judgement
        assert status == 200 and "done 3" in html and 'data-view="pairwise"' in html
        undone = int(form_fields(html)["task_id"])
        status, html = client.post("/judge", {**form_fields(html), "choice": "s"})
        status, html = client.post("/judge", {**form_fields(html), "choice": "rank", "rank_0": "2", "rank_1": "3",
                                              "rank_2": "1"})
        assert "Nothing left to judge" in html
    judged = list(store.iter_judgements())
    assert [j["choice"] for j in judged].count("skip") == 1
    ranked = next(j for j in judged if j["choice"] == "rank")
    order = ranked["shown_order"]
    assert ranked["ranking"] == [order[2], order[0], order[1]]  # display positions ranked 1, 2, 3
    pair = next(j for j in judged if j["choice"] in ("A", "B"))
    assert pair["reason"] == "clearer" and pair["likert"][pair["shown_order"][0]] == 6
    rows, _ = preference_rows(judged)
    pairwise = {r["task_id"]: r["chosen"] for r in rows if r["task_id"] in picks}
    assert pairwise == {t: a.replace("&lt;", "<").replace("&gt;", ">") for t, a in picks.items() if t != undone}


def test_user_text_is_escaped(store):
    with running(create_app(store)) as url:
        client, html = _signed_in(url, store)
        assert "&lt;script&gt;document.title=&#34;pwned&#34;&lt;/script&gt;" in html
        assert "<script>document" not in html and "<b>bold</b>" not in html
        assert html.count("<script") == 1  # only the app's own /static/annotate.js


def test_csrf_is_required_for_every_write(store):
    with running(create_app(store)) as url:
        client, html = _signed_in(url, store)
        fields = form_fields(html)
        assert client.post("/judge", {"task_id": fields["task_id"], "choice": "1"})[0] == 403
        assert client.post("/judge", {**fields, "csrf": "0" * 64, "choice": "1"})[0] == 403
        assert client.post("/judge", {**fields, "csrf": "é" * 64, "choice": "1"})[0] == 403
        assert client.post("/undo", {})[0] == 403
        other, _ = _signed_in(url, store, "other")  # another annotator's token does not fit this form
        assert other.post("/judge", {**fields, "choice": "1"})[0] == 403
        assert client.request("/judge")[0] == 405  # GET cannot write
        assert store.counts()["judgements"] == 0
        assert client.post("/judge", {**fields, "choice": "1"})[0] == 200
        assert client.post("/judge", {**fields, "choice": "2"})[0] == 200  # a resent form stores nothing
        assert store.counts()["judgements"] == 1


def test_sign_in_limits_and_headers(store):
    with running(create_app(store)) as url:
        anonymous = Client(url)
        assert anonymous.get("/")[0] == 401
        assert anonymous.get("/?token=wrong")[0] == 401
        client, _ = _signed_in(url, store)
        status, _ = client.request("/judge", b"reason=" + b"x" * 20_000,
                                   {"Content-Type": "application/x-www-form-urlencoded"})
        assert status == 413
        import urllib.request

        with urllib.request.urlopen(url + "/health") as r:
            assert r.read() == b"ok"
        req = urllib.request.Request(url + "/", headers={"Cookie": "x=y"})
        try:
            urllib.request.urlopen(req)
        except urllib.error.HTTPError as e:
            assert "script-src 'self'" in e.headers["content-security-policy"]
        assert Client(url).get("/static/../db.py")[0] == 404


def test_localhost_default_and_auth_token(store, tmp_path, capsys):
    from alignkit.commands.annotate import build_parser

    assert build_parser().parse_args(["serve"]).host == "127.0.0.1"
    assert serve_problem("127.0.0.1", None, 1) is None and serve_problem("::1", None, 1) is None
    assert "--auth-token" in serve_problem("0.0.0.0", None, 1)
    assert serve_problem("0.0.0.0", "t0ken", 1) is None
    code = annotate_main(["serve", "--db", f"sqlite:///{tmp_path / 'x.db'}", "--host", "0.0.0.0"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("error: --host 0.0.0.0 is reachable") and "\n" not in err
    with running(create_app(store, auth_token="s3cret")) as url:
        token = store.add_annotator("gated")
        assert Client(url).get(f"/?token={token}")[0] == 401
        assert Client(url).get(f"/?token={token}&auth=%C3%A9")[0] == 401
        client = Client(url)
        status, html = client.get(f"/?token={token}&auth=s3cret")  # the auth token becomes a cookie
        assert status == 200 and "Answer 1" in html
        assert client.post("/judge", {**form_fields(html), "choice": "2"})[0] == 200
        assert Client(url).request("/", headers={"Authorization": "Bearer s3cret"})[0] == 401  # no annotator
        assert Client(url).get("/health")[0] == 200


def _serve(db: str, port: int, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "alignkit", "annotate", "serve", "--db", db, "--port", str(port),
                             *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def test_kill_9_loses_no_committed_judgement(tmp_path):
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text("".join(json.dumps({"prompt": f"p{i}", "candidates": [f"a{i}", f"b{i}"]}) + "\n"
                             for i in range(300)))
    db, port = f"sqlite:///{tmp_path / 'k.db'}", free_port()
    proc = _serve(db, port, "--tasks", str(tasks), "--annotators", "kim")
    link = proc.stdout.readline().strip()
    assert link.startswith("kim: http://127.0.0.1:"), link
    url = f"http://127.0.0.1:{port}"
    wait_for(url, proc=proc)
    client = Client(url)
    status, html = client.get(link.split(url, 1)[1])
    acked, stop = [0], threading.Event()

    def click() -> None:
        page = html
        while not stop.is_set():
            try:
                status, page = client.post("/judge", {**form_fields(page), "choice": "1"})
            except OSError:
                return
            if status == 200:
                acked[0] += 1

    clicker = threading.Thread(target=click)
    clicker.start()
    deadline = time.time() + 60
    while acked[0] < 25 and time.time() < deadline and clicker.is_alive():
        time.sleep(0.02)
    assert acked[0] >= 25, "the server stopped confirming clicks before the kill"
    proc.send_signal(signal.SIGKILL)  # mid-session, with a click in flight
    proc.wait(10)
    stop.set()
    clicker.join(30)
    rows = Store(db).counts()["judgements"]
    assert acked[0] <= rows <= acked[0] + 1, (acked[0], rows)  # at most the click in flight is unconfirmed
    proc = _serve(db, port)
    try:
        wait_for(url, proc=proc)
        status, html = client.get("/")  # the same cookie and form secret work after the restart
        assert status == 200 and f"done {rows}" in html
        assert client.post("/judge", {**form_fields(html), "choice": "2"})[0] == 200
        assert Store(db).counts()["judgements"] == rows + 1
    finally:
        proc.kill()
        proc.wait(10)


def _judged_store(path: Path) -> Store:
    s = Store(f"sqlite:///{path}")
    s.add_tasks([TaskIn([{"role": "user", "content": "hi"}], [[{"role": "assistant", "content": "x"}],
                                                             [{"role": "assistant", "content": "y"}]]),
                 TaskIn("two", ["a", "b"]), TaskIn("three", ["c0", "c1", "c2"])])
    ids = [s.annotator_for(s.add_annotator(n))[0] for n in ("p", "q")]
    for who, choices in zip(ids, (["B", "tie", "rank"], ["B", "A", "rank"])):
        for choice in choices:
            shown = s.next_task(who, overlap=2)
            s.record(who, shown.task_id, choice, ranking=[2, 0, 1] if choice == "rank" else None)
    return s


def test_label_studio_and_argilla_round_trip(tmp_path):
    source = _judged_store(tmp_path / "src.db")
    expected, _ = preference_rows(source.iter_judgements())
    assert len(expected) == 2  # "two" has no majority (tie vs A)
    strip = [{k: r[k] for k in ("prompt", "chosen", "rejected", "agreement", "votes")} for r in expected]
    for name, out, back in (("ls", to_label_studio, from_label_studio), ("argilla", to_argilla, from_argilla)):
        items = json.loads(json.dumps(out(source)))
        target = Store(f"sqlite:///{tmp_path / (name + '.db')}")
        assert back(target, items, Path(f"{name}.json")) == (3, 6)
        rows, _ = preference_rows(target.iter_judgements())
        assert [{k: r[k] for k in strip[0]} for r in rows] == strip, name
        assert back(target, items, Path(f"{name}.json")) == (0, 0)  # importing twice adds nothing
    ls = to_label_studio(source)[0]
    assert ls["data"]["prompt"] == "hi" and ls["annotations"][0]["result"][0]["value"] == {"selected": "right"}
    # a file written by Label Studio itself: text fields only
    plain = [{"id": 1, "data": {"prompt": "P", "answer1": "L", "answer2": "R"},
              "annotations": [{"completed_by": 9, "result": [{"type": "pairwise", "value": {"selected": "left"}}]}]}]
    target = Store(f"sqlite:///{tmp_path / 'plain.db'}")
    assert from_label_studio(target, plain, Path("x.json")) == (1, 1)
    (row,), _ = preference_rows(target.iter_judgements())
    assert (row["prompt"], row["chosen"], row["rejected"]) == ("P", "L", "R")


def test_export_stats_and_import_commands(tmp_path, capsys):
    _judged_store(tmp_path / "cli.db").close()
    db = f"sqlite:///{tmp_path / 'cli.db'}"
    out = tmp_path / "pairs.jsonl"
    assert annotate_main(["export", "--db", db, "--output", str(out)]) == 0
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert [r["chosen"] for r in rows] == [[{"role": "assistant", "content": "y"}], "c2"]
    judge = tmp_path / "judge.py"
    judge.write_text("def longer(prompts, completions, **kw):\n"
                     "    return [float(len(str(c))) for c in completions]\n")
    capsys.readouterr()
    assert annotate_main(["stats", "--db", db, "--judge", f"{judge}:longer", "--json", str(tmp_path / "s.json")]) == 0
    text = capsys.readouterr().out
    assert "Cohen's kappa (mean over 1 annotator pairs): 0.571" in text  # 4/7, computed below
    figures = json.loads((tmp_path / "s.json").read_text())
    # p: B, tie, best:2 ; q: B, A, best:2 -> p_o = 2/3, p_e = (1*1 [B] + 1*1 [best:2]) / 9 = 2/9
    # kappa = (6/9 - 2/9) / (7/9) = 4/7
    assert figures["agreement"]["cohen_kappa_mean"] == pytest.approx(4 / 7)
    # judge "longer" on the two exported pairs: y vs x (same length -> tie), c2 vs c0 (tie) -> 0 agree
    assert figures["judge"]["pairs"] == 2 and figures["judge"]["judge_ties"] == 2
    assert annotate_main(["stats", "--db", db, "--judge", "nofile.py:f"]) == 2
    assert capsys.readouterr().err.startswith("error: --judge:")
    assert annotate_main(["export", "--db", f"sqlite:///{tmp_path / 'none.db'}", "--output", str(out)]) == 2
    assert "no annotation database there" in capsys.readouterr().err
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "p", "candidates": "not a list"}\n')
    assert annotate_main(["add-tasks", "--db", db, str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: {bad}: row 1: field 'candidates': expected a list of 2 to 9 answers"
    assert annotate_main(["export", "--db", db, "--format", "argilla", "--output", str(tmp_path / "a.json")]) == 0
    assert annotate_main(["import", "--db", f"sqlite:///{tmp_path / 'new.db'}", str(tmp_path / "a.json"),
                          "--format", "argilla"]) == 0
    assert "added 3 tasks and 6 judgements" in capsys.readouterr().err


def test_loadtest_counts_every_judgement(tmp_path):
    """A 2-second, 3-annotator run of the load test: whatever the clients were told was stored is in the
    database, once (the 60 s / 20-annotator figures in the README come from the same code)."""
    from alignkit.annotate.loadtest import run_load

    figures = run_load(f"sqlite:///{tmp_path / 'load.db'}", annotators=3, seconds=2, tasks=300)
    assert figures["acknowledged"] > 0 and figures["errors"] == 0
    assert figures["stored"] == figures["acknowledged"]
    assert figures["lost"] == figures["doubled"] == figures["unacknowledged_extra"] == 0


def test_position_bias_and_speed(tmp_path):
    from alignkit.annotate.stats import compute_stats
    from alignkit.evaluation.stats import wilson_interval

    s = Store(f"sqlite:///{tmp_path / 'bias.db'}")
    s.add_tasks([TaskIn(f"p{i}", ["a", "b"]) for i in range(5)])
    who = s.annotator_for(s.add_annotator("solo"))[0]
    for position in (0, 0, 0, 1):  # three picks of the left answer, one of the right
        shown = s.next_task(who)
        winner = shown.order[position]
        s.record(who, shown.task_id, "A" if winner == 0 else "B", shown_position=position)
    s.record(who, s.next_task(who).task_id, "tie")  # not decisive
    figures = compute_stats(s)
    bias = figures["position_bias"]
    assert bias["decisive"] == 4 and bias["left_rate"] == 0.75
    assert bias["interval95"] == list(wilson_interval(3, 4))
    assert figures["annotators"]["solo"]["judgements"] == 5
    assert figures["counts"]["by_choice"]["tie"] == 1


def test_serve_refuses_a_port_outside_1_to_65535(tmp_path, capsys):
    # before: --port 99999 printed "serving on http://127.0.0.1:99999" and ran, serving nothing
    for bad in ("99999", "0", "-1", "http"):
        code = annotate_main(["serve", "--db", f"sqlite:///{tmp_path / 'x.db'}", "--port", bad])
        err = capsys.readouterr().err
        assert code == 2 and f"--port: expected a port number 1-65535, got '{bad}'" in err
    from alignkit.commands.annotate import build_parser

    assert build_parser().parse_args(["serve", "--port", "65535"]).port == 65535
