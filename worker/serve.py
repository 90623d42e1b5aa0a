"""`embedq worker`: run worker processes for the configured broker, database and model.

One process = one Celery worker on a thread pool of `slots` threads (the jobs it buffers), one
coalescer and one model. `--concurrency N` starts N such processes on this machine, each with an
equal share of the cores for its model threads; the model file is memory-mapped, so they share
its pages. More machines: run `embedq worker` on each against the same broker and database.

Also runnable as `python -m worker.serve ...` (what the supervisor and the tests start).
"""
from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time

from schemas.settings import get_settings

log = logging.getLogger("embedq.worker")

# CLI flag -> settings field; flags are passed on as EMBEDQ_* variables so child processes and the
# settings object agree.
FLAG_SETTINGS = {
    "model": "model", "threads": "threads", "slots": "slots", "batch_tokens": "batch_tokens",
    "batch_wait_ms": "batch_wait_ms", "broker": "broker_url", "database": "database_url", "queue": "queue",
    "visibility_timeout": "visibility_timeout_s", "loglevel": "log_level",
}


def add_worker_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--concurrency", "-c", type=int, default=1,
                   help="worker processes on this machine (each loads the model, memory-mapped)")
    p.add_argument("--slots", type=int, help="jobs each process buffers for coalescing (EMBEDQ_SLOTS)")
    p.add_argument("--threads", type=int, help="compute threads per process (EMBEDQ_THREADS)")
    p.add_argument("--model", action="append", help="GGUF path or model name (EMBEDQ_MODEL); repeat it to serve "
                   "several models, each in processes of its own (--concurrency per model)")
    p.add_argument("--batch-tokens", type=int, help="token budget per batch (EMBEDQ_BATCH_TOKENS)")
    p.add_argument("--batch-wait-ms", type=float, help="longest wait of a buffered job (EMBEDQ_BATCH_WAIT_MS)")
    p.add_argument("--broker", help="broker URL (EMBEDQ_BROKER_URL)")
    p.add_argument("--database", help="database URL (EMBEDQ_DATABASE_URL)")
    p.add_argument("--queue", help="queue name (EMBEDQ_QUEUE)")
    p.add_argument("--visibility-timeout", type=float, help="seconds (EMBEDQ_VISIBILITY_TIMEOUT_S)")
    p.add_argument("--hostname", "-n", help="Celery node name (default embedq@HOST, embedq-I@HOST with -c N)")
    p.add_argument("--loglevel", "-l", help="log level (EMBEDQ_LOG_LEVEL)")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)  # one supervised process


def apply_flags(args: argparse.Namespace) -> None:
    for flag, field in FLAG_SETTINGS.items():
        value = getattr(args, flag, None)
        if isinstance(value, list):  # --model A --model B: the first is the default one
            value = value[0]
        if value is not None:
            os.environ[f"EMBEDQ_{field.upper()}"] = str(value)
    get_settings.cache_clear()


def run(args: argparse.Namespace) -> int:
    apply_flags(args)
    if args.concurrency < 1:
        print("error: --concurrency must be >= 1", file=sys.stderr)
        return 2
    if args.child:
        return run_one(args.hostname or f"embedq@{socket.gethostname()}")
    # Always supervised, also with one process: a worker can die of things outside our code (Celery
    # has exited for good on a broker restart), and then nothing would serve the queue.
    return supervise(args)


def _exit_with_parent() -> None:
    """If started by a process that asked for it (EMBEDQ_EXIT_WITH_PARENT=<its pid>), stop (SIGTERM
    to itself) when that process dies, so a crashed test run or benchmark leaves no worker behind.

    A thread watches the parent process id. (Linux's PR_SET_PDEATHSIG was used before; it fires
    when the parent *thread* that started the worker ends, which killed workers started from a
    short-lived thread of a live process.)"""
    want = os.environ.get("EMBEDQ_EXIT_WITH_PARENT")
    if not want:
        return

    def watch() -> None:
        while os.getppid() == int(want):
            time.sleep(0.5)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="embedq-exit-with-parent", daemon=True).start()


def unreachable(exc: BaseException) -> bool:
    """Is this a service that is down (broker, result backend, database) rather than a bad setting?"""
    import kombu.exceptions
    import redis.exceptions

    import storage

    while exc is not None:
        if isinstance(exc, (ConnectionError, TimeoutError, redis.exceptions.ConnectionError,
                            redis.exceptions.TimeoutError, kombu.exceptions.OperationalError)):
            return True
        if storage.is_transient(exc):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def run_one(hostname: str) -> int:
    _exit_with_parent()
    s = get_settings()
    logging.basicConfig(level=s.log_level.upper(), format="[%(asctime)s: %(levelname)s/%(name)s] %(message)s")
    from .app import app, configure
    from .events import EventsWhileWatched
    from .runtime import start_runtime, stop_runtime

    configure(s)
    EventsWhileWatched().install()
    try:
        rt = start_runtime(s, name=hostname)
    except Exception as e:
        # 2 tells the supervisor not to restart (a bad model path stays bad); an unreachable broker
        # or database may come back, so that exit is an ordinary failure, restarted with backoff.
        print(f"error: cannot start the worker: {type(e).__name__}: {e}", file=sys.stderr)
        return 1 if unreachable(e) else 2
    from . import metrics

    stop_watch = threading.Event()
    metrics.watch_queues(app, rt.queues, stop_watch)
    argv = ["worker", "--pool", "threads", "--concurrency", str(s.slots), "--queues", ",".join(rt.queues),
            "--hostname", hostname, "--loglevel", s.log_level.upper(), "--prefetch-multiplier", "1",
            "--without-mingle", "--without-gossip"]
    try:
        app.worker_main(argv)
    except SystemExit as e:
        return int(e.code or 0)
    finally:
        stop_watch.set()
        stop_runtime()
    return 0


def supervise(args: argparse.Namespace) -> int:
    """Run N single-process workers; restart one that dies, stop all on SIGTERM/SIGINT."""
    s = get_settings()
    models = list(getattr(args, "model", None) or [s.model])
    # One process per model and --concurrency slot: process i serves models[i // n].
    n, total = args.concurrency, args.concurrency * len(models)
    threads = s.threads or max(1, (os.cpu_count() or 1) // total)
    # Children stop if the supervisor dies, instead of running on unsupervised.
    env = {**os.environ, "EMBEDQ_THREADS": str(threads), "EMBEDQ_EXIT_WITH_PARENT": str(os.getpid())}
    exporter = None
    if s.metrics_port:
        from .metrics import Exporter

        try:
            exporter = Exporter(s.metrics_host, s.metrics_port)
        except OSError as e:
            print(f"error: cannot serve worker metrics on {s.metrics_host}:{s.metrics_port}: {e}", file=sys.stderr)
            return 2
        env.update(exporter.child_env())
        print(f"worker metrics on {exporter.url}", file=sys.stderr, flush=True)
    host = socket.gethostname()
    hostname = args.hostname or f"embedq@{host}"
    base, _, at = hostname.partition("@")

    def start(i: int) -> subprocess.Popen:
        m = i // n
        name = hostname if total == 1 else f"{base}-{i}@{at or host}"
        # Jobs that name no model go to the first model's processes only.
        child_env = {**env, "EMBEDQ_MODEL": str(models[m]),
                     **({"EMBEDQ_SERVES_DEFAULT": "0"} if m > 0 else {})}
        return subprocess.Popen([sys.executable, "-m", "worker.serve", "--child", "--hostname", name],
                                env=child_env)

    children = {i: start(i) for i in range(total)}
    started = {i: time.monotonic() for i in children}
    failures = {i: 0 for i in children}
    stopping = False

    def stop(signum, _frame):
        nonlocal stopping
        stopping = True
        for p in children.values():
            if p.poll() is None:
                p.send_signal(signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    _exit_with_parent()
    config_error = False
    while not stopping:
        for i, p in list(children.items()):
            rc = p.poll()
            if rc is None or stopping:
                continue
            if exporter is not None:
                exporter.process_dead(p.pid)
            if rc == 2:  # configuration error: restarting would fail the same way
                config_error = True
                stop(signal.SIGTERM, None)
                break
            # One that keeps dying right after its start (a crash loop) is restarted less and less
            # often; one killed from outside (SIGKILL: the OOM killer, an operator) comes back at once.
            quick = time.monotonic() - started[i] < 30 and rc != -signal.SIGKILL
            failures[i] = failures[i] + 1 if quick else 1
            delay = min(30.0, 0.5 * 2 ** (failures[i] - 1))
            print(f"worker {i} exited with {rc}; restarting it in {delay:g} s", file=sys.stderr, flush=True)
            time.sleep(delay)
            if not stopping:
                children[i], started[i] = start(i), time.monotonic()
        time.sleep(0.2)
    codes = [p.wait() for p in children.values()]
    if exporter is not None:
        exporter.close()
    if config_error:
        return 2
    # A child stopped by the signal we forwarded ended as asked.
    return 0 if all(c in (0, -signal.SIGTERM, -signal.SIGINT) for c in codes) else 1


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m worker.serve", description=__doc__.split("\n")[0])
    add_worker_arguments(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
