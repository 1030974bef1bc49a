"""Retention: deleting what is older than the operator chose to keep."""
