"""The routers' shared task ledger: which router instance runs a task id, and what the task id was answered.

Every router publishes, retained, on the router-only topic ``ledger/{task_id}`` (a `LedgerEntry`):

    running    when it starts a task (its claim)
    answered   with the TaskAnswer, once answered (an ErrorReply clears the entry: the task may be retried)

and every router reads every entry, so a router that joins or comes back learns the answered ids and the claims
from the retained messages before it announces itself and takes work. The rules, pure (the caller passes the
time and the live routers):

- an answer is final: a later claim never replaces it, and within the retention window whichever router owns
  the task id replays that answer (to the client that asked) without new runs;
- a claim counts only while its router instance is live; a claim of a router that died, or that came back as a
  new instance, is void and the task's owner runs it again;
- entries older than the retention window (default 10 min; answered or not) are forgotten, and any router
  clears their retained messages; at most `max_entries` are kept (the oldest go first). A router renews its
  claims on tasks that run longer than half the window.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping

from shared.messages import LedgerEntry, TaskAnswer

DEFAULT_RETENTION_S = 600.0
DEFAULT_MAX_ENTRIES = 20_000


class TaskLedger:
    """What this router knows of every router's claims and answers."""

    def __init__(self, retention_s: float = DEFAULT_RETENTION_S, max_entries: int = DEFAULT_MAX_ENTRIES) -> None:
        if retention_s <= 0 or max_entries < 1:
            raise ValueError(f"retention_s must be > 0 and max_entries >= 1, got {retention_s} and {max_entries}")
        self.retention_s = retention_s
        self.max_entries = max_entries
        self._entries: OrderedDict[str, LedgerEntry] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def apply(self, entry: LedgerEntry, now: float) -> bool:
        """Take an entry into account; False when it is ignored (expired, or a claim on an answered task)."""
        if self.is_expired(entry, now):
            return False
        current = self._entries.get(entry.task_id)
        if current is not None and current.status == "answered" and entry.status == "running":
            return False
        self._entries[entry.task_id] = entry
        self._entries.move_to_end(entry.task_id)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
        return True

    def forget(self, task_id: str) -> None:
        self._entries.pop(task_id, None)

    def get(self, task_id: str) -> LedgerEntry | None:
        return self._entries.get(task_id)

    def answered(self, task_id: str) -> LedgerEntry | None:
        entry = self._entries.get(task_id)
        return entry if entry is not None and entry.status == "answered" else None

    def answered_entries(self, now: float) -> list[LedgerEntry]:
        """The answers still inside the retention window."""
        return [e for e in self._entries.values() if e.status == "answered" and not self.is_expired(e, now)]

    def claimed_elsewhere(self, task_id: str, live: Mapping[str, str], instance_id: str) -> LedgerEntry | None:
        """The running claim of another live router instance on `task_id` (live: router id -> instance id)."""
        entry = self._entries.get(task_id)
        if entry is None or entry.status != "running" or entry.instance_id == instance_id:
            return None
        return entry if live.get(entry.router_id) == entry.instance_id else None

    def is_expired(self, entry: LedgerEntry, now: float) -> bool:
        return now - entry.at > self.retention_s

    def expire(self, now: float) -> list[str]:
        """Forget the entries older than the retention window; returns their task ids (to clear them)."""
        expired = [task_id for task_id, entry in self._entries.items() if self.is_expired(entry, now)]
        for task_id in expired:
            del self._entries[task_id]
        return expired


def answered_entry(answer: TaskAnswer, client_id: str, router_id: str, instance_id: str, now: float) -> LedgerEntry:
    return LedgerEntry(
        task_id=answer.task_id,
        router_id=router_id,
        instance_id=instance_id,
        client_id=client_id,
        status="answered",
        answer=answer,
        at=now,
    )


def claim_entry(task_id: str, client_id: str, router_id: str, instance_id: str, now: float) -> LedgerEntry:
    return LedgerEntry(
        task_id=task_id, router_id=router_id, instance_id=instance_id, client_id=client_id, status="running", at=now
    )
