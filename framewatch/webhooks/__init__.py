"""Outbound webhooks: subscriptions, durable deliveries with retries, signatures."""
