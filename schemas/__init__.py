"""pydantic models at the service's edges: job arguments and settings."""
from .job import EmbedRequest, InvalidJob, JobLimits, ServedModel, validate_job
from .settings import Settings, describe, get_settings

__all__ = ["EmbedRequest", "InvalidJob", "JobLimits", "ServedModel", "validate_job",
           "Settings", "describe", "get_settings"]
