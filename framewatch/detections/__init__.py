"""Detections: the send-frame pipeline and the queries that serve results back."""
