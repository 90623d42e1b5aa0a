"""Service commands: worker, enqueue, job, search, stats.

Every handler takes the parsed args and returns an exit code.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from schemas.settings import describe as describe_settings


def register(subparsers) -> None:
    from worker.serve import add_worker_arguments

    p = subparsers.add_parser("worker", help="run worker processes (Celery) for the configured broker",
                              description="Run embedq worker processes.\n\nSettings (environment):\n"
                              + describe_settings(), formatter_class=argparse.RawDescriptionHelpFormatter)
    add_worker_arguments(p)
    p.set_defaults(func=cmd_worker)

    p = subparsers.add_parser("enqueue", help="send texts from a file as embed jobs")
    p.add_argument("file", help="text file (one text per line), .jsonl (one job per line: a list of "
                   "strings or {\"texts\": [...]}) or - for stdin")
    p.add_argument("--per-job", type=int, default=32, help="texts per job for plain text files (default 32)")
    p.add_argument("--model", help="model the job asks for (must be the one the workers serve)")
    p.add_argument("--prompt-name")
    p.add_argument("--dims", type=int)
    p.add_argument("--no-normalize", action="store_true")
    p.add_argument("--overflow", choices=("truncate", "reject", "chunk"), default="truncate",
                   help="texts over the model's window: cut them (default), fail the job, or embed them in "
                        "overlapping windows")
    p.add_argument("--overlap", type=int, help="with --overflow chunk: tokens consecutive windows share")
    p.add_argument("--wait", action="store_true", help="wait for the jobs and print their summaries (exit 1 if "
                   "one failed, 3 if one was still running at --timeout)")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds to wait per job with --wait")
    p.set_defaults(func=cmd_enqueue)

    p = subparsers.add_parser("job", help="show a job: status, metrics, vectors")
    p.add_argument("job_id")
    p.add_argument("--vectors", action="store_true", help="also print the vectors")
    p.set_defaults(func=cmd_job)

    p = subparsers.add_parser("search", help="nearest stored texts to a query (cosine)")
    p.add_argument("text")
    p.add_argument("-k", type=int, default=5)
    p.add_argument("--model")
    p.add_argument("--prompt-name")
    p.add_argument("--dims", type=int)
    p.add_argument("--chunks", action="store_true", help="search the chunks of overflow=chunk jobs, with offsets")
    p.set_defaults(func=cmd_search)

    p = subparsers.add_parser("stats", help="latency statistics over stored jobs, with a PNG plot")
    p.add_argument("--plot", default="embedq-stats.png", help="where to write the plot (default embedq-stats.png)")
    p.add_argument("--no-plot", action="store_true")
    p.add_argument("--json", action="store_true", help="print the statistics as JSON")
    p.set_defaults(func=cmd_stats)

    p = subparsers.add_parser("flower", help="Flower, Celery's monitor, for the configured Redis broker",
                              description="Run Flower on the configured broker (Redis only: the embedded "
                              "SQLite broker carries no events). It listens on 127.0.0.1 unless --address says "
                              "otherwise; another address needs EMBEDQ_FLOWER_BASIC_AUTH=user:password "
                              "(comma-separated for several users). Task arguments (users' texts) are never "
                              "shown: jobs carry only their text count in Flower.")
    p.add_argument("--address", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=5555)
    p.set_defaults(func=cmd_flower)


# -- handlers ---------------------------------------------------------------------------------------
def cmd_worker(args) -> int:
    from worker.serve import run

    return run(args)


def read_jobs(path: str, per_job: int) -> list[list[str]]:
    """Jobs from a file: .jsonl = one job per line, anything else = one text per line."""
    if per_job < 1:
        raise ValueError("--per-job must be >= 1")
    raw = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    if path.endswith(".jsonl"):
        jobs = []
        for n, line in enumerate(raw.splitlines(), 1):
            if not line.strip():
                continue
            item = json.loads(line)
            texts = item.get("texts") if isinstance(item, dict) else item
            if isinstance(texts, str):
                texts = [texts]
            if not isinstance(texts, list):
                raise ValueError(f"{path}:{n}: expected a list of strings or {{\"texts\": [...]}}")
            jobs.append(texts)
        return jobs
    lines = [ln for ln in raw.splitlines() if ln.strip()]
    return [lines[i:i + per_job] for i in range(0, len(lines), per_job)]


def cmd_enqueue(args) -> int:
    from worker.tasks import embed

    try:
        jobs = read_jobs(args.file, args.per_job)
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not jobs:
        print("error: no texts in the input", file=sys.stderr)
        return 2
    from celery.exceptions import TimeoutError as WaitTimeout

    from worker.delivery_client import BrokerUnavailable

    kw = dict(model=args.model, prompt_name=args.prompt_name, dims=args.dims, normalize=not args.no_normalize)
    if args.overflow != "truncate":
        kw.update(overflow=args.overflow, overflow_overlap=args.overlap)
    try:
        results = [embed.delay(texts, **kw) for texts in jobs]
    except BrokerUnavailable as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    rc = 0
    for r in results:
        if not args.wait:
            print(r.id)
            continue
        try:
            print(json.dumps(r.get(timeout=args.timeout)))
        except WaitTimeout:
            # Our wait ended, not the job: it is still queued or running, and will be stored.
            print(json.dumps({"job_id": r.id, "status": "running", "error": None,
                              "note": f"not finished within --timeout {args.timeout:g} s; see: embedq job {r.id}"}))
            rc = 3
        except Exception as e:
            print(json.dumps({"job_id": r.id, "status": "failed", "error": f"{type(e).__name__}: {e}"}))
            rc = 1
    return rc


def cmd_job(args) -> int:
    import storage

    db = storage.connect()
    try:
        job = storage.get_job(db, args.job_id)
    except storage.JobNotFound as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    out = {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in job.items()}
    if job["status"] == "done":
        out["metrics"] = storage.get_metrics(db, args.job_id)
        if args.vectors:
            out["vectors"] = storage.get_vectors(db, args.job_id).tolist()
    print(json.dumps(out, indent=2))
    return 0 if job["status"] != "failed" else 1


def cmd_search(args) -> int:
    import storage
    from worker.search import nearest_text

    try:
        hits = nearest_text(storage.connect(), args.text, k=args.k, model=args.model, prompt_name=args.prompt_name,
                            dims=args.dims, chunks=args.chunks)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not hits:
        print("no stored vectors for this model and size")
        return 0
    for job_id, idx, text, score, *chunk in hits:
        short = text if len(text) <= 80 else text[:77] + "..."
        where = f"[{idx}]" + (f" chunk {chunk[0]['chunk']} chars {chunk[0]['char_start']}:{chunk[0]['char_end']}"
                              if chunk else "")
        print(f"{score:8.4f}  {job_id}{where}  {short}")
    return 0


def cmd_stats(args) -> int:
    import storage

    from . import stats

    db = storage.connect()
    metrics = storage.all_metrics(db)
    result = stats.compute(metrics, storage.status_counts(db))
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(stats.format_table(result))
        failed = storage.failed_jobs(db, limit=5)
        if failed:
            print("\nrecent failures:")
            for job_id, why in failed:
                print(f"  {job_id}: {why[:160]}")
    if not args.no_plot:
        path = stats.plot(metrics, args.plot)
        print(f"\nplot: {path}", file=sys.stderr if args.json else sys.stdout)
    return 0


LOOPBACK = ("127.0.0.1", "localhost", "::1")


def cmd_flower(args) -> int:
    import os

    from schemas.settings import get_settings
    from worker.delivery_client import is_redis

    broker = get_settings().broker()
    if not is_redis(broker):
        print("error: Flower needs a Redis broker (EMBEDQ_BROKER_URL=redis://...): the embedded SQLite broker "
              "carries no events or worker heartbeats, so Flower would show no workers", file=sys.stderr)
        return 2
    auth = os.environ.get("EMBEDQ_FLOWER_BASIC_AUTH", "")
    if args.address not in LOOPBACK and not auth:
        print(f"error: refusing to serve Flower on {args.address} without authentication: Flower shows "
              "every worker and job and can control workers; set EMBEDQ_FLOWER_BASIC_AUTH=user:password",
              file=sys.stderr)
        return 2
    argv = [sys.executable, "-m", "celery", "-A", "worker.app", "flower", f"--address={args.address}",
            f"--port={args.port}"]
    env = dict(os.environ)
    if auth:
        env["FLOWER_BASIC_AUTH"] = auth  # from the environment, never on the command line (ps shows it)
    os.execve(sys.executable, argv, env)
    return 0  # not reached
