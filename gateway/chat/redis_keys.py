"""The Redis names of the chat's keys and channels, in one place.

With one Redis (or Sentinel) the names are those every release used (`<prefix>room:<room>`, …), so an
upgrade keeps its history. In a Redis Cluster every key and channel of one room carries the room as its
hash tag (`<prefix>room:{<room>}`): the room's stream, resend markers and presence live on one shard, the
scripts touching them stay single-slot, and rooms spread over the shards. The history limits' keys share the
tag `{quota}` (one small shard-local script). docs/deployment.md gives the mapping for a migration.
"""

from __future__ import annotations


class RoomKeys:
    def __init__(self, prefix: str, tagged: bool = False) -> None:
        self.prefix = prefix
        self.tagged = tagged

    def _room(self, kind: str, room: str) -> str:
        return f"{self.prefix}{kind}:{{{room}}}" if self.tagged else f"{self.prefix}{kind}:{room}"

    def stream(self, room: str) -> str:
        return self._room("room", room)

    def room_of(self, stream: str) -> str:
        room = stream.removeprefix(f"{self.prefix}room:")
        return room[1:-1] if self.tagged else room

    def presence(self, room: str) -> str:
        return self._room("presence", room)

    def changed(self, room: str) -> str:
        """Edits and deletes (gateway.chat.redis_edits): message id -> the fields it takes now."""
        return self._room("changed", room)

    def changes(self, room: str) -> str:
        """The stream of a room's change events, for resuming clients."""
        return self._room("changes", room)

    def reads(self, user_id: str) -> str:
        """A user's read marks (gateway.chat.redis_rooms): one hash per user, on any shard."""
        return f"{self.prefix}read:{user_id}"

    @property
    def active(self) -> str:
        """Rooms by their last message (gateway.chat.redis_rooms)."""
        return f"{self.prefix}active"

    def dedupe(self, room: str, user_id: str, client_id: str | None) -> str:
        """A resend's marker: (user, client_id); in a cluster also the room, so that it shares the room's slot."""
        sent = client_id if client_id is not None else "-"
        return f"{self._room('sent', room)}:{user_id}:{sent}" if self.tagged else f"{self.prefix}sent:{user_id}:{sent}"

    def room_events(self, room: str) -> str:
        """Cluster only: the room's sharded channel (new messages, join and leave)."""
        return self._room("events", room)

    @property
    def events(self) -> str:
        """Every instance's channel (control notices; with one Redis also join and leave)."""
        return f"{self.prefix}events"

    @property
    def names(self) -> str:
        return f"{self.prefix}names"

    @property
    def rooms(self) -> str:
        return f"{self.prefix}{{quota}}rooms" if self.tagged else f"{self.prefix}rooms"

    def started(self, user_id: str) -> str:
        return f"{self.prefix}{{quota}}started:{user_id}" if self.tagged else f"{self.prefix}started:{user_id}"
