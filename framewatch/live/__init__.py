"""What is live: the cache of recent answers (and, later, WebSocket streaming)."""
