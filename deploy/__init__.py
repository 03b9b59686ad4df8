"""Running the production topology: natively on loopback (python -m deploy) and its description."""
