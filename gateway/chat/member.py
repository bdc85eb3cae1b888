"""One socket in one room (`Member`), and the limits the hub applies to every socket (`HubLimits`)."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from gateway.chat.outbox import Outbox
from gateway.chat.sign_ins import SignIn
from gateway.limits import TokenBucket

_ids = itertools.count(1)
Limited = Literal["resumes", "older", "reads", "typing"]


@dataclass(frozen=True)
class HubLimits:
    history_on_join: int = 50
    history_page: int = 100  # messages per `history` frame of a resume
    history_page_bytes: int = 64 * 1024  # ... and at most this much message text (always one message)
    outbox_size: int = 256
    outbox_bytes: int = 1 << 20
    message_rate: float = 5.0
    message_burst: float = 10.0
    flood_strikes: int = 20
    resume_rate: float = 0.2  # resumes per second per socket (and `resume_burst` at once)
    resume_burst: float = 3.0
    user_resume_rate: float = 0.5  # resumes and `?after=` joins per second per user, all sockets together
    user_resume_burst: float = 10.0
    user_resume_bytes: float = float(1 << 20)  # bytes of resumed history per second per user (4 times that at once)
    presence_settle: float = 0.2  # seconds of quiet before a room's presence changes go out (0: at once)
    presence_max_wait: float = 5.0  # ... but never later than this after the first one
    older_rate: float = 2.0  # `history {before}` pages per second per socket (and `older_burst` at once)
    older_burst: float = 5.0
    typing_rate: float = 0.5  # `typing` signals passed on per second per socket (more are dropped)
    edit_window: float = 900.0  # seconds after sending that its author may edit or delete a message (0: never)
    changes_on_resume: int = 100  # edits and deletes sent to a resuming socket, at most


@dataclass(eq=False, slots=True)
class Member:
    """One socket in one room."""

    room: str
    user: dict[str, str]  # {"id", "name"}
    outbox: Outbox = field(default_factory=Outbox)
    id: str = field(default_factory=lambda: f"c{next(_ids)}")
    strikes: int = 0  # messages refused in a row for the rate limit
    resumes: TokenBucket | None = None
    older: TokenBucket | None = None  # `history {before}` pages
    reads: TokenBucket | None = None  # `read` marks
    typing: TokenBucket | None = None  # `typing` signals
    sign_in: SignIn | None = None  # None: a bearer token (a program), no browser sign-in
    # Called with the sealed token cookie a refresh of this sign-in produced (gateway.routes.chat).
    on_refresh: Callable[[str], None] | None = None
    presence_changes: bool = False  # `?presence=changes`: batches as `presence_changes`, not full lists
    awaiting_list: bool = False  # joined while its room had a batch waiting: that batch brings its list

    @property
    def wants_list(self) -> bool:
        return self.awaiting_list or not self.presence_changes

    def bucket(self, kind: Limited, rate: float, burst: float) -> TokenBucket:
        """This socket's limit of `kind`, made on first use (full, as one made at the join would be by
        then): most sockets never resume, scroll back or type, and each bucket is memory per socket."""
        bucket: TokenBucket | None = getattr(self, kind)
        if bucket is None:
            bucket = TokenBucket(rate, burst)
            setattr(self, kind, bucket)
        return bucket
