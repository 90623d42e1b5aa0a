"""pydantic models at the service's edges: job arguments and settings."""
from .job import OVERFLOW_MODES, EmbedRequest, InvalidJob, JobLimits, ServedModel, chunk_overlap, validate_job
from .settings import Settings, describe, get_settings

__all__ = ["OVERFLOW_MODES", "chunk_overlap", "EmbedRequest", "InvalidJob", "JobLimits", "ServedModel", "validate_job",
           "Settings", "describe", "get_settings"]
