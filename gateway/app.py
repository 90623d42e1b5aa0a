"""The ASGI app: routes, request checks, and the order in which a job is admitted.

A request for work (POST /v1/embeddings, POST /v1/jobs) is checked in this order, cheapest first,
and refused at the first failing step:
  1. the body: at most 12 bytes per allowed character plus 1 MiB (413), JSON, known fields (400);
  2. the job's own validation, `schemas.validate_job` with the settings' limits, the same
     messages as the worker's (400; 413 when the job is refused for its size alone);
  3. a worker serving the model on our queue (503: none answers, or none serves that model);
  4. the same validation against that model: dimensions, prompt_name (400);
  5. the depth of the queues that model's workers consume (429 past EMBEDQ_HTTP_MAX_QUEUE);
then the job is published. /v1/embeddings waits for it in a thread of the wait pool for up to
EMBEDQ_HTTP_WAIT_S (504 past that, the job kept and named), and reads its vectors and metrics
from the database.
"""
from __future__ import annotations

import asyncio
import base64
import contextlib
import hmac
import json
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

import numpy as np
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

import storage
from schemas import InvalidJob, JobLimits, validate_job
from schemas.settings import Settings, get_settings, model_label

from .broker import QUEUED, Broker, JobTimeout
from .errors import APIError, bad_request
from .metrics import GatewayMetrics

log = logging.getLogger("embedq.gateway")

# Extensions beyond OpenAI's fields: prompt_name, normalize, overflow, overflow_overlap (the job's options).
EMBED_FIELDS = frozenset({"input", "model", "dimensions", "encoding_format", "user", "prompt_name", "overflow",
                          "overflow_overlap"})
JOB_FIELDS = frozenset({"input", "model", "dimensions", "prompt_name", "normalize", "user", "overflow",
                        "overflow_overlap"})
SEARCH_FIELDS = frozenset({"text", "vector", "k", "model", "prompt_name", "dimensions", "chunks"})
ENCODINGS = ("float", "base64")
MAX_K = 1000
MAX_PAGE = 1000
_UNLIMITED = JobLimits(max_texts=1 << 62, max_chars=1 << 62, max_job_chars=1 << 62)


def api_keys(settings: Settings) -> list[str]:
    return [k.strip() for k in settings.api_keys.split(",") if k.strip()]


def encode_vector(v: np.ndarray, encoding: str):
    """float: a list of the float32 values, exactly (each widened to a JSON double); base64:
    little-endian float32 bytes, as OpenAI sends them."""
    if encoding == "base64":
        return base64.b64encode(np.asarray(v, dtype="<f4").tobytes()).decode("ascii")
    return np.asarray(v, dtype=np.float32).tolist()


def json_bytes(obj) -> bytes:
    return json.dumps(obj, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode("utf-8")


def _iso(t):
    return t.isoformat() if isinstance(t, datetime) else t


def job_view(job: dict, metrics: dict | None = None) -> dict:
    out = {"object": "job", "id": job["job_id"], **{k: _iso(v) for k, v in job.items() if k != "job_id"}}
    out["url"] = f"/v1/jobs/{job['job_id']}"
    if metrics is not None:
        out["metrics"] = metrics
    return out


def _param_of(message: str) -> str | None:
    for prefix, param in (("texts", "input"), ("job has", "input"), ("dims", "dimensions"), ("unknown model", "model"),
                          ("model", "model"), ("unknown prompt_name", "prompt_name"), ("prompt_name", "prompt_name"),
                          ("normalize", "normalize"), ("overflow_overlap", "overflow_overlap"),
                          ("overflow", "overflow")):
        if message.startswith(prefix):
            return param
    return None


class Gateway:
    """One gateway: settings, the broker side, the database, the wait pool and the metrics."""

    def __init__(self, settings: Settings | None = None):
        self.settings = settings or get_settings()
        s = self.settings
        self.limits = s.job_limits()
        # A character takes at most 12 bytes of JSON (an escaped surrogate pair); plus room for the rest.
        self.max_body = 12 * s.max_job_chars + (1 << 20)
        self.keys = [k.encode("utf-8") for k in api_keys(s)]
        self.pool = ThreadPoolExecutor(s.http_wait_threads, thread_name_prefix="embedq-wait")
        self.metrics = GatewayMetrics(self._scrape)
        self._broker: Broker | None = None

    # -- shared pieces ------------------------------------------------------------------------------
    @property
    def broker(self) -> Broker:
        if self._broker is None:
            from worker.app import configure

            configure(self.settings)
            self._broker = Broker(self.settings)
        return self._broker

    def db(self) -> storage.Database:
        try:
            return storage.connect(self.settings.database())
        except Exception as e:
            raise APIError(503, f"the database is unavailable: {type(e).__name__}: {e}",
                           code="database_unavailable") from e

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)

    async def read_json(self, request: Request) -> dict:
        n = request.headers.get("content-length")
        if n and n.isdigit() and int(n) > self.max_body:
            raise APIError(413, f"request body of {int(n)} bytes is over the limit of {self.max_body} bytes "
                                "(derived from EMBEDQ_MAX_JOB_CHARS)", code="request_too_large")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > self.max_body:
                raise APIError(413, f"request body is over the limit of {self.max_body} bytes (derived from "
                                    "EMBEDQ_MAX_JOB_CHARS)", code="request_too_large")
            chunks.append(chunk)
        try:
            body = json.loads(b"".join(chunks) or b"null")
        except (ValueError, UnicodeDecodeError) as e:
            raise bad_request(f"the request body is not valid JSON: {e}", code="invalid_json") from None
        if not isinstance(body, dict):
            raise bad_request("the request body must be a JSON object", code="invalid_json")
        return body

    def _validate(self, raw: dict, served=None):
        try:
            return validate_job(raw, limits=self.limits, served=served)
        except InvalidJob as e:
            message = str(e)
            status = 400
            if served is None:
                try:  # refused for its size alone?
                    validate_job(raw, limits=_UNLIMITED)
                    status = 413
                except InvalidJob:
                    pass
            raise APIError(status, message, param=_param_of(message),
                           code="job_too_large" if status == 413 else "invalid_job") from None

    async def admit(self, body: dict, fields: frozenset[str]):
        """Steps 1-5 of the module docstring; returns (validated request, WorkerModel)."""
        unknown = sorted(set(body) - fields)
        if unknown:
            raise bad_request(f"unrecognized request argument: {unknown[0]} (accepted: {', '.join(sorted(fields))})",
                              param=unknown[0], code="unknown_parameter")
        if "input" not in body:
            raise bad_request("input is required: a string or a list of strings", param="input")
        inp = body["input"]
        raw = dict(texts=[inp] if isinstance(inp, str) else inp, model=body.get("model"),
                   prompt_name=body.get("prompt_name"), dims=body.get("dimensions"),
                   normalize=body.get("normalize", True), overflow=body.get("overflow"),
                   overflow_overlap=body.get("overflow_overlap"))
        self._validate(raw)
        broker = self.broker
        snap = broker.snapshot(blocking=False) or await run_in_threadpool(broker.snapshot)
        if not snap.models:
            why = f" ({snap.error})" if snap.error else ""
            raise APIError(503, f"no worker is answering on queue {broker.queue!r}{why}; start one with "
                                "`embedq worker`", code="no_worker", headers={"Retry-After": "5"})
        wm = snap.find(raw["model"])
        if wm is None:
            served = ", ".join(m.name for m in snap.models)
            if raw["model"] is None:
                raise bad_request(f"model is required: the workers serve {served}", param="model")
            raise APIError(503, f"no worker serves model {raw['model']!r}; the workers on queue {broker.queue!r} "
                                f"serve: {served}", param="model", code="model_not_served",
                           headers={"Retry-After": "5"})
        # A request that names no model gets the one served, by name: where jobs are routed by
        # model it then goes to a queue that model's workers consume.
        req = self._validate({**raw, "model": raw["model"] or wm.name}, served=wm.served())
        try:
            depth = broker.queue_depth(wm.queues, blocking=False)
            if depth is None:
                depth = await run_in_threadpool(broker.queue_depth, wm.queues)
        except Exception as e:
            raise APIError(503, f"the broker is unavailable: {type(e).__name__}: {e}",
                           code="broker_unavailable") from e
        limit = self.settings.http_max_queue
        if depth > limit:
            raise APIError(429, f"the queue holds {depth} jobs waiting for a worker, more than "
                                f"EMBEDQ_HTTP_MAX_QUEUE={limit}; retry later", code="queue_full",
                           headers={"Retry-After": "1"})
        return req, wm

    # -- POST /v1/embeddings ------------------------------------------------------------------------
    async def embeddings(self, request: Request) -> Response:
        body = await self.read_json(request)
        encoding = body.get("encoding_format") or "float"
        if encoding not in ENCODINGS:
            raise bad_request(f"encoding_format must be 'float' or 'base64', got {encoding!r}",
                              param="encoding_format")
        req, wm = await self.admit(body, EMBED_FIELDS)
        loop = asyncio.get_running_loop()
        deadline = time.monotonic() + self.settings.http_wait_s  # the wait for the job, from its admission
        content, headers = await loop.run_in_executor(self.pool, self._embed_blocking, req, encoding, deadline)
        return Response(content, media_type="application/json", headers=headers)

    def _embed_blocking(self, req, encoding: str, deadline: float) -> tuple[bytes, dict]:
        """In a wait thread: publish, wait, read back, render."""
        from celery.utils import uuid

        from worker.job_runner import JobFailed

        if time.monotonic() >= deadline:
            raise APIError(429, f"all {self.settings.http_wait_threads} wait threads of this gateway were busy "
                                "for the whole wait (EMBEDQ_HTTP_WAIT_THREADS); retry later", code="gateway_busy",
                           headers={"Retry-After": "1"})
        job_id = uuid()
        try:
            result = self.broker.submit(req, job_id, mark=False)
        except Exception as e:
            raise submit_error(e) from e
        try:
            summary = self.broker.wait(result, deadline - time.monotonic())
        except JobTimeout:
            self.metrics.outcome("timeout")
            with contextlib.suppress(Exception):  # so that /v1/jobs/ID says "queued" until a worker takes it
                self.broker.mark_queued(job_id)
            url = f"/v1/jobs/{job_id}"
            raise APIError(504, f"job {job_id} did not finish within {self.settings.http_wait_s:g} s "
                                f"(EMBEDQ_HTTP_WAIT_S); it is kept and goes on: fetch it from {url} "
                                f"(vectors: {url}/vectors)", code="job_timeout", job_id=job_id, job_url=url,
                           headers={"Location": url}) from None
        except InvalidJob as e:
            self.metrics.outcome("invalid")
            raise APIError(400, str(e), param=_param_of(str(e)), code="invalid_job", job_id=job_id) from None
        except JobFailed as e:
            self.metrics.outcome("failed")
            raise APIError(500, f"job {job_id} failed: {e}", code="job_failed", job_id=job_id) from None
        except Exception as e:
            self.metrics.outcome("failed")
            raise APIError(500, f"job {job_id} failed: {type(e).__name__}: {e}", code="job_failed",
                           job_id=job_id) from e
        out = storage.get_output(self.db(), job_id)
        vectors, m = out["vectors"], out["metrics"]
        self.metrics.observe_job(len(req.texts), m)
        # The input's tokens as the runtime counted them, text by text (a cache hit carries the
        # count of the row it reused); rows from before per-text counts: the tokens the job ran.
        per_text = out["tokens"]
        tokens = sum(per_text) if None not in per_text else int(m["tokens"])
        out = {"object": "list",
               "data": [{"object": "embedding", "embedding": encode_vector(v, encoding), "index": i}
                        for i, v in enumerate(vectors)],
               "model": summary["model"], "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}
        return json_bytes(out), {"X-Embedq-Job-Id": job_id, "X-Embedq-Cache-Hits": str(m["cache_hits"])}

    # -- durable jobs -------------------------------------------------------------------------------
    async def create_job(self, request: Request) -> Response:
        body = await self.read_json(request)
        req, wm = await self.admit(body, JOB_FIELDS)
        from celery.utils import uuid

        job_id = uuid()

        def publish():
            result = self.broker.submit(req, job_id)
            with contextlib.suppress(Exception):  # nobody waits here: stop listening for its result
                result.backend.remove_pending_result(result)

        try:
            await run_in_threadpool(publish)
        except Exception as e:
            raise submit_error(e) from e
        url = f"/v1/jobs/{job_id}"
        return JSONResponse({"object": "job", "id": job_id, "status": "queued", "model": wm.name,
                             "count": len(req.texts), "url": url}, status_code=202, headers={"Location": url})

    def _job_or_state(self, job_id: str) -> tuple[dict | None, str | None, str | None]:
        """(stored job, None, None) or (None, 'queued'|'failed', error) from Celery's state; 404 if neither."""
        db = self.db()
        try:
            return storage.get_job(db, job_id), None, None
        except storage.JobNotFound:
            pass
        state, result = self.broker.state(job_id)
        if state == "FAILURE":
            return None, "failed", str(result)
        if state not in ("PENDING", "SUCCESS"):  # QUEUED (ours), RECEIVED, STARTED, RETRY
            return None, "queued", None
        raise APIError(404, f"no job {job_id!r} (a job sent with embed.delay() is known here once a worker "
                            "has taken it)", param="job_id", code="job_not_found")

    async def get_job(self, request: Request) -> Response:
        job_id = request.path_params["job_id"]

        def read():
            job, state, error = self._job_or_state(job_id)
            if job is None:
                return {"object": "job", "id": job_id, "status": state, "error": error,
                        "url": f"/v1/jobs/{job_id}"}
            metrics = storage.get_metrics(self.db(), job_id) if job["status"] == "done" else None
            return job_view(job, metrics)

        return JSONResponse(await run_in_threadpool(read))

    async def job_vectors(self, request: Request) -> Response:
        job_id = request.path_params["job_id"]
        encoding = request.query_params.get("encoding_format", "float")
        if encoding not in ENCODINGS:
            raise bad_request(f"encoding_format must be 'float' or 'base64', got {encoding!r}",
                              param="encoding_format")

        def read() -> bytes:
            job, state, error = self._job_or_state(job_id)
            if job is None or job["status"] != "done":
                status = state or job["status"]
                why = error or (job or {}).get("error")
                raise APIError(409, f"job {job_id} is {status}" + (f": {why}" if why else "") + "; it has no vectors"
                               + (" yet" if status in ("queued", "running") else ""), code="job_not_done",
                               job_id=job_id, status=status)
            vectors = storage.get_vectors(self.db(), job_id)
            return json_bytes({"object": "list", "id": job_id, "model": job["model"],
                               "data": [{"object": "embedding", "embedding": encode_vector(v, encoding), "index": i}
                                        for i, v in enumerate(vectors)]})

        return Response(await run_in_threadpool(read), media_type="application/json")

    async def job_chunks(self, request: Request) -> Response:
        """The windows of a job run with overflow="chunk" (an empty list for any other done job)."""
        job_id = request.path_params["job_id"]
        encoding = request.query_params.get("encoding_format", "float")
        if encoding not in ENCODINGS:
            raise bad_request(f"encoding_format must be 'float' or 'base64', got {encoding!r}",
                              param="encoding_format")

        def read() -> bytes:
            job, state, error = self._job_or_state(job_id)
            if job is None or job["status"] != "done":
                status = state or job["status"]
                raise APIError(409, f"job {job_id} is {status}; it has no chunks"
                               + (" yet" if status in ("queued", "running") else ""), code="job_not_done",
                               job_id=job_id, status=status)
            keys = ("idx", "chunk", "token_start", "token_end", "char_start", "char_end", "tokens", "text")
            return json_bytes({"object": "list", "id": job_id, "model": job["model"], "data": [
                {"object": "chunk", **{("index" if k == "idx" else k): c[k] for k in keys},
                 "embedding": encode_vector(c["vector"], encoding)}
                for c in storage.get_chunks(self.db(), job_id)]})

        return Response(await run_in_threadpool(read), media_type="application/json")

    async def list_jobs(self, request: Request) -> Response:
        q = request.query_params
        try:
            limit = int(q.get("limit", "20"))
        except ValueError:
            raise bad_request("limit must be an integer", param="limit") from None
        if not 1 <= limit <= MAX_PAGE:
            raise bad_request(f"limit must be between 1 and {MAX_PAGE}", param="limit")
        status, after = q.get("status"), q.get("after")

        def read():
            try:
                jobs = storage.list_jobs(self.db(), status=status, limit=limit + 1, after=after)
            except storage.JobNotFound:
                raise bad_request(f"after: no job {after!r}", param="after") from None
            page = [job_view(j) for j in jobs[:limit]]
            return {"object": "list", "data": page, "has_more": len(jobs) > limit,
                    "first_id": page[0]["id"] if page else None, "last_id": page[-1]["id"] if page else None}

        return JSONResponse(await run_in_threadpool(read))

    async def delete_job(self, request: Request) -> Response:
        job_id = request.path_params["job_id"]

        def delete():
            job, state, _ = self._job_or_state(job_id)
            status = state or job["status"]
            if job is None and state == "failed":
                return {"object": "job.deleted", "id": job_id, "deleted": False}
            if status not in storage.lifecycle.SETTLED:
                raise APIError(409, f"job {job_id} is {status}; it can be deleted once it is done or failed",
                               code="job_not_done", job_id=job_id, status=status)
            deleted = storage.delete_jobs(self.db(), ids=[job_id])
            return {"object": "job.deleted", "id": job_id, "deleted": bool(deleted)}

        return JSONResponse(await run_in_threadpool(delete))

    # -- POST /v1/search ----------------------------------------------------------------------------
    async def search(self, request: Request) -> Response:
        body = await self.read_json(request)
        unknown = sorted(set(body) - SEARCH_FIELDS)
        if unknown:
            raise bad_request(f"unrecognized request argument: {unknown[0]} (accepted: "
                              f"{', '.join(sorted(SEARCH_FIELDS))})", param=unknown[0], code="unknown_parameter")
        k = body.get("k", 5)
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_K:
            raise bad_request(f"k must be an integer between 1 and {MAX_K}", param="k")
        text, vector = body.get("text"), body.get("vector")
        if (text is None) == (vector is None):
            raise bad_request("give exactly one of text (a string) or vector (numbers, or base64 float32)")
        model = body.get("model")
        if model is not None and not isinstance(model, str):
            raise bad_request("model must be a string", param="model")
        chunks = body.get("chunks", False)
        if not isinstance(chunks, bool):
            raise bad_request("chunks must be true or false", param="chunks")
        own = model_label(self.settings.model)
        label = model or own
        if model is not None:
            snap = await run_in_threadpool(self.broker.snapshot)
            wm = snap.find(model)
            label = wm.name if wm is not None else model
        if text is not None:
            if not isinstance(text, str) or not text:
                raise bad_request("text must be a non-empty string", param="text")
            if label != own:
                raise bad_request(f"text queries are embedded here with EMBEDQ_MODEL ({own}); search {label} "
                                  "by vector", param="model")
            prompt, dims = body.get("prompt_name"), body.get("dimensions")

            def find():
                # As `embedq search` does: embedded here by EMBEDQ_MODEL, compared only with vectors
                # that the very same model file computed.
                from worker.search import nearest_text

                return nearest_text(self.db(), text, k=k, model=self.settings.model, prompt_name=prompt, dims=dims,
                                    chunks=chunks)

            try:
                hits = await run_in_threadpool(find)
            except (ValueError, TypeError) as e:
                raise bad_request(str(e), param="dimensions" if dims is not None else None) from None
        else:
            try:
                if isinstance(vector, str):
                    q = np.frombuffer(base64.b64decode(vector, validate=True), dtype="<f4")
                elif isinstance(vector, list) and all(isinstance(x, (int, float)) and not isinstance(x, bool)
                                                      for x in vector):
                    q = np.asarray(vector, dtype=np.float32)
                else:
                    raise ValueError("vector must be a list of numbers or base64 of little-endian float32")
            except ValueError as e:
                raise bad_request(str(e), param="vector") from None
            try:
                hits = await run_in_threadpool(lambda: storage.nearest(self.db(), q, label, k=k, chunks=chunks))
            except ValueError as e:
                raise bad_request(str(e), param="vector") from None
        # chunks=true: each hit is a chunk, its text the slice text[char_start:char_end] of the job's text.
        return JSONResponse({"object": "list", "model": label, "data": [
            {"object": "search.result", "job_id": h[0], "index": h[1], "text": h[2], "score": h[3],
             **({"chunk": h[4]} if chunks else {})} for h in hits]})

    # -- models, health, metrics --------------------------------------------------------------------
    @staticmethod
    def model_view(m) -> dict:
        return {"id": m.name, "object": "model", "created": 0, "owned_by": "embedq", "dim": m.dim,
                "dims_allowed": list(m.dims_allowed), "max_tokens": m.max_tokens, "prompts": m.prompts,
                # The aliases a client can name, less file paths (nothing about the server's disk).
                "aliases": sorted(a for a in m.aliases if "/" not in a and "\\" not in a),
                "architecture": m.architecture, "weight_type": m.weight_type, "workers": list(m.workers)}

    async def models(self, request: Request) -> Response:
        snap = await run_in_threadpool(self.broker.snapshot)
        return JSONResponse({"object": "list", "data": [self.model_view(m) for m in snap.models]})

    async def model(self, request: Request) -> Response:
        name = request.path_params["model"]
        snap = await run_in_threadpool(self.broker.snapshot)
        m = snap.find(name)
        if m is None:
            raise APIError(404, f"no worker serves model {name!r}", param="model", code="model_not_found")
        return JSONResponse(self.model_view(m))

    async def health(self, request: Request) -> Response:
        def database():
            with self.db().read() as conn:
                conn.exec_driver_sql("SELECT 1")

        async def check(fn, seconds=5.0):
            try:
                return True, await asyncio.wait_for(run_in_threadpool(fn), seconds), None
            except asyncio.TimeoutError:
                return False, None, f"no answer within {seconds:g} s"
            except APIError as e:
                return False, None, e.message
            except Exception as e:
                return False, None, f"{type(e).__name__}: {e}"

        broker = self.broker
        (b_ok, depth, b_err), (d_ok, _, d_err), (w_ok, snap, w_err) = await asyncio.gather(
            check(lambda: broker.queue_depth(broker.all_queues(), max_age=0)), check(database),
            check(broker.snapshot))
        workers = snap.workers if snap is not None else []
        if w_ok and not workers:
            w_ok, w_err = False, snap.error or f"no worker answers on queue {broker.queue!r}"
        body = {
            "status": "ok" if b_ok and d_ok and w_ok else "unavailable",
            "broker": {"ok": b_ok, "queue": broker.queue, "queue_depth": depth, "error": b_err},
            "database": {"ok": d_ok, "error": d_err},
            "workers": {"ok": w_ok, "count": len(workers), "names": workers,
                        "models": [m.name for m in snap.models] if snap is not None else [], "error": w_err},
        }
        body["down"] = [part for part in ("broker", "database", "workers") if not body[part]["ok"]]
        return JSONResponse(body, status_code=200 if not body["down"] else 503)

    def _scrape(self) -> dict:
        out: dict = {"queue": self.settings.queue}
        with contextlib.suppress(Exception):
            out["jobs"] = storage.status_counts(self.db())
        with contextlib.suppress(Exception):
            out["queue_depths"] = self.broker.depths(self.broker.all_queues())
        with contextlib.suppress(Exception):
            snap = self.broker._snapshot
            if snap.at:
                out["workers"] = len(snap.workers)
        return out

    async def prometheus(self, request: Request) -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST

        return Response(await run_in_threadpool(self.metrics.exposition), media_type=CONTENT_TYPE_LATEST)

    # -- the app ------------------------------------------------------------------------------------
    def endpoint(self, route: str, fn):
        """Wrap a handler: APIError -> its JSON response, anything else -> 500; count and time it."""

        async def handler(request: Request) -> Response:
            t0 = time.perf_counter()
            try:
                response = await fn(request)
            except APIError as e:
                response = e.response()
            except Exception as e:
                response = unavailable(e)
                if response is None:
                    log.exception("%s %s failed", request.method, request.url.path)
                    response = APIError(500, f"internal error: {type(e).__name__}: {e}",
                                        code="internal_error").response()
            self.metrics.request(route, response.status_code, time.perf_counter() - t0)
            return response

        return handler

    def authorized(self, header: str | None) -> bool:
        if not self.keys:
            return True
        scheme, _, token = (header or "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            return False
        given = token.strip().encode("utf-8")
        ok = False
        for key in self.keys:  # every key compared, in constant time each
            ok |= hmac.compare_digest(given, key)
        return ok


def submit_error(e: Exception) -> APIError:
    """503 for a job that could not be published: nobody serves its model (routing by model
    refuses it at once), or the broker cannot be reached."""
    if isinstance(e, LookupError):  # worker.routing.ModelNotServed
        return APIError(503, str(e), param="model", code="model_not_served", headers={"Retry-After": "5"})
    return APIError(503, f"the broker is unavailable: {type(e).__name__}: {e}", code="broker_unavailable",
                    headers={"Retry-After": "5"})


def unavailable(e: Exception) -> Response | None:
    """503 for an error that says the database or the broker cannot be reached right now."""
    from kombu.exceptions import OperationalError as BrokerError

    first = str(e).splitlines()[0][:300] if str(e) else ""
    if storage.is_transient(e):
        return APIError(503, f"the database is unavailable: {type(e).__name__}: {first}",
                        code="database_unavailable", headers={"Retry-After": "5"}).response()
    if isinstance(e, (BrokerError, ConnectionError)) or type(e).__module__.startswith(("redis", "kombu")):
        return APIError(503, f"the broker is unavailable: {type(e).__name__}: {first}",
                        code="broker_unavailable", headers={"Retry-After": "5"}).response()
    return None


class APIKeys:
    """ASGI middleware: with keys configured, every route but /health needs `Authorization: Bearer KEY`."""

    OPEN = frozenset({"/health"})

    def __init__(self, app, gateway: Gateway):
        self.app = app
        self.gateway = gateway

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and self.gateway.keys and scope.get("path") not in self.OPEN:
            header = next((v.decode("latin-1") for k, v in scope.get("headers", ()) if k == b"authorization"), None)
            if not self.gateway.authorized(header):
                message = ("missing API key: send Authorization: Bearer KEY" if not header
                           else "invalid API key")
                response = APIError(401, message, code="invalid_api_key",
                                    headers={"WWW-Authenticate": "Bearer"}).response()
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _warm(gw: Gateway) -> None:
    try:
        gw.broker.snapshot()
    except Exception as e:
        log.warning("could not ask the workers what they serve: %s: %s", type(e).__name__, e)


def create_app(settings: Settings | None = None) -> Starlette:
    """The gateway as an ASGI app (`uvicorn gateway:create_app --factory`, or `embedq http`)."""
    from contextlib import asynccontextmanager

    from starlette.middleware import Middleware

    gw = Gateway(settings)
    e = gw.endpoint
    routes = [
        Route("/v1/embeddings", e("embeddings", gw.embeddings), methods=["POST"]),
        Route("/v1/jobs", e("jobs.create", gw.create_job), methods=["POST"]),
        Route("/v1/jobs", e("jobs.list", gw.list_jobs), methods=["GET"]),
        Route("/v1/jobs/{job_id}", e("jobs.get", gw.get_job), methods=["GET"]),
        Route("/v1/jobs/{job_id}", e("jobs.delete", gw.delete_job), methods=["DELETE"]),
        Route("/v1/jobs/{job_id}/vectors", e("jobs.vectors", gw.job_vectors), methods=["GET"]),
        Route("/v1/jobs/{job_id}/chunks", e("jobs.chunks", gw.job_chunks), methods=["GET"]),
        Route("/v1/search", e("search", gw.search), methods=["POST"]),
        Route("/v1/models", e("models", gw.models), methods=["GET"]),
        Route("/v1/models/{model:path}", e("models.get", gw.model), methods=["GET"]),
        Route("/health", e("health", gw.health), methods=["GET"]),
        Route("/metrics", e("metrics", gw.prometheus), methods=["GET"]),
    ]

    async def http_error(request: Request, exc: HTTPException) -> Response:
        return APIError(exc.status_code, f"{request.method} {request.url.path}: {exc.detail}",
                        code="not_found" if exc.status_code == 404 else None).response()

    @asynccontextmanager
    async def lifespan(app):
        # Ask the workers what they serve now, so the first request does not wait for it.
        threading.Thread(target=_warm, args=(gw,), name="embedq-gateway-warm", daemon=True).start()
        yield
        gw.close()

    app = Starlette(routes=routes, middleware=[Middleware(APIKeys, gateway=gw)],
                    exception_handlers={HTTPException: http_error}, lifespan=lifespan)
    app.state.gateway = gw
    return app
