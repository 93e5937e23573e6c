"""Messaging: a real-time UDP network of relays (multi-path, de-duplicated, authenticated)."""
