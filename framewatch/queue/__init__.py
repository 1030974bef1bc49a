"""The durable processing queue: frames waiting for a provider."""
