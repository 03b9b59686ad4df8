"""Shadow traffic: a version in stage ``shadow`` answers a copy of live requests, off the hot path (ADR 0011)."""
