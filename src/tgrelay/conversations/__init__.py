"""Conversations: multi-step flows defined as data, and the pure engine that runs them."""
