"""Outgoing HTTP to customers' apps: the aiohttp client, the SSRF guard, Standard Webhooks."""
