"""The embedq queue service: the Celery app and its tasks, the job pipeline (validate, claim,
tokenize once, coalesce, store), worker processes, and text search on the service side."""
