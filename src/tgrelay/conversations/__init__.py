"""Conversations: flows as data, the pure engine, persisted conversations and history."""
