"""Server-rendered pages under /ui: sign in with an API key, link groups, send test alerts."""
