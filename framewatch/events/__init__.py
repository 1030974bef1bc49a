"""The audit trail: every state change writes one event."""
