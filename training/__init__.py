"""Offline model preparation: build, verify and export the models that the API serves."""
