"""What a running worker serves, for clients that need to know (the HTTP gateway's /v1/models,
/health and its "no worker serves this model" answer).

Two ways to ask, the same answer (`served_info`):
* the remote-control command `embedq_info` (`app.control.broadcast("embedq_info", reply=True)`):
  answered by every worker on the broker from its consumer thread, however long its queue is, like
  `celery inspect ping`. Needs a broker that broadcasts (Redis, AMQP);
* the task `embedq.info`, sent through a queue like a job: answered by one worker consuming that
  queue. For the embedded SQLite broker, which cannot broadcast.
Both are cheap: they read what the worker loaded at start and compute nothing.
"""
from __future__ import annotations

from celery.worker.control import inspect_command

from . import runtime as _runtime_module
from .app import app


def served_info(rt, hostname: str, queues: list[str]) -> dict:
    """The model `rt` serves: name, aliases, dim, dims_allowed, max_tokens, prompts, and who serves it."""
    served = rt.served
    model = getattr(rt.backend, "model", None)
    info = dict(getattr(model, "info", None) or {})
    return dict(
        worker=hostname, queues=sorted(queues), model=served.name, aliases=sorted(served.aliases),
        dim=served.dim, dims_allowed=list(served.dims_allowed or (served.dim,)),
        max_tokens=info.get("max_tokens"), prompts=dict(served.prompts), architecture=info.get("architecture"),
        weight_type=info.get("weight_type"),
    )


@inspect_command()
def embedq_info(state):
    """Remote control: this worker's served model (None before its runtime has started)."""
    rt = getattr(_runtime_module, "_runtime", None)
    if rt is None:
        return {"ready": False}
    consumer = state.consumer
    queues = [q.name for q in getattr(consumer.task_consumer, "queues", ())] if consumer.task_consumer else []
    return {"ready": True, **served_info(rt, consumer.hostname, queues)}


@app.task(bind=True, name="embedq.info", acks_late=True)
def info(self):
    """The served model of the worker that takes this message (see the module docstring)."""
    rt = _runtime_module.get_runtime()
    queue = (self.request.delivery_info or {}).get("routing_key")
    return {"ready": True, **served_info(rt, self.request.hostname, [queue] if queue else [])}
