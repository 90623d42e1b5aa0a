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

bench/faults_edge.py adds the scenarios that are one exact sequence each: a job sent to a stopped
worker that is then killed, Redis without persistence restarted with jobs queued (lost by design:
the row must show exactly the jobs that were waiting in Redis), bad messages and bad model files
(failed by design: every refused job a failed row, none lost).

The tests (tests/service/test_faults.py) run short variants and require 0 lost, 0 duplicated,
0 wrong, 0 failed (or exactly the expected counts); this command runs the long ones and writes the
table into BENCHMARKS.md.
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
    # What the row must show: 0 unless the scenario loses or fails jobs by design (Redis without
    # persistence loses what was queued in it; bad messages fail). `problem`: a check that failed.
    expect_lost: int = 0
    expect_failed: int = 0
    problem: str = ""

    def ok(self) -> bool:
        return (self.lost, self.failed, self.duplicated, self.wrong, self.problem) == \
            (self.expect_lost, self.expect_failed, 0, 0, "")


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
# In table order. kills, restarts, db: a stream under the fault; the others: bench/faults_edge.py.
SCENARIOS = ("kills", "stopkill", "restarts", "nopersist", "db", "bad")


def parse_scenarios(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = sorted(set(names) - set(SCENARIOS))
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown scenario(s) {', '.join(unknown) or '(none given)'}; "
                                         f"choose from {','.join(SCENARIOS)}")
    return [n for n in SCENARIOS if n in names]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--kills", type=int, default=20, help="worker SIGKILLs per kill scenario (default 20)")
    p.add_argument("--stopkills", type=int, default=3,
                   help="SIGSTOP-send-SIGKILL sequences per database (default 3; each waits out delivery_stale_s)")
    p.add_argument("--restarts", type=int, default=20, help="Redis restarts per restart scenario (default 20)")
    p.add_argument("--db-outage", default="30,300", help="database outages in seconds (default 30,300)")
    p.add_argument("--scenarios", type=parse_scenarios, default=",".join(SCENARIOS),
                   help=f"which to run (default all: {','.join(SCENARIOS)}); a subset prints its table and "
                        "leaves BENCHMARKS.md alone")
    p.add_argument("--model", help="model (default EMBEDQ_MODEL)")
    p.add_argument("--output", default="BENCHMARKS.md")
    p.add_argument("--no-write", action="store_true", help="print only, leave BENCHMARKS.md alone")


def plan(args, model, tmp: Path) -> list[tuple[str, object]]:
    """(scenario, a callable that runs one row) for every row the arguments ask for, in table order."""
    rows: list[tuple[str, object]] = []
    chosen = args.scenarios
    for name in chosen:
        if name == "kills":
            rows += [(name, lambda d=d, w=w: _kills(tmp / f"k-{d}-{w}", model, d, w, args.kills))
                     for d in ("sqlite", "postgresql") for w in (1, 2)]
        elif name == "stopkill":
            rows += [(name, lambda d=d: _stopkill(tmp / f"s-{d}", model, d, args.stopkills))
                     for d in ("sqlite", "postgresql")]
        elif name == "restarts":
            for sig, outage in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 3.0), (signal.SIGTERM, 30.0),
                                (signal.SIGKILL, 30.0)):
                n = args.restarts if outage < 10 else max(1, args.restarts // 10)
                rows.append((name, lambda sig=sig, outage=outage, n=n:
                             _restarts(tmp / f"r-{sig}-{outage}", model, sig, outage, n)))
        elif name == "nopersist":
            rows.append((name, lambda: _nopersist(tmp / "np", model)))
        elif name == "db":
            rows += [(name, lambda o=o: _db_outage(tmp / f"d-{o}", model, o))
                     for o in (float(x) for x in args.db_outage.split(",") if x)]
        elif name == "bad":
            rows += [(name, lambda: _bad(tmp / "bad-msg", model, "messages", "bad messages")),
                     (name, lambda: _bad(tmp / "bad-nan", model, "nan_epsilon", "bad model: NaN layer_norm_epsilon")),
                     (name, lambda: _bad(tmp / "bad-ovf", model, "overflow", "bad model: weights that overflow"))]
    return rows


def run(args) -> int:
    import native

    from schemas.settings import get_settings

    model_name = args.model or get_settings().model
    model = native.Model(model_name, threads=1)
    results: list[Outcome] = []
    with tempfile.TemporaryDirectory(prefix="embedq-faults-") as tmp:
        for _, row in plan(args, model, Path(tmp)):
            results.append(row())
            print(_line(results[-1]), file=sys.stderr, flush=True)
    md = render(results, args)
    print(md)
    if writes(args):
        replace_section(args.output, SECTION, md)
    return 0 if all(r.ok() for r in results) else 1


def writes(args) -> bool:
    # The section is the whole table: a run of some scenarios must not replace it with its few rows.
    return not args.no_write and list(args.scenarios) == list(SCENARIOS)


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


def _stopkill(workdir: Path, model, db_kind: str, reps: int) -> Outcome:
    from .faults_edge import stop_then_kill

    redis = RedisServer(workdir).start()
    pg = None
    try:
        url = f"sqlite:///{workdir / 'faults.sqlite'}"
        if db_kind == "postgresql":
            pg, url = pg_database(workdir)
        dep = deployment(workdir, redis.url, url, model.path, slots=16)
        try:
            dep.start_worker("w")
            return stop_then_kill(dep, model, reps, f"SIGSTOP idle worker, send, SIGKILL x{reps}, Redis + "
                                  f"{'PostgreSQL' if pg else 'SQLite'}")
        finally:
            dep.close()
    finally:
        redis.stop(signal.SIGKILL)
        if pg is not None:
            pg.cleanup()


def _nopersist(workdir: Path, model) -> Outcome:
    from .faults_edge import restart_without_persistence

    redis = RedisServer(workdir, aof=False).start()
    try:
        # The worker holds `slots` jobs in its batch buffer through the restart (batch_wait_ms).
        dep = deployment(workdir, redis.url, f"sqlite:///{workdir / 'faults.sqlite'}", model.path, slots=4,
                         batch_wait_ms=8000)
        try:
            return restart_without_persistence(dep, redis, model, "Redis WITHOUT persistence restarted (SIGTERM, "
                                               "3 s down): 5 results, 4 jobs held by a worker, 15 queued")
        finally:
            dep.close()
    finally:
        redis.stop(signal.SIGKILL)


def _bad(workdir: Path, model, what: str, label: str) -> Outcome:
    """what: messages, nan_epsilon (a file refused at load) or overflow (a file that loads)."""
    from . import faults_edge as edge

    redis = RedisServer(workdir).start()
    try:
        path = model.path
        if what == "overflow":
            path = edge.patched_copy(Path(model.path), workdir / "overflow.gguf", "overflow")
        dep = deployment(workdir, redis.url, f"sqlite:///{workdir / 'faults.sqlite'}", path, slots=16)
        try:
            if what == "nan_epsilon":
                bad = edge.patched_copy(Path(model.path), workdir / "nan-epsilon.gguf", "nan_epsilon")
                return edge.refused_model(dep, model, bad, label)
            if what == "overflow":
                return edge.overflowing_model(dep, model, label)
            dep.start_worker("w")
            return edge.bad_messages(dep, model, label)
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
           "refuse_max_s", "notes", "expect_lost", "expect_failed", "problem")


def _line(r: Outcome) -> str:
    return " | ".join(str(v) for v in asdict(r).values())


def _expected(r: Outcome, got: int, want: int) -> str:
    # A count the scenario expects to be non-zero is shown against its expectation.
    return f"{got}" if want == 0 and got == 0 else f"{got} (expected {want})"


def render(results: list[Outcome], args) -> str:
    head = ("| scenario | submitted | refused (max s) | done | failed | lost | duplicated | wrong vectors | "
            "time to recover (s) | notes |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    rows = [f"| {r.scenario} | {r.submitted} | {r.refused} ({r.refuse_max_s:g}) | {r.done} | "
            f"{_expected(r, r.failed, r.expect_failed)} | {_expected(r, r.lost, r.expect_lost)} | "
            f"{r.duplicated} | {r.wrong} | {r.recover_s:g} | "
            f"{'; '.join(filter(None, ['CHECK FAILED: ' + r.problem if r.problem else '', r.notes]))} |"
            for r in results]
    # Only the options of the scenarios that ran.
    options = [(opt, value) for opt, value, name in (
        ("--kills", args.kills, "kills"), ("--stopkills", args.stopkills, "stopkill"),
        ("--restarts", args.restarts, "restarts"), ("--db-outage", args.db_outage, "db")) if name in args.scenarios]
    if list(args.scenarios) != list(SCENARIOS):
        options.append(("--scenarios", ",".join(args.scenarios)))
    return "\n".join([
        "## Faults (`embedq bench faults`)", "",
        f"{cpu_name()}; a steady stream of 1-8-text jobs (8 jobs/s) from one client, MiniLM F32 workers with 1 "
        "thread each under `embedq worker`; a private Redis with AOF everysec unless the row says otherwise. "
        "*Refused*: `embed.delay` raised BrokerUnavailable while Redis was down (the job was never enqueued; "
        "the client knew at once). *Time to recover*: from the end of the last fault until every submitted job "
        "was settled (nan: some never were). Rows whose scenario fails or loses jobs by design show the count "
        "they must equal.", "",
        head, *rows, "", reproduce("faults", options)])
