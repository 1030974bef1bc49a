"""Shared plumbing: settings, database, errors, secrets, logging."""
