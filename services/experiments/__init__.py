"""A/B experiments: assignment of requests to arms, their records, and the statistics that compare the arms."""
