"""Publishing detections and events to an MQTT broker (Home Assistant-style integrations)."""
