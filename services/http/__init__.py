"""The public HTTP API (FastAPI app mounted on the api service at /api/v1)."""
