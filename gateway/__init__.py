"""The auth and tier service in front of the api: API keys, tiers and rate limits (Traefik ForwardAuth)."""
