"""``alignkit annotate serve|add-tasks|annotators|export|stats|import|loadtest``: collect human preferences
in a browser (README "Human feedback: alignkit annotate")."""

from __future__ import annotations

import argparse
import ipaddress
import sys
from pathlib import Path

DEFAULT_DB = "sqlite:///annotations.db"


def _db(p: argparse.ArgumentParser) -> None:
    p.add_argument("--db", default=DEFAULT_DB,
                   help=f"database URL (default {DEFAULT_DB}; PostgreSQL: postgresql+psycopg://USER@HOST:PORT/DB)")


def _port(text: str) -> int:
    """A TCP port for argparse: a whole number 1-65535 (uvicorn took 99999 and served nothing)."""
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port number 1-65535, got {text!r}")
    return port


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="alignkit annotate", description="Preference annotation in the browser.")
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")
    s = sub.add_parser("serve", help="run the annotation web app")
    _db(s)
    s.add_argument("--tasks", nargs="*", default=[], help="task files to add first (see add-tasks)")
    s.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1, loopback only)")
    s.add_argument("--port", type=_port, default=8765, help="TCP port, 1-65535 (default 8765)")
    s.add_argument("--overlap", type=int, default=1, help="annotators per task (default 1)")
    s.add_argument("--annotators", default="", help="comma-separated names to create (each gets a printed link)")
    s.add_argument("--auth-token", default=None, help="a token every request must carry; required off loopback")
    s.add_argument("--lease-minutes", type=float, default=30.0,
                   help="a task held this long without a judgement goes to someone else (default 30; 0 = never)")
    a = sub.add_parser("add-tasks", help="append tasks (prompt + 2..N candidates) from data files")
    _db(a)
    a.add_argument("files", nargs="+")
    n = sub.add_parser("annotators", help="create annotators (prints each one's token once) or list them")
    _db(n)
    n.add_argument("--add", nargs="*", default=[], metavar="NAME")
    e = sub.add_parser("export", help="write preference rows by majority vote (or Label Studio / Argilla JSON)")
    _db(e)
    e.add_argument("--output", required=True)
    e.add_argument("--format", choices=["preference", "label-studio", "argilla"], default="preference")
    e.add_argument("--min-agreement", type=float, default=0.0, help="least share of votes for the winner (0-1)")
    e.add_argument("--ties", choices=["drop", "keep"], default="drop", help="keep: tie majorities as tie=true rows")
    e.add_argument("--ranking-pairs", choices=["best-worst", "all"], default="best-worst")
    t = sub.add_parser("stats", help="counts, speed, agreement (Cohen's/Fleiss' kappa), position bias, judge")
    _db(t)
    t.add_argument("--judge", default=None, help="a judge/reward spec (judge:MODEL, rm:PATH, FILE.py:FUNC) to compare")
    t.add_argument("--json", default=None, help="also write the figures to this JSON file")
    i = sub.add_parser("import", help="add tasks and judgements from Label Studio or Argilla JSON")
    _db(i)
    i.add_argument("file")
    i.add_argument("--format", choices=["label-studio", "argilla"], required=True)
    lt = sub.add_parser("loadtest", help="simulated annotators against a fresh database on loopback")
    _db(lt)
    lt.add_argument("--annotators", type=int, default=20)
    lt.add_argument("--seconds", type=float, default=60.0)
    lt.add_argument("--tasks", type=int, default=100_000)
    lt.add_argument("--overlap", type=int, default=1)
    lt.add_argument("--json", default=None)
    return p


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve_problem(host: str, auth_token: str | None, overlap: int) -> str | None:
    """Why these serve options are refused, or None."""
    if overlap < 1:
        return "--overlap must be at least 1"
    if not _is_loopback(host) and not auth_token:
        return (f"--host {host} is reachable from other machines: give --auth-token TOKEN (every request must "
                "then carry it), or keep the default --host 127.0.0.1")
    return None


def _add_files(store, files: list[str]) -> int:
    from alignkit.annotate.tasks import read_task_file

    for f in files:
        loaded = read_task_file(f)
        added, dupes = store.add_tasks(loaded.tasks)
        note = f", {loaded.single} prompts with fewer than 2 distinct answers left out" if loaded.single else ""
        print(f"{f}: added {added} tasks, {dupes} duplicates skipped{note}", file=sys.stderr)
    return 0


def _serve(args, store) -> int:
    problem = serve_problem(args.host, args.auth_token, args.overlap)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    if not _is_loopback(args.host):
        print(f"warning: serving on {args.host}, reachable beyond this machine; requests need the auth token. "
              "Put it behind HTTPS for anything but a trusted network.", file=sys.stderr)
    _add_files(store, args.tasks)
    names = [n.strip() for n in args.annotators.split(",") if n.strip()]
    existing = set(store.annotator_names().values())
    if not names and not existing:
        names = ["annotator1"]
    host = f"[{args.host}]" if ":" in args.host else args.host
    auth = f"&auth={args.auth_token}" if args.auth_token else ""
    for name in names:
        if name in existing:
            print(f"{name}: exists (token shown when created; `annotate annotators --add` makes new ones)")
            continue
        token = store.add_annotator(name)
        print(f"{name}: http://{host}:{args.port}/?token={token}{auth}")
    counts = store.counts()
    print(f"serving {counts['tasks']} tasks from {args.db} on http://{host}:{args.port} (overlap {args.overlap}); "
          "Ctrl-C stops", flush=True)
    import uvicorn

    from alignkit.annotate.app import create_app

    app = create_app(store, overlap=args.overlap, auth_token=args.auth_token)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", server_header=False,
                date_header=False, limit_concurrency=256, timeout_keep_alive=30)
    return 0


def _export(args, store) -> int:
    from alignkit.files import output_path_problem, write_json, write_jsonl

    problem = output_path_problem(args.output, "--output")
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    if args.format == "label-studio":
        from alignkit.annotate.interop import to_label_studio

        items = to_label_studio(store)
        write_json(args.output, items)
        print(f"wrote {len(items)} Label Studio tasks to {args.output}", file=sys.stderr)
        return 0
    if args.format == "argilla":
        from alignkit.annotate.interop import to_argilla

        items = to_argilla(store)
        write_json(args.output, items)
        print(f"wrote {len(items)} Argilla records to {args.output}", file=sys.stderr)
        return 0
    if not 0.0 <= args.min_agreement <= 1.0:
        print(f"error: --min-agreement must be between 0 and 1, got {args.min_agreement}", file=sys.stderr)
        return 2
    from alignkit.annotate.export import preference_rows

    rows, counts = preference_rows(store.iter_judgements(), args.min_agreement, args.ties, args.ranking_pairs)
    write_jsonl(args.output, rows)
    rest = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()) if k not in ("rows", "tasks"))
    print(f"wrote {len(rows)} preference rows from {counts.get('tasks', 0)} judged tasks to {args.output}"
          + (f" ({rest})" if rest else ""), file=sys.stderr)
    return 0


def _stats(args, store) -> int:
    from alignkit.annotate.stats import compute_stats, format_stats

    judge = None
    if args.judge:
        from alignkit.judges.backends import JudgeError
        from alignkit.rewards import RewardError
        from alignkit.scoring import load_pairwise_judge

        try:
            judge = load_pairwise_judge(args.judge)
        except (JudgeError, RewardError) as e:
            print(f"error: --judge: {e}", file=sys.stderr)
            return 2
    figures = compute_stats(store, judge)
    print(format_stats(figures))
    if args.json:
        from alignkit.files import write_json

        write_json(args.json, figures)
    return 0


def _import(args, store) -> int:
    from alignkit.annotate.interop import from_argilla, from_label_studio, read_json_list

    items = read_json_list(args.file)
    read = from_label_studio if args.format == "label-studio" else from_argilla
    added, judged = read(store, items, Path(args.file))
    print(f"{args.file}: added {added} tasks and {judged} judgements", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    except SystemExit as e:
        return int(e.code or 0)
    from alignkit.annotate.db import Store, StoreError
    from alignkit.data.io import DataError

    if args.cmd == "loadtest":
        from alignkit.annotate.loadtest import main as loadtest

        return loadtest(args)
    try:
        store = Store(args.db, create=args.cmd not in ("export", "stats"),
                      lease_seconds=60.0 * getattr(args, "lease_minutes", 30.0))
        try:
            if args.cmd == "serve":
                return _serve(args, store)
            if args.cmd == "add-tasks":
                return _add_files(store, args.files)
            if args.cmd == "annotators":
                for name in args.add:
                    print(f"{name}: token {store.add_annotator(name)}")
                if not args.add:
                    print("\n".join(store.annotator_names().values()) or "no annotators yet")
                return 0
            if args.cmd == "export":
                return _export(args, store)
            if args.cmd == "stats":
                return _stats(args, store)
            return _import(args, store)
        finally:
            store.close()
    except (StoreError, DataError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
