"""The support desk: tickets from private chats, answered by agents in forum topics."""
