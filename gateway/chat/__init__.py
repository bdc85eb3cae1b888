"""The chat: frames, per-socket outboxes and the hub that fans messages out. No web framework here."""
