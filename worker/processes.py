"""Start, await and stop worker processes (used by the demo, the service benchmark and the tests).

Readiness is read from the worker's own log ("<node> ready."), so callers wait for an event with a
deadline rather than sleeping a guessed time. Every process gets its own session, so stopping it
never touches the caller's process group.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path


class WorkerStartError(RuntimeError):
    pass


class WorkerProcess:
    def __init__(self, hostname: str, log_path: str | os.PathLike, env: dict[str, str] | None = None,
                 args: list[str] | None = None, cwd: str | os.PathLike | None = None):
        self.hostname = hostname
        self.log_path = Path(log_path)
        self.env = {**os.environ, **(env or {}), "EMBEDQ_LOG_LEVEL": "INFO",
                    # The worker stops itself if this process dies without stopping it.
                    "EMBEDQ_EXIT_WITH_PARENT": str(os.getpid())}
        self.args = list(args or [])
        self.cwd = cwd
        self.proc: subprocess.Popen | None = None

    def start(self) -> "WorkerProcess":
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "worker.serve", "--hostname", self.hostname, *self.args],
                env=self.env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                cwd=self.cwd, start_new_session=True)
        finally:
            log.close()
        return self

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def wait_for_log(self, needle: str, timeout: float = 60.0, after: int = 0) -> int:
        """Wait until `needle` appears in the log (at or after offset `after`); returns its offset."""
        deadline = time.monotonic() + timeout
        while True:
            text = self.log()
            i = text.find(needle, after)
            if i >= 0:
                return i
            if self.proc is not None and self.proc.poll() is not None:
                raise WorkerStartError(f"worker {self.hostname} exited with {self.proc.returncode} before "
                                       f"{needle!r}; log tail:\n{text[-3000:]}")
            if time.monotonic() > deadline:
                raise WorkerStartError(f"worker {self.hostname}: no {needle!r} within {timeout:.0f}s; "
                                       f"log tail:\n{text[-3000:]}")
            time.sleep(0.02)

    def wait_ready(self, timeout: float = 90.0) -> "WorkerProcess":
        self.wait_for_log(f"{self.hostname} ready.", timeout)
        return self

    def kill(self) -> None:
        """SIGKILL to the supervisor and its worker processes (the whole process group): no warm
        shutdown, no acknowledgements, nothing flushed."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)

    def children(self) -> list[int]:
        """Pids of the worker processes the supervisor runs."""
        try:
            return [int(p) for p in Path(f"/proc/{self.pid}/task/{self.pid}/children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            return []

    def kill_worker(self) -> int:
        """SIGKILL one worker process, not its supervisor (which restarts it); returns its pid."""
        pids = self.children()
        if not pids:
            raise WorkerStartError(f"worker {self.hostname} has no running worker process")
        os.kill(pids[0], signal.SIGKILL)
        return pids[0]

    def stop(self, timeout: float = 30.0) -> int | None:
        """Warm shutdown (SIGTERM: unstarted jobs go back to the broker), SIGKILL if it hangs."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=30)
        return self.proc.returncode

    def __enter__(self) -> "WorkerProcess":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class Deployment:
    """A broker, a database, a model and the worker processes serving them, on this machine, with this
    process as their client (the tests, the fault suite and the benchmarks run the service so).

    `env` is what worker processes get; `client()` points this process's settings and Celery app at
    the same broker and database, so `embed.delay` reaches these workers; `close()` stops them and
    gives the process its environment back. `node` names the workers NAME@<node>.
    """

    def __init__(self, broker_url: str, workdir: str | os.PathLike, model: str | os.PathLike,
                 database_url: str | None = None, queue: str = "embedq", node: str = "local", **settings):
        self.workdir = Path(workdir)
        self.queue = queue
        self.node = node
        self.database_url = database_url or f"sqlite:///{self.workdir / 'embedq.sqlite'}"
        self.env = {
            "EMBEDQ_BROKER_URL": broker_url, "EMBEDQ_RESULT_BACKEND": broker_url,
            "EMBEDQ_DATABASE_URL": self.database_url, "EMBEDQ_MODEL": str(model), "EMBEDQ_QUEUE": queue,
            "EMBEDQ_THREADS": "1", "EMBEDQ_HOME": str(self.workdir / "home"),
            **{f"EMBEDQ_{k.upper()}": str(v) for k, v in settings.items()},
        }
        self.workers: list[WorkerProcess] = []
        self._saved_env: dict[str, str | None] = {}

    def client(self) -> "Deployment":
        from schemas.settings import get_settings

        from .app import configure

        for k, v in self.env.items():
            self._saved_env.setdefault(k, os.environ.get(k))
            os.environ[k] = v
        get_settings.cache_clear()
        configure(get_settings())
        return self

    def start_worker(self, name: str, wait: bool = True, args: list[str] | None = None,
                     **settings) -> WorkerProcess:
        """Start `python -m worker.serve` (what `embedq worker` runs) as node NAME@<node>."""
        env = {**self.env, **{f"EMBEDQ_{k.upper()}": str(v) for k, v in settings.items()}}
        w = WorkerProcess(f"{name}@{self.node}", self.workdir / f"{name}.log", env=env, args=args,
                          cwd=Path(__file__).resolve().parent.parent)
        self.workers.append(w)
        w.start()
        if wait:
            w.wait_ready()
        return w

    def close(self) -> None:
        for w in self.workers:
            w.stop(timeout=30)
        for k, v in self._saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        from schemas.settings import get_settings

        import storage

        get_settings.cache_clear()
        storage.dispose_all()
