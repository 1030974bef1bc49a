"""Statistics: hourly and daily roll-ups and the statistics endpoint."""
