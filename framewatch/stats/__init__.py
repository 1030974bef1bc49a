"""Statistics: hourly roll-ups and the statistics endpoint."""
