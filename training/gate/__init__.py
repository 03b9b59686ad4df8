"""The release gate behind ``python -m training.validate``: evaluate, compare with thresholds, report, promote."""
