"""`embedq bench faults`: the service under faults injected for real, counted job by job.

Each scenario runs real processes on this machine (a private Redis with AOF on a free port, worker
processes under `embedq worker`'s supervisor, SQLite or PostgreSQL from pgserver), sends a steady
stream of 1-8-text jobs from a client thread with `embed.delay`, injects its fault while the stream
runs (SIGKILL a worker process; SIGTERM or SIGKILL Redis and restart it after an outage; stop the
database), then waits for every job to settle and counts, per job id:

  submitted  jobs `embed.delay` accepted;    refused: jobs it refused (BrokerUnavailable) while
  done       stored with vectors;            the broker was down, with how long refusing took;
  failed     stored as failed;               lost: submitted, neither done nor failed by the end;
  duplicated vector rows beyond a job's count (a job written twice);
  wrong      done jobs whose vectors differ from native.Model.embed on the same texts;
  recover_s  from the end of the last fault until every submitted job had settled (a backlog built
             up during an outage drains first; "lost" means nothing settled for 90 s and it never did).

The tests (tests/service/test_faults.py) run short variants and require 0 lost, 0 duplicated,
0 wrong, 0 failed; this command runs the long ones and writes the table into BENCHMARKS.md.
Everything talks to 127.0.0.1 only; streams and waits are bounded in count and time.
"""
from __future__ import annotations

import argparse
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .report import cpu_name, replace_section, reproduce

SECTION = "faults"
SETTLE_S = 90.0  # after the last fault, no job may go this long without another settling


# -- the pieces ---------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    """A private redis-server on 127.0.0.1 (AOF everysec unless told otherwise), stoppable at will."""

    def __init__(self, workdir: Path, aof: bool = True):
        self.dir = Path(workdir) / "redis"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.aof = aof
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> "RedisServer":
        persistence = ["--appendonly", "yes", "--appendfsync", "everysec"] if self.aof else ["--appendonly", "no"]
        self.proc = subprocess.Popen(
            ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port), "--dir", str(self.dir), "--save", "",
             *persistence], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        import redis

        client = redis.Redis.from_url(self.url, socket_connect_timeout=1)
        deadline = time.monotonic() + 30
        while True:
            try:
                if client.ping():
                    return self
            except redis.exceptions.RedisError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server on port {self.port} did not start")
            time.sleep(0.05)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=30)

    def restart(self, sig: int, outage_s: float) -> None:
        self.stop(sig)
        time.sleep(outage_s)
        self.start()


def deployment(workdir: Path, broker_url: str, database_url: str, model, **settings):
    """The service on this machine (worker.processes.Deployment), this process its client."""
    from worker.processes import Deployment

    return Deployment(broker_url, workdir, model, database_url, queue="faults", node="faults", **settings).client()


def alive(dep, timeout: float = 60.0) -> int:
    """Worker processes running, once every supervisor has had `timeout` to restart its dead ones."""
    deadline = time.monotonic() + timeout
    while True:
        n = sum(len(w.children()) for w in dep.workers if w.proc.poll() is None)
        if n >= len(dep.workers) or time.monotonic() > deadline:
            return n
        time.sleep(0.2)


@dataclass
class Stream:
    """A client thread sending jobs of 1-8 distinct texts at `rate` jobs/s until stopped."""

    rate: float = 10.0
    seed: int = 1
    jobs: dict[str, list[str]] = field(default_factory=dict)   # job id -> texts
    refused: list[float] = field(default_factory=list)          # seconds each refusal took
    errors: list[str] = field(default_factory=list)

    def __post_init__(self):
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="faults-stream", daemon=True)

    def start(self) -> "Stream":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(60)

    def _run(self) -> None:
        from worker.delivery_client import BrokerUnavailable
        from worker.tasks import embed

        rng = random.Random(self.seed)
        n = 0
        while not self._stop.is_set():
            texts = [f"fault stream {self.seed} job {n} text {i}: " + " ".join(rng.choice(WORDS) for _ in range(8))
                     for i in range(rng.randint(1, 8))]
            n += 1
            t = time.monotonic()
            try:
                self.jobs[embed.delay(texts).id] = texts
            except BrokerUnavailable:
                self.refused.append(time.monotonic() - t)
            except Exception as e:  # anything else is a finding: recorded, not hidden
                self.errors.append(f"{type(e).__name__}: {e}")
            self._stop.wait(max(0.0, 1.0 / self.rate - (time.monotonic() - t)))


WORDS = ("queue worker batch vector model token search index cluster latency memory thread kernel redis "
         "database river mountain signal outage restart").split()


@dataclass
class Outcome:
    scenario: str
    submitted: int
    refused: int
    done: int
    failed: int
    lost: int
    duplicated: int
    wrong: int
    recover_s: float
    refuse_max_s: float = 0.0
    notes: str = ""


def job_states(conn, job_ids: list[str]) -> dict[str, str]:
    from sqlalchemy import select

    from storage.models import Job

    out = {}
    for i in range(0, len(job_ids), 500):
        out.update(conn.execute(select(Job.id, Job.status).where(Job.id.in_(job_ids[i:i + 500]))).all())
    return out


def vector_counts(conn, job_ids: list[str]) -> dict[str, int]:
    from sqlalchemy import func, select

    from storage.models import Embedding

    out = {}
    for i in range(0, len(job_ids), 500):
        out.update(conn.execute(select(Embedding.job_id, func.count()).where(Embedding.job_id.in_(job_ids[i:i + 500]))
                                .group_by(Embedding.job_id)).all())
    return out


def settle(database_url: str, job_ids: list[str], stall_s: float, cap_s: float = 1800.0) -> float | None:
    """Wait until every job has a done or failed row; the time it took, or None once `stall_s` passes
    with no job settling (a backlog still draining is waited for, up to `cap_s`)."""
    import storage

    db = storage.connect(database_url)
    t0 = last_progress = time.monotonic()
    pending = set(job_ids)
    while pending:
        try:
            with db.read() as c:
                states = job_states(c, list(pending))
            settled = {j for j, st in states.items() if st in ("done", "failed")}
            if settled:
                pending -= settled
                last_progress = time.monotonic()
        except Exception:  # the database may be the thing that is down
            pass
        if not pending:
            break
        now = time.monotonic()
        if now - last_progress > stall_s or now - t0 > cap_s:
            return None
        time.sleep(0.25)
    return time.monotonic() - t0


def tally(scenario: str, database_url: str, stream: Stream, recover_s: float | None, model, notes: str = "") -> Outcome:
    """Count what happened to every job of the stream (see the module docstring)."""
    import storage

    db = storage.connect(database_url)
    with db.read() as c:
        status = job_states(c, list(stream.jobs))
        rows = vector_counts(c, list(stream.jobs))
    done = [j for j, s in status.items() if s == "done"]
    failed = [j for j, s in status.items() if s == "failed"]
    duplicated = sum(max(0, rows.get(j, 0) - len(stream.jobs[j])) for j in stream.jobs)
    wrong = 0
    for j in done:
        if not np.array_equal(storage.get_vectors(db, j), model.embed(stream.jobs[j])):
            wrong += 1
    return Outcome(scenario, submitted=len(stream.jobs), refused=len(stream.refused), done=len(done),
                   failed=len(failed), lost=len(stream.jobs) - len(done) - len(failed), duplicated=duplicated,
                   wrong=wrong, recover_s=float("nan") if recover_s is None else round(recover_s, 1),
                   refuse_max_s=round(max(stream.refused, default=0.0), 2),
                   notes="; ".join(filter(None, [notes] + stream.errors[:3])))


# -- the scenarios -----------------------------------------------------------------------------------
def worker_kills(dep, model, kills: int, label: str, rate: float = 8.0, seed: int = 1,
                 gap_s: tuple[float, float] = (1.0, 4.0)) -> Outcome:
    """SIGKILL a worker process at random moments under a steady stream; its supervisor restarts it."""
    rng = random.Random(seed)
    stream = Stream(rate=rate, seed=seed).start()
    restarts = 0
    try:
        for _ in range(kills):
            time.sleep(rng.uniform(*gap_s))
            w = rng.choice(dep.workers)
            deadline = time.monotonic() + 60
            while not w.children() and time.monotonic() < deadline:  # its last kill's restart under way
                time.sleep(0.05)
            if w.children():
                w.kill_worker()
                restarts += 1
    finally:
        time.sleep(1.0)
        stream.stop()
    recover = settle(dep.env["EMBEDQ_DATABASE_URL"], list(stream.jobs), SETTLE_S)
    return tally(label, dep.env["EMBEDQ_DATABASE_URL"], stream, recover, model,
                 notes=f"{restarts} kills; {alive(dep)} worker processes alive after")


def redis_restarts(dep, redis: RedisServer, model, restarts: int, outage_s: float, sig: int,
                   label: str, rate: float = 8.0, seed: int = 2) -> Outcome:
    """Stop Redis (SIGTERM or SIGKILL), keep it down `outage_s`, start it again; `restarts` times."""
    stream = Stream(rate=rate, seed=seed).start()
    try:
        for _ in range(restarts):
            time.sleep(2.0)
            redis.restart(sig, outage_s)
    finally:
        time.sleep(2.0)
        stream.stop()
    recover = settle(dep.env["EMBEDQ_DATABASE_URL"], list(stream.jobs), SETTLE_S)
    return tally(label, dep.env["EMBEDQ_DATABASE_URL"], stream, recover, model,
                 notes=f"{alive(dep)} worker processes alive after")


def database_outage(dep, stop, start, model, outage_s: float, label: str, rate: float = 8.0,
                    seed: int = 3) -> Outcome:
    """Take the database away for `outage_s` under a steady stream, then bring it back."""
    stream = Stream(rate=rate, seed=seed).start()
    try:
        time.sleep(2.0)
        stop()
        time.sleep(outage_s)
        start()
    finally:
        time.sleep(2.0)
        stream.stop()
    recover = settle(dep.env["EMBEDQ_DATABASE_URL"], list(stream.jobs), SETTLE_S)
    return tally(label, dep.env["EMBEDQ_DATABASE_URL"], stream, recover, model)


# -- the command --------------------------------------------------------------------------------------
def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--kills", type=int, default=20, help="worker SIGKILLs per kill scenario (default 20)")
    p.add_argument("--restarts", type=int, default=20, help="Redis restarts per restart scenario (default 20)")
    p.add_argument("--db-outage", default="30,300", help="database outages in seconds (default 30,300)")
    p.add_argument("--scenarios", default="kills,restarts,db", help="which to run (default kills,restarts,db)")
    p.add_argument("--model", help="model (default EMBEDQ_MODEL)")
    p.add_argument("--output", default="BENCHMARKS.md")
    p.add_argument("--no-write", action="store_true", help="print only, leave BENCHMARKS.md alone")


def run(args) -> int:
    import native

    from schemas.settings import get_settings

    model_name = args.model or get_settings().model
    model = native.Model(model_name, threads=1)
    outages = [float(x) for x in args.db_outage.split(",") if x]
    results: list[Outcome] = []
    with tempfile.TemporaryDirectory(prefix="embedq-faults-") as tmp:
        tmp = Path(tmp)
        chosen = set(args.scenarios.split(","))
        for db_kind in ("sqlite", "postgresql") if "kills" in chosen else ():
            for workers in (1, 2):
                results.append(_kills(tmp / f"k-{db_kind}-{workers}", model, db_kind, workers, args.kills))
                print(_line(results[-1]), file=sys.stderr, flush=True)
        for sig, outage in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 3.0), (signal.SIGTERM, 30.0),
                            (signal.SIGKILL, 30.0)) if "restarts" in chosen else ():
            n = args.restarts if outage < 10 else max(1, args.restarts // 10)
            results.append(_restarts(tmp / f"r-{sig}-{outage}", model, sig, outage, n))
            print(_line(results[-1]), file=sys.stderr, flush=True)
        for outage in outages if "db" in chosen else ():
            results.append(_db_outage(tmp / f"d-{outage}", model, outage))
            print(_line(results[-1]), file=sys.stderr, flush=True)
    md = render(results, args)
    print(md)
    if not args.no_write:
        replace_section(args.output, SECTION, md)
    return 0 if all(r.lost == 0 and r.duplicated == 0 and r.wrong == 0 for r in results) else 1


def _kills(workdir: Path, model, db_kind: str, workers: int, kills: int) -> Outcome:
    redis = RedisServer(workdir).start()
    pg = None
    try:
        url = f"sqlite:///{workdir / 'faults.sqlite'}"
        if db_kind == "postgresql":
            pg, url = pg_database(workdir)
        dep = deployment(workdir, redis.url, url, model.path, slots=16, batch_wait_ms=20)
        try:
            for i in range(workers):
                dep.start_worker(f"w{i}")
            return worker_kills(dep, model, kills, f"worker SIGKILL x{kills}, {workers} worker(s), Redis + "
                                f"{'PostgreSQL' if pg else 'SQLite'}")
        finally:
            dep.close()
    finally:
        redis.stop(signal.SIGKILL)
        if pg is not None:
            pg.cleanup()


def _restarts(workdir: Path, model, sig: int, outage: float, n: int) -> Outcome:
    redis = RedisServer(workdir).start()
    try:
        dep = deployment(workdir, redis.url, f"sqlite:///{workdir / 'faults.sqlite'}", model.path, slots=16)
        try:
            dep.start_worker("w")
            name = "SIGTERM" if sig == signal.SIGTERM else "SIGKILL"
            return redis_restarts(dep, redis, model, n, outage, sig,
                                  f"Redis {name}, {outage:g} s down, x{n} (AOF everysec)")
        finally:
            dep.close()
    finally:
        redis.stop(signal.SIGKILL)


def _db_outage(workdir: Path, model, outage: float) -> Outcome:
    redis = RedisServer(workdir).start()
    pg, url = pg_database(workdir)
    box = {"srv": pg}
    try:
        dep = deployment(workdir, redis.url, url, model.path, slots=16)
        try:
            dep.start_worker("w")
            return database_outage(dep, lambda: box["srv"].cleanup(), lambda: box.update(srv=pg_restart(workdir)),
                                   model, outage, f"PostgreSQL stopped {outage:g} s")
        finally:
            dep.close()
    finally:
        redis.stop(signal.SIGKILL)
        box["srv"].cleanup()


def pg_database(workdir: Path):
    """A private PostgreSQL (pgserver, with pgvector) in workdir: (server, SQLAlchemy URL)."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
        import pgserver

        srv = pgserver.get_server(pg_dir(workdir), cleanup_mode="stop")
    srv.psql("CREATE EXTENSION IF NOT EXISTS vector;")
    return srv, srv.get_uri().replace("postgresql://", "postgresql+psycopg://", 1)


def pg_restart(workdir: Path):
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
        import pgserver

        return pgserver.get_server(pg_dir(workdir), cleanup_mode="stop")


def pg_dir(workdir: Path) -> Path:
    # The server's unix socket lives in its data directory: keep the path short (108-byte limit).
    d = Path(tempfile.gettempdir()) / f"eqpg-{abs(hash(str(workdir))) % 10**8}"
    d.mkdir(exist_ok=True)
    return d


COLUMNS = ("scenario", "submitted", "refused", "done", "failed", "lost", "duplicated", "wrong", "recover_s",
           "refuse_max_s", "notes")


def _line(r: Outcome) -> str:
    return " | ".join(str(v) for v in asdict(r).values())


def render(results: list[Outcome], args) -> str:
    head = ("| scenario | submitted | refused (max s) | done | failed | lost | duplicated | wrong vectors | "
            "time to recover (s) | notes |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    rows = [f"| {r.scenario} | {r.submitted} | {r.refused} ({r.refuse_max_s:g}) | {r.done} | {r.failed} | {r.lost} | "
            f"{r.duplicated} | {r.wrong} | {r.recover_s:g} | {r.notes} |" for r in results]
    cmd = reproduce("faults", [("--kills", args.kills), ("--restarts", args.restarts),
                               ("--db-outage", args.db_outage)])
    return "\n".join([
        "## Faults (`embedq bench faults`)", "",
        f"{cpu_name()}; a steady stream of 1-8-text jobs (8 jobs/s) from one client, MiniLM F32 workers with 1 "
        "thread each under `embedq worker`; a private Redis with AOF everysec. *Refused*: `embed.delay` raised "
        "BrokerUnavailable while Redis was down (the job was never enqueued; the client knew at once). *Time "
        "to recover*: from the end of the last fault until every submitted job was settled.", "",
        head, *rows, "", cmd])
