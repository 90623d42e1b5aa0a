"""What a job is allowed to be, checked where it enters a worker.

Validation happens in the worker rather than in `embed.delay()` so that a rejected job still leaves
a `failed` row with its reason in the database (clients only talk to the broker). Messages are single
lines that name the offending item and the limit, because they end up in `jobs.error`, in
`AsyncResult.get()` exceptions and in Flower.
"""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator


class InvalidJob(ValueError):
    """A job that can never succeed as submitted; the message says why."""


class JobLimits(BaseModel):
    """What one job may hold; the defaults are the settings' defaults (EMBEDQ_MAX_*)."""

    max_texts: int = 1024
    max_chars: int = 65536
    max_job_chars: int = 4_194_304


DEFAULT_LIMITS = JobLimits()


class ServedModel(BaseModel):
    """The model a worker serves, as far as validation needs to know it."""

    name: str
    aliases: frozenset[str] = frozenset()
    dim: int
    dims_allowed: tuple[int, ...] = ()
    prompts: dict[str, str] = Field(default_factory=dict)
    content_hash: str = ""  # SHA-256 of the model file's bytes
    max_tokens: int | None = None  # tokens per forward pass, specials included

    def accepts(self, model: str) -> bool:
        return model == self.name or model in self.aliases


OVERFLOW_MODES = ("truncate", "reject", "chunk")
# Tokens that consecutive chunks share when a job does not say: enough that a sentence cut at a
# window edge is whole in one of the two, small beside any real model's window (capped at a quarter
# of it for small ones, see `chunk_overlap`).
DEFAULT_OVERLAP = 32


def chunk_overlap(requested: int | None, window: int) -> int:
    """The overlap a chunk job uses for windows of `window` text tokens."""
    return min(DEFAULT_OVERLAP, window // 4) if requested is None else requested


class EmbedRequest(BaseModel):
    """A validated job. Build it with `validate_job`, which turns pydantic errors into one clear line."""

    model_config = ConfigDict(frozen=True)

    texts: list[str]
    model: str | None = None
    prompt_name: str | None = None
    dims: int | None = None
    normalize: bool = True
    # What happens to a text longer than the model's window: cut at it ("truncate"), fail the job
    # ("reject"), or embed it in overlapping windows of `overflow_overlap` shared tokens ("chunk").
    overflow: Literal["truncate", "reject", "chunk"] = "truncate"
    overflow_overlap: int | None = None

    @field_validator("texts", mode="before")
    @classmethod
    def _texts(cls, v: Any, info: ValidationInfo) -> list[str]:
        limits: JobLimits = (info.context or {}).get("limits") or DEFAULT_LIMITS
        if isinstance(v, (str, bytes)) or not isinstance(v, (list, tuple)):
            raise ValueError(f"texts must be a list of strings, got {type(v).__name__}")
        if not v:
            raise ValueError("texts is empty; a job needs at least one text")
        if len(v) > limits.max_texts:
            raise ValueError(f"job has {len(v)} texts; the limit is {limits.max_texts} (EMBEDQ_MAX_TEXTS)")
        total = 0
        for i, t in enumerate(v):
            if not isinstance(t, str):
                raise ValueError(f"texts[{i}] is {type(t).__name__}, not a string")
            # Length first: a 10 MB text is rejected without scanning it.
            if len(t) > limits.max_chars:
                raise ValueError(f"texts[{i}] has {len(t)} characters; the limit is {limits.max_chars} "
                                 "(EMBEDQ_MAX_CHARS)")
            total += len(t)
            if total > limits.max_job_chars:
                raise ValueError(f"job has more than {limits.max_job_chars} characters in all "
                                 "(EMBEDQ_MAX_JOB_CHARS); split it into smaller jobs")
            try:
                t.encode("utf-8")
            except UnicodeEncodeError as e:
                raise ValueError(f"texts[{i}] contains a lone surrogate U+{ord(t[e.start]):04X} at character "
                                 f"{e.start}; texts must be valid Unicode") from None
            # PostgreSQL text columns cannot hold NUL, and no tokenizer gives it meaning.
            if "\x00" in t:
                raise ValueError(f"texts[{i}] contains a NUL character at {t.index(chr(0))}")
        return list(v)

    @field_validator("model", "prompt_name", mode="before")
    @classmethod
    def _optional_str(cls, v: Any, info: ValidationInfo) -> str | None:
        if v is not None and not isinstance(v, str):
            raise ValueError(f"{info.field_name} must be a string, got {type(v).__name__}")
        return v

    @field_validator("model")
    @classmethod
    def _model(cls, v: str | None, info: ValidationInfo) -> str | None:
        served: ServedModel | None = (info.context or {}).get("served")
        if v is not None and served is not None and not served.accepts(v):
            raise ValueError(f"unknown model {v!r}; this worker serves {served.name!r}")
        return v

    @field_validator("prompt_name")
    @classmethod
    def _prompt(cls, v: str | None, info: ValidationInfo) -> str | None:
        served: ServedModel | None = (info.context or {}).get("served")
        if v is not None and served is not None and v not in served.prompts:
            known = ", ".join(sorted(served.prompts)) or "none"
            raise ValueError(f"unknown prompt_name {v!r}; {served.name} has prompts: {known}")
        return v

    @field_validator("dims", mode="before")
    @classmethod
    def _dims(cls, v: Any, info: ValidationInfo) -> int | None:
        if v is None:
            return None
        if isinstance(v, bool) or not isinstance(v, int):
            raise ValueError(f"dims must be an integer, got {type(v).__name__}")
        served: ServedModel | None = (info.context or {}).get("served")
        if served is not None:
            allowed = served.dims_allowed or (served.dim,)
            if v not in allowed:
                raise ValueError(f"dims={v} is not supported by {served.name}; allowed: "
                                 + ", ".join(map(str, allowed)))
        return v

    @field_validator("overflow", mode="before")
    @classmethod
    def _overflow(cls, v: Any) -> str:
        if v is None:
            return "truncate"
        if v not in OVERFLOW_MODES:
            raise ValueError(f"overflow must be one of {', '.join(map(repr, OVERFLOW_MODES))}, got {v!r}")
        return v

    @field_validator("overflow_overlap", mode="before")
    @classmethod
    def _overlap(cls, v: Any, info: ValidationInfo) -> int | None:
        if v is None:
            return None
        if isinstance(v, bool) or not isinstance(v, int):
            raise ValueError(f"overflow_overlap must be an integer, got {type(v).__name__}")
        if info.data.get("overflow") != "chunk":
            raise ValueError("overflow_overlap applies only to overflow='chunk'")
        if v < 0:
            raise ValueError(f"overflow_overlap must be >= 0, got {v}")
        served: ServedModel | None = (info.context or {}).get("served")
        # Below half the window, every window moves on by more than it shares, so a text's chunks
        # are fewer than twice its tokens / window; the prompt and special tokens are checked where
        # the window is known exactly (the worker).
        if served is not None and served.max_tokens and v >= served.max_tokens // 2:
            raise ValueError(f"overflow_overlap={v} is too large for {served.name}: it must be below half "
                             f"its window of {served.max_tokens} tokens")
        return v

    @field_validator("normalize", mode="before")
    @classmethod
    def _normalize(cls, v: Any) -> bool:
        if not isinstance(v, bool):
            raise ValueError(f"normalize must be true or false, got {type(v).__name__}")
        return v


def validate_job(raw: dict[str, Any], limits: JobLimits | None = None,
                 served: ServedModel | None = None) -> EmbedRequest:
    """Validate a job's arguments; raises InvalidJob with a one-line reason."""
    try:
        return EmbedRequest.model_validate(raw, context={"limits": limits, "served": served})
    except ValidationError as e:
        parts = []
        for err in e.errors():
            # Our own messages already name the field; pydantic's generic ones need the location.
            if err["type"] == "value_error":
                parts.append(err["msg"].removeprefix("Value error, "))
            else:
                parts.append(".".join(str(x) for x in err["loc"]) + ": " + err["msg"])
        raise InvalidJob("; ".join(parts)) from None
