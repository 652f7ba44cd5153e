"""Outgoing events: catalog, endpoints, signing, delivery, dead letters, replay."""
