"""The fault scenarios of `embedq bench faults` that are one exact sequence each, not a stream:

  stopkill   issue 10's deterministic loss: an idle worker process stopped (SIGSTOP) inside its
             blocking pop, a job sent (Redis hands it to the stopped process's socket: it is in no
             queue and no unacked hash), the process killed (SIGKILL) and restarted by its supervisor.
             The job must complete (the delivery ledger re-publishes it).
  nopersist  Redis WITHOUT persistence restarted with results stored, jobs held by a worker and jobs
             queued: counts exactly what is lost (the README states it from this row).
  bad        messages the worker refuses and model files that are wrong: each job is counted, every
             refused one must be a failed row, none lost.

Each returns a faults.Outcome whose expect_lost / expect_failed say what the row must show.
"""
from __future__ import annotations

import os
import shutil
import signal
import struct
import time
import uuid
from pathlib import Path

from . import faults
from .faults import Outcome, Stream, settle, tally


def _wait(cond, timeout: float, step: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(step)
    return cond()


def _delay(texts: list[str], tries: int = 20):
    """embed.delay, retried while a just-restarted broker still refuses (BrokerUnavailable)."""
    from worker.delivery_client import BrokerUnavailable
    from worker.tasks import embed

    for i in range(tries):
        try:
            return embed.delay(texts)
        except BrokerUnavailable:
            if i == tries - 1:
                raise
            time.sleep(0.5)


# -- SIGSTOP, enqueue, SIGKILL ------------------------------------------------------------------------
def stop_then_kill(dep, model, reps: int, label: str) -> Outcome:
    """`reps` times: stop the idle worker process, send one job, kill the process, let its supervisor
    restart it, and wait for the job. recover_s is the longest kill-to-settled time."""
    import redis

    r = redis.Redis.from_url(dep.env["EMBEDQ_BROKER_URL"])
    w = dep.workers[0]
    stream = Stream()
    in_flight, recover = 0, []
    for i in range(reps):
        child = _wait(lambda: w.children(), 120)
        if not child:
            stream.errors.append(f"rep {i}: no worker process to stop")
            break
        # A job first: the worker serves and this client is connected, so the next send is quick.
        _delay([f"stopkill rep {i}: warm-up"]).get(timeout=120)
        # Kombu's BRPOP times out on the server every second and a stopped process cannot issue the
        # next one: stop it while it is blocked in one (CLIENT LIST flag b) and send at once.
        for _ in range(50):
            os.kill(child[0], signal.SIGSTOP)
            if _wait(lambda: _blocked_in_pop(r), 0.05, 0.005):
                break
            os.kill(child[0], signal.SIGCONT)
            time.sleep(0.05)
        texts = [f"stopkill rep {i}: a message that reaches a stopped worker"]
        job = _delay(texts)
        stream.jobs[job.id] = texts
        # Popped into the stopped process's socket: in no queue and no unacked hash, only in the ledger.
        # (The unacked hash may still hold the warm-up job: its ack waits for the stopped process.)
        if _wait(lambda: r.llen(dep.queue) == 0, 10) and not any(job.id.encode() in v for v in r.hvals("unacked")):
            in_flight += 1
        mark = len(w.log())
        t_kill = time.monotonic()
        os.kill(child[0], signal.SIGKILL)
        w.wait_for_log(" ready.", timeout=120, after=mark)
        took = settle(dep.env["EMBEDQ_DATABASE_URL"], [job.id], faults.SETTLE_S)
        recover.append(None if took is None else time.monotonic() - t_kill)
    done = [t for t in recover if t is not None]
    o = tally(label, dep.env["EMBEDQ_DATABASE_URL"], stream,
              max(done) if len(done) == len(recover) and done else None, model,
              notes=f"{in_flight} of {len(recover)} jobs were in no queue and no unacked hash at the kill; "
                    f"delivery_stale_s {dep.env.get('EMBEDQ_DELIVERY_STALE_S', '30 (default)')}")
    if in_flight < reps:  # the row would not show what it says it shows
        o.problem = f"only {in_flight} of {reps} jobs reached the stopped worker"
    return o


def _blocked_in_pop(r) -> bool:
    return any(c.get("cmd") == "brpop" and "b" in c.get("flags", "") for c in r.client_list())


# -- Redis without persistence -----------------------------------------------------------------------
def restart_without_persistence(dep, redis_server, model, label: str, done_first: int = 5, queued: int = 15,
                                after: int = 3, stall_s: float = 30.0) -> Outcome:
    """Redis (no AOF, no RDB) stopped and started again while it holds: the results of `done_first`
    done jobs; `slots` jobs a worker has taken (they wait in its batch buffer: dep's batch_wait_ms is
    long); and `queued` jobs waiting in the queue (the worker takes no more than `slots`). Then
    `after` jobs are sent. A job is counted lost once nothing has settled for `stall_s` (its ledger
    entry went with Redis, so nothing can bring it back)."""
    import redis

    # The service's app, not Celery's current one (another app may be current in this process).
    from worker.app import app

    r = redis.Redis.from_url(dep.env["EMBEDQ_BROKER_URL"])
    slots = int(dep.env["EMBEDQ_SLOTS"])
    stream = Stream()

    def send(n: int, what: str) -> list[str]:
        ids = []
        for i in range(n):
            texts = [f"nopersist {what} {i}", "a second text"][: 1 + i % 2]
            ids.append(_delay(texts).id)
            stream.jobs[ids[-1]] = texts
        return ids

    dep.start_worker("np")
    first = send(done_first, "stored before the restart")
    for j in first:
        app.AsyncResult(j).get(timeout=120)
    held = send(slots, "held by the worker at the restart")
    _wait(lambda: r.llen(dep.queue) == 0 and r.hlen("unacked") == slots, 10)
    held_n = r.hlen("unacked")
    waiting = send(queued, "queued at the restart")
    time.sleep(0.5)
    in_queue = r.llen(dep.queue)
    redis_server.restart(signal.SIGTERM, 3.0)
    late = send(after, "sent after the restart")
    settle(dep.env["EMBEDQ_DATABASE_URL"], list(stream.jobs), stall_s)
    results_gone = sum(app.AsyncResult(j).state == "PENDING" for j in first)
    o = tally(label, dep.env["EMBEDQ_DATABASE_URL"], stream, None, model)
    import storage

    with storage.connect(dep.env["EMBEDQ_DATABASE_URL"]).read() as c:
        states = faults.job_states(c, list(stream.jobs))
    count = lambda ids: sum(states.get(j) == "done" for j in ids)  # noqa: E731
    o.notes = (f"at the restart: {results_gone} of {done_first} results of done jobs gone from the backend "
               f"(their rows kept); {count(held)} of {held_n} jobs the worker held done; {count(waiting)} of "
               f"{in_queue} jobs waiting in Redis done; after it: {count(late)} of {after} new jobs done. Lost: "
               f"not settled {stall_s:g} s after the last job settled")
    o.expect_lost = in_queue
    if held_n != slots or in_queue != queued:
        o.problem = f"the worker held {held_n} jobs (not {slots}) and {in_queue} waited in Redis (not {queued})"
    return o


# -- bad messages ------------------------------------------------------------------------------------
BAD_KWARGS = [
    dict(texts=[]), dict(texts="a bare string"), dict(texts=["fine", 42]), dict(texts=["fine", {"text": "x"}]),
    dict(texts=["broken \ud83d surrogate"]), dict(texts=["ok", "x" * 100_000]), dict(texts=["a"], dims=100),
    dict(texts=["a"], prompt_name="query"), dict(texts=["a"], normalize="no"),
]


def bad_messages(dep, model, label: str, good: int = 6) -> Outcome:
    """Malformed texts and arguments through apply_async, an unknown argument through send_task,
    a pickle message and a body that is not JSON published by hand; good jobs among them."""
    from worker.app import app
    from worker.tasks import embed

    stream = Stream()
    for i, kwargs in enumerate(BAD_KWARGS):
        stream.jobs[embed.apply_async(kwargs=kwargs).id] = []
        if i < good:
            texts = [f"good job {i} sent among bad ones"]
            stream.jobs[embed.delay(texts).id] = texts
    stream.jobs[app.send_task("embedq.embed", args=[["x"]], kwargs={"colour": "blue"}, queue=dep.queue).id] = []
    with app.producer_or_acquire() as producer:
        for kind, body, content_type in (("pickle", b"\x80\x04\x95\x00", "application/x-python-serialize"),
                                         ("garbage", b"{not json", "application/json")):
            job_id = f"{kind}-{uuid.uuid4().hex}"
            producer.publish(body, routing_key=dep.queue, serializer=None, content_type=content_type,
                             content_encoding="binary" if kind == "pickle" else "utf-8",
                             headers={"id": job_id, "task": "embedq.embed", "lang": "py", "argsrepr": "",
                                      "kwargsrepr": "", "origin": "bench"})
            stream.jobs[job_id] = []
    bad = sum(1 for t in stream.jobs.values() if not t)
    recover = settle(dep.env["EMBEDQ_DATABASE_URL"], list(stream.jobs), faults.SETTLE_S)
    o = tally(label, dep.env["EMBEDQ_DATABASE_URL"], stream, recover, model,
              notes=f"{bad} bad: {len(BAD_KWARGS)} malformed jobs, 1 unknown kwarg (send_task), 1 pickle, "
                    f"1 not JSON; {len(stream.jobs) - bad} good among them")
    o.expect_failed = bad
    return o


# -- bad model files ---------------------------------------------------------------------------------
def patched_copy(src: Path, dst: Path, what: str) -> Path:
    """A copy of the F32 MiniLM GGUF with one fault: "nan_epsilon" (the four bytes of
    layer_norm_epsilon set to NaN: refused at load) or "overflow" (a row of blk.0.attn_q.weight set
    to +-3e38: finite, passes the load checks, overflows in the forward pass)."""
    import gguf
    import numpy as np

    reader = gguf.GGUFReader(str(src))
    if what == "nan_epsilon":
        field = reader.fields["bert.attention.layer_norm_epsilon"]
        part = field.parts[field.data[0]]
        offset, raw = part.ctypes.data - reader.data.ctypes.data, struct.pack("<f", float("nan"))
    elif what == "overflow":
        t = next(t for t in reader.tensors if t.name == "blk.0.attn_q.weight")
        offset, raw = int(t.data_offset), np.array([3e38, -3e38] * (int(t.shape[0]) // 2), np.float32).tobytes()
    else:
        raise ValueError(what)
    del reader
    shutil.copyfile(src, dst)
    with open(dst, "r+b") as f:
        f.seek(offset)
        f.write(raw)
    return dst


def refused_model(dep, model, bad_path: Path, label: str, jobs: int = 5) -> Outcome:
    """A worker on a file refused at load: its supervisor exits 2 with the reason; the jobs sent
    meanwhile wait in the queue and a worker on the intact file does them."""
    stream = Stream()
    w = dep.start_worker("badfile", wait=False, model=str(bad_path))
    for i in range(jobs):
        texts = [f"sent while the only worker has a bad file {i}"]
        stream.jobs[_delay(texts).id] = texts
    _wait(lambda: w.proc.poll() is not None, 120, 0.2)
    rc = w.proc.poll()
    reason = next((line for line in w.log().splitlines() if "cannot start the worker" in line), "no reason logged")
    reason = reason.split("error: ")[-1].split(" (file '")[0]
    dep.start_worker("goodfile", model=str(model.path))
    recover = settle(dep.env["EMBEDQ_DATABASE_URL"], list(stream.jobs), faults.SETTLE_S)
    o = tally(label, dep.env["EMBEDQ_DATABASE_URL"], stream, recover, model,
              notes=f"worker exit {rc}: {reason}; the {jobs} jobs sent meanwhile waited for a worker on the "
                    "intact file")
    if rc != 2:
        o.problem = f"the worker on the bad file exited {rc}, not 2 (refused at load)"
    return o


def overflowing_model(dep, model, label: str, jobs: int = 5) -> Outcome:
    """A worker on a file that loads but overflows (dep's model): every job fails with its reason."""
    stream = Stream()
    dep.start_worker("overflow")
    for i in range(jobs):
        texts = [f"overflowing model job {i}", "and a second text"][: 1 + i % 2]
        stream.jobs[_delay(texts).id] = texts
    recover = settle(dep.env["EMBEDQ_DATABASE_URL"], list(stream.jobs), faults.SETTLE_S)
    import storage

    db = storage.connect(dep.env["EMBEDQ_DATABASE_URL"])
    errors = set()
    for j in stream.jobs:
        try:
            errors.add(storage.get_job(db, j)["error"] or "")
        except storage.JobNotFound:
            pass
    o = tally(label, dep.env["EMBEDQ_DATABASE_URL"], stream, recover, model,
              notes=f"{len(stream.jobs)} jobs failed: " + " / ".join(sorted({e.split(';')[0] for e in errors if e})))
    o.expect_failed = jobs
    return o
