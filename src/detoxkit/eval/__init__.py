"""Metrics: every rate comes with its n and a 95% interval."""
