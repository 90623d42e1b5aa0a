"""The one settings object for the service: every knob, its environment variable and its default.

Workers, clients, storage and the CLI all read configuration through `get_settings()`, so a value set
in the environment means the same thing everywhere. Each field below is read from `EMBEDQ_<NAME>`
(e.g. `batch_tokens` from `EMBEDQ_BATCH_TOKENS`); `describe()` renders this table for `--help` output.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from .home import DEFAULT_HOME, embedq_home
from .job import DEFAULT_LIMITS, JobLimits


class Settings(BaseSettings):
    # env_ignore_empty: an empty variable (e.g. from a compose file) means "unset", not "invalid".
    model_config = SettingsConfigDict(env_prefix="EMBEDQ_", extra="ignore", validate_default=True,
                                      env_ignore_empty=True)

    home: Path = Field(default_factory=embedq_home,
                       description="Directory for the embedded broker/database files and pulled models.")
    broker_url: str = Field("", description="Celery broker. Default: an embedded SQLite broker in HOME "
                            "(sqla+sqlite:///HOME/broker.sqlite). Production: redis://host:6379/0.")
    result_backend: str = Field("", description="Where task summaries go for AsyncResult.get(). Default: "
                                "the broker itself for redis://, else a SQLite file in HOME.")
    database_url: str = Field("", description="SQLAlchemy URL for vectors and metrics. Default: "
                              "sqlite:///HOME/embedq.sqlite. Production: postgresql+psycopg://... (pgvector).")
    model: str = Field("all-MiniLM-L6-v2", description="GGUF path or model name the worker serves.")
    threads: int | None = Field(None, ge=1, description="Compute threads per worker process "
                                "(default: cores divided among the processes of `embedq worker`).")
    activations: str = Field("auto", pattern="^(auto|int16|f32|int8)$",
                             description="Activation precision for Q8_0 weights: auto (int16 where the CPU has "
                             "VPDPWSSD, else f32), int16, f32 or int8.")
    batch_tokens: int = Field(4096, ge=16, description="Token budget of one coalesced batch; a job above it "
                              "is split across batches.")
    batch_wait_ms: float = Field(5.0, ge=0, description="Longest time the oldest buffered job waits for "
                                 "more jobs before its batch runs anyway.")
    slots: int = Field(128, ge=1, description="Jobs one worker process holds at once (its coalescing buffer); "
                       "also its prefetch window.")
    queue: str = Field("embedq", min_length=1, description="Broker queue name; each model has a queue "
                       "per name it answers to, QUEUE@NAME (worker/routing.py), and jobs naming no model use QUEUE.")
    serves_default: bool = Field(True, description="Whether a worker also takes jobs that name no model (the "
                                 "queue QUEUE); `embedq worker --model A --model B` sets it for A only. With "
                                 "different models in separate `embedq worker` commands, set it on one of them.")
    visibility_timeout_s: float = Field(600.0, gt=0, description="Seconds before an unacknowledged job is "
                                        "handed to another worker; must exceed the longest batch.")
    db_outage_s: float = Field(600.0, ge=0, description="How long a job waits for an unreachable database "
                               "(retrying with backoff, at most 5 s apart) before it fails; the failure is recorded "
                               "once the database answers again.")
    db_retry_base_ms: float = Field(50.0, gt=0, description="First backoff delay; doubles per retry.")
    delivery_stale_s: float = Field(30.0, gt=0, description="Redis broker: a job with no sign of life for this "
                                    "long that is not in the queue (its worker died) is published again.")
    max_texts: int = Field(DEFAULT_LIMITS.max_texts, ge=1, description="Most texts in one job.")
    max_chars: int = Field(DEFAULT_LIMITS.max_chars, ge=1, description="Most characters in one text.")
    max_job_chars: int = Field(DEFAULT_LIMITS.max_job_chars, ge=1,
                               description="Most characters in one job, all texts together.")
    log_level: str = Field("INFO", description="Worker log level.")
    # -- the HTTP gateway (`embedq http`, gateway/) --
    http_host: str = Field("127.0.0.1", description="Address `embedq http` binds to. Anything but loopback "
                           "needs EMBEDQ_API_KEYS (or --allow-no-keys).")
    http_port: int = Field(8000, ge=0, le=65535, description="Port of `embedq http`.")
    http_wait_s: float = Field(60.0, gt=0, description="Longest time POST /v1/embeddings waits for its job; "
                               "past it the answer is 504 naming /v1/jobs/ID, where the job (still running) "
                               "can be fetched later.")
    http_max_queue: int = Field(1000, ge=0, description="Backpressure: while more than this many jobs wait "
                                "in the broker queue (not yet taken by a worker), new HTTP jobs get 429.")
    http_wait_threads: int = Field(64, ge=1, description="Requests one gateway process waits on at once "
                                   "(one thread each); more wait for a free thread.")
    api_keys: str = Field("", description="Comma-separated API keys of the HTTP gateway (Authorization: "
                          "Bearer KEY); empty: no keys.")
    # -- worker metrics (worker/metrics.py) --
    metrics_port: int = Field(0, ge=0, le=65535, description="`embedq worker` serves Prometheus metrics of all "
                              "its processes on this port (GET /metrics); 0: off.")
    metrics_host: str = Field("127.0.0.1", description="Address the worker metrics server binds to (0.0.0.0 "
                              "for a Prometheus on another machine).")

    @field_validator("home")
    @classmethod
    def _expand(cls, v: Path) -> Path:
        return Path(v).expanduser()

    # Empty URLs mean "the embedded default", resolved against HOME so that setting EMBEDQ_HOME alone
    # moves every file.
    def broker(self) -> str:
        return self.broker_url or f"sqla+sqlite:///{self.home / 'broker.sqlite'}"

    def results(self) -> str:
        if self.result_backend:
            return self.result_backend
        broker = self.broker()
        if broker.startswith(("redis://", "rediss://")):
            return broker
        return f"db+sqlite:///{self.home / 'results.sqlite'}"

    def database(self) -> str:
        return self.database_url or f"sqlite:///{self.home / 'embedq.sqlite'}"

    def job_limits(self) -> JobLimits:
        return JobLimits(max_texts=self.max_texts, max_chars=self.max_chars, max_job_chars=self.max_job_chars)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Settings from the environment, read once per process (call `get_settings.cache_clear()` to re-read)."""
    return Settings()


def describe() -> str:
    """One line per setting: variable, default, meaning."""
    lines = []
    for name, field in Settings.model_fields.items():
        default = field.default if field.default_factory is None else DEFAULT_HOME
        lines.append(f"EMBEDQ_{name.upper():<22} default={default!r:<12} {field.description}")
    return "\n".join(lines)


def model_label(model: str) -> str:
    """The name a model's vectors are stored under: a model name as given, or a GGUF file's stem."""
    p = Path(model).expanduser()
    if model.endswith(".gguf") or p.is_file():
        return p.stem
    return model
