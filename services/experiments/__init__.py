"""A/B experiments between model versions: assignment, storage, the api's snapshot, analysis and the CLI."""
