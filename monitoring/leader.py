"""Celery beat runs once: any number of beat processes may run, and only the one holding a
lock in Redis sends periodic tasks; a standby takes the lock over when the leader stops
renewing it (settings MONITORING_BEAT_LOCK_TTL and MONITORING_BEAT_LOCK_RENEW)."""

import logging
import math
import os
import socket
import time
import uuid

import redis
from django.conf import settings
from django_celery_beat.schedulers import DatabaseScheduler
from redis.exceptions import LockError, LockNotOwnedError
from redis.lock import Lock

from .periodic import WINDOW_HEADER

log = logging.getLogger("beat_leader")


class LeaderLock:
    """A lock in Redis that one process at a time holds for `ttl` seconds and renews.

    redis-py's Lock does the three operations: taking it is `SET key token NX PX ttl`, renewing
    it a Lua compare-and-extend, releasing it a Lua compare-and-delete, so a holder that lost
    the lock never extends or deletes another holder's. The token names the holder
    (host:pid:random), so `redis-cli GET <key>` tells who leads."""

    def __init__(
        self, client: redis.Redis, *, key: str, ttl: float, renew_every: float, identity: str | None = None
    ) -> None:
        if not 0 < renew_every < ttl:
            raise ValueError(f"the renewal interval ({renew_every}s) must be above 0 and below the TTL ({ttl}s)")
        self.lock = Lock(client, key, timeout=ttl, thread_local=False)
        self.key = key
        self.ttl = ttl
        self.renew_every = renew_every
        self.token = f"{identity or f'{socket.gethostname()}:{os.getpid()}'}:{uuid.uuid4().hex[:8]}"
        self.is_leader = False
        self._standby_announced = False
        self._checked_at = -math.inf

    def check(self, now: float | None = None) -> bool:
        """Whether this process leads: takes the lock when it is free, renews it when held,
        at most once per `renew_every` seconds (in between, the last answer stands, which
        is at most `renew_every` old, well inside the TTL)."""
        now = time.monotonic() if now is None else now
        if now - self._checked_at < self.renew_every:
            return self.is_leader
        self._checked_at = now
        leading = self._take_or_renew()
        if leading and not self.is_leader:
            log.info(
                "beat leader lock %s taken by %s (TTL %gs): this beat sends the periodic tasks",
                self.key,
                self.token,
                self.ttl,
            )
        elif self.is_leader and not leading:
            log.warning("beat leader lock %s lost by %s: standing by", self.key, self.token)
        if not leading and not self._standby_announced:
            log.info("beat leader lock %s is held by %s: %s stands by", self.key, self.holder(), self.token)
        self._standby_announced = not leading
        self.is_leader = leading
        return leading

    def _take_or_renew(self) -> bool:
        try:
            if self.lock.local.token is not None:
                try:
                    # Also after a Redis outage that made us step down: the key may still be ours.
                    return self.lock.reacquire()
                except LockNotOwnedError:
                    self.lock.local.token = None
            return self.lock.acquire(blocking=False, token=self.token)
        except (redis.RedisError, OSError) as exc:
            # Without Redis there is no broker either: nothing to send, and no way to know.
            log.warning("beat leader lock %s cannot be checked (%s): not sending", self.key, exc)
            return False

    def holder(self) -> str | None:
        """The token of whoever holds the lock now, if anyone."""
        try:
            value = self.lock.redis.get(self.key)
        except (redis.RedisError, OSError):
            return None
        return value.decode() if isinstance(value, bytes) else value

    def release(self) -> None:
        """Give the lock up (a clean shutdown), so a standby need not wait for the TTL; a
        lock held by someone else by now is left alone."""
        was_leader, self.is_leader = self.is_leader, False
        self._checked_at = -math.inf
        if self.lock.local.token is None:
            return
        try:
            self.lock.release()
        except LockNotOwnedError:
            pass  # expired and maybe taken by another: not ours to delete
        except (LockError, redis.RedisError, OSError) as exc:
            log.warning("beat leader lock %s not released (%s): it expires after its TTL", self.key, exc)
            return
        if was_leader:
            log.info("beat leader lock %s released by %s", self.key, self.token)


def beat_leader_lock(client: redis.Redis | None = None) -> LeaderLock:
    """The lock of the settings (key, TTL, renewal interval) on the project's Redis."""
    from .redis import redis_client

    return LeaderLock(
        client or redis_client(),
        key=settings.MONITORING_BEAT_LOCK_KEY,
        ttl=settings.MONITORING_BEAT_LOCK_TTL,
        renew_every=settings.MONITORING_BEAT_LOCK_RENEW,
    )


class LeaderScheduler(DatabaseScheduler):
    """django-celery-beat's DatabaseScheduler that sends due tasks only while it holds the
    beat leader lock. Each message carries the time beat scheduled it and its interval
    (header WINDOW_HEADER), from which the task derives its evaluation window."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.leader = beat_leader_lock()

    def tick(self, *args, **kwargs) -> float:
        was_leader = self.leader.is_leader
        if not self.leader.check():
            return self.leader.renew_every
        if not was_leader:
            self._read_schedule_afresh()
        return min(super().tick(*args, **kwargs), self.leader.renew_every)

    def _read_schedule_afresh(self) -> None:
        """A new leader starts from the schedule as the database has it now, with the last
        runs the previous leader recorded, not from what it read when it started."""
        self._dirty.clear()
        self._last_timestamp = self.Changes.last_change()
        self._initial_read = True
        self.schedule  # noqa: B018 (the property reads the rows)
        # The heap is rebuilt from these entries on this tick. A pending "heap invalidated"
        # would rebuild it again on the next tick from entries that do not know the run just
        # sent, and send it twice.
        self._heap = None
        self._heap_invalidated = False

    def apply_async(self, entry, producer=None, advance: bool = True, **kwargs):
        # ModelEntry.__next__ set the shared model's last_run_at to the moment beat reserved
        # this run; consecutive runs are at least one interval apart, so no window is skipped.
        model = getattr(entry, "model", None)
        scheduled_at = model.last_run_at.timestamp() if model is not None and model.last_run_at else time.time()
        run_every = getattr(entry.schedule, "run_every", None)
        window = {"at": scheduled_at, "every": run_every.total_seconds() if run_every is not None else None}
        headers = {**(entry.options.get("headers") or {}), WINDOW_HEADER: window}
        entry.options = {**entry.options, "headers": headers}
        return super().apply_async(entry, producer=producer, advance=advance, **kwargs)

    def close(self) -> None:
        try:
            super().close()
        finally:
            self.leader.release()
