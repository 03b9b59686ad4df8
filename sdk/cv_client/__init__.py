"""Python SDK of the cv-api: classification, detection, similarity search and batch jobs over HTTP."""

from cv_client.async_client import AsyncClient
from cv_client.client import Client
from cv_client.config import RetryPolicy
from cv_client.errors import (
    ApiError,
    BadRequest,
    Conflict,
    CvClientError,
    Forbidden,
    InvalidParameter,
    JobTimeout,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    ServerError,
    ServiceUnavailable,
    Unauthorized,
    UnsupportedMediaType,
)
from cv_client.models import (
    BatchResult,
    ClassifyResult,
    DetectResult,
    ExperimentResult,
    ExperimentsResult,
    FeedbackResult,
    GalleryItem,
    GallerySize,
    HealthResult,
    Job,
    ModelsResult,
    SearchResult,
)

__version__ = "0.1.0"

__all__ = [
    "ApiError",
    "AsyncClient",
    "BadRequest",
    "BatchResult",
    "ClassifyResult",
    "Client",
    "Conflict",
    "CvClientError",
    "DetectResult",
    "DriftReport",
    "ExperimentResult",
    "ExperimentsResult",
    "FeedbackResult",
    "Forbidden",
    "GalleryItem",
    "GallerySize",
    "HealthResult",
    "InvalidParameter",
    "Job",
    "JobTimeout",
    "ModelsResult",
    "NotFound",
    "PayloadTooLarge",
    "RateLimited",
    "RetryPolicy",
    "SearchResult",
    "ServerError",
    "ServiceUnavailable",
    "Unauthorized",
    "UnsupportedMediaType",
]
