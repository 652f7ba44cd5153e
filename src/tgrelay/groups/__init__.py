"""Telegram groups linked to a workspace: connect sessions, connections, notifications."""
