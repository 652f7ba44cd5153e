"""Bot API access through aiogram's client, and small pure helpers over updates."""
