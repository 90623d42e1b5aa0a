"""The embedq queue service: Celery app, embed task, coalescing worker, CLI commands."""
