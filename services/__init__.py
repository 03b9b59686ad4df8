"""Serving core of the computer-vision API: settings, errors, logging, metrics, models and services."""
