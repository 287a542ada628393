"""A real headless Chromium (Debian's ``chromium`` driven by Playwright, no Playwright browser download)
judges tasks with the keyboard and the mouse, undoes one, and the export holds exactly those judgements."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from alignkit.annotate.app import create_app
from alignkit.annotate.db import Store, TaskIn
from alignkit.commands.annotate import main as annotate_main
from tests.annotate_support import require, running

XSS = '<script>document.title="pwned"</script>'


def _chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        require("chromium", "Debian's chromium package is not installed (apt-get install chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        require("playwright", "the Python package is not installed (pip install -e '.[annotate]')")
    return path


def test_annotator_in_a_real_browser(tmp_path, capsys):
    chromium = _chromium()
    from playwright.sync_api import sync_playwright

    db = f"sqlite:///{tmp_path / 'browser.db'}"
    store = Store(db)
    store.add_tasks([TaskIn(f"Question {i}: which is better? {XSS}", [f"answer A{i}", f"answer B{i}"])
                     for i in range(8)])
    token = store.add_annotator("browser")
    expected = {}  # task id -> (chosen, rejected)
    with running(create_app(store)) as url, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.goto(f"{url}/?token={token}")
        page.wait_for_selector("#judge-form")
        assert page.url == f"{url}/"  # the token left the address bar
        assert XSS in page.inner_text("#prompt") and page.title() == "alignkit annotate"
        shot = tmp_path / "pairwise.png"
        page.screenshot(path=str(shot), full_page=True)
        keep = Path(os.environ.get("ALIGNKIT_ARTIFACTS", tempfile.gettempdir())) / "alignkit-annotate-pairwise.png"
        shutil.copyfile(shot, keep)
        with capsys.disabled():
            print(f"\nscreenshot of the pairwise view: {keep}")

        def judge(press: str | None = None, click: str | None = None) -> int:
            task_id = int(page.get_attribute("input[name=task_id]", "value"))
            left, right = page.inner_text("#answer-1 pre"), page.inner_text("#answer-2 pre")
            with page.expect_navigation():
                page.keyboard.press(press) if press else page.click(click)
            which = press or {"#choose-1": "1", "#choose-2": "2"}[click]
            expected[task_id] = (left, right) if which == "1" else (right, left)
            return task_id

        for key in ("1", "2", "2", "1", "1"):
            judge(press=key)
        assert page.inner_text("#progress") == "done 5 · remaining 3"
        clicked = judge(click="#choose-2")
        with page.expect_navigation():
            page.keyboard.press("u")  # undo the mouse judgement
        assert int(page.get_attribute("input[name=task_id]", "value")) == clicked  # shown again
        assert page.inner_text("#progress") == "done 5 · remaining 3"
        del expected[clicked]
        browser.close()
    out = tmp_path / "export.jsonl"
    assert annotate_main(["export", "--db", db, "--output", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert {r["task_id"]: (r["chosen"], r["rejected"]) for r in rows} == expected
    assert len(rows) == 5 and store.counts()["judgements"] == 5
    store.close()


def test_ranking_view_by_keyboard(tmp_path):
    chromium = _chromium()
    from playwright.sync_api import sync_playwright

    store = Store(f"sqlite:///{tmp_path / 'rank.db'}")
    store.add_tasks([TaskIn("Rank the answers", ["alpha", "beta", "gamma"])])
    token = store.add_annotator("ranker")
    with running(create_app(store)) as url, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
        page = browser.new_page()
        page.goto(f"{url}/?token={token}")
        page.wait_for_selector("form[data-view=ranking]")
        shown = [page.inner_text(f"#answer-{i} pre") for i in (1, 2, 3)]
        for key in ("3", "1", "2"):  # best first
            page.keyboard.press(key)
        assert [page.input_value(f"select[name=rank_{pos}]") for pos in range(3)] == ["2", "3", "1"]
        page.screenshot(path=str(tmp_path / "ranking.png"))
        with page.expect_navigation():
            page.keyboard.press("Enter")
        assert "Nothing left to judge" in page.inner_text("main")
        browser.close()
    (judged,) = store.iter_judgements()
    names = ["alpha", "beta", "gamma"]
    assert [names[i] for i in judged["ranking"]] == [shown[2], shown[0], shown[1]]
    store.close()
