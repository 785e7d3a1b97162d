"""Calling other APIs: provider clients, endpoints with their breakers, routing."""
