"""Per-channel rate limits: a token bucket per channel in Redis (shared by every worker),
the pause a receiver asked for with 429 + Retry-After, and the pure plan that groups
notifications into fewer messages when the bucket cannot pay for one message each."""

import logging
import math
from dataclasses import dataclass

import redis

from monitoring.redis import redis_client

from .choices import ChannelKind

log = logging.getLogger("notifications")

KEY_PREFIX = "mon:notif"
# Messages per minute of a channel that sets no rate_limit_per_minute: Slack's incoming
# webhooks allow about one per second, Twilio a long-code number about one SMS per second,
# PagerDuty's Events API 120 events a minute per integration key. Email and webhooks: none.
DEFAULT_PER_MINUTE: dict[str, int] = {ChannelKind.SLACK: 60, ChannelKind.SMS: 60, ChannelKind.PAGERDUTY: 120}

# KEYS[1] the bucket; ARGV: tokens per second, capacity, now (epoch s), wanted, ttl (s).
# Returns {granted, seconds until the next whole token} (as strings: Lua numbers returned
# to Redis are truncated to integers).
_TAKE = """
local rate = tonumber(ARGV[1])
local capacity = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
local wanted = tonumber(ARGV[4])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil or ts == nil then
  tokens = capacity
  ts = now
end
if now > ts then
  tokens = math.min(capacity, tokens + (now - ts) * rate)
  ts = now
end
local granted = math.min(wanted, math.floor(tokens))
if granted < 0 then granted = 0 end
tokens = tokens - granted
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(ts))
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[5]))
local wait = 0
if tokens < 1 then wait = (1 - tokens) / rate end
return {tostring(granted), tostring(wait)}
"""
# KEYS[1] the bucket; ARGV: tokens to return, capacity.
_GIVE_BACK = """
local tokens = tonumber(redis.call('HGET', KEYS[1], 'tokens'))
if tokens == nil then return 0 end
tokens = math.min(tonumber(ARGV[2]), tokens + tonumber(ARGV[1]))
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens))
return 1
"""


@dataclass(frozen=True)
class Limit:
    """`per_minute` messages a minute, with bursts of up to `capacity` at once."""

    per_minute: int

    @property
    def per_second(self) -> float:
        return self.per_minute / 60.0

    @property
    def capacity(self) -> int:
        return max(1, self.per_minute // 10)


def limit_for(kind: str, rate_limit_per_minute: int | None) -> Limit | None:
    """The channel's own limit, else its kind's default, else none."""
    per_minute = rate_limit_per_minute or DEFAULT_PER_MINUTE.get(kind)
    return Limit(per_minute) if per_minute else None


@dataclass(frozen=True)
class Grant:
    granted: int
    wait_s: float  # until the next token, when none is left


def take_tokens(channel_id: int, limit: Limit | None, wanted: int, now: float) -> Grant:
    """Take up to `wanted` tokens from the channel's bucket at `now` (epoch seconds). With
    Redis away the limit is not enforced (logged): a late notification is worse than one
    sent too fast, and the receiver's own 429 still applies."""
    if limit is None or wanted <= 0:
        return Grant(max(wanted, 0), 0.0)
    ttl = int(math.ceil(limit.capacity / limit.per_second)) + 60
    try:
        granted, wait = redis_client().eval(
            _TAKE, 1, _bucket_key(channel_id), limit.per_second, limit.capacity, now, wanted, ttl
        )
    except redis.RedisError as exc:
        log.warning("channel %s: rate limit not enforced, Redis unavailable: %s", channel_id, exc)
        return Grant(wanted, 0.0)
    return Grant(int(float(granted)), float(wait))


def give_back(channel_id: int, limit: Limit | None, tokens: int) -> None:
    """Return tokens taken but not used."""
    if limit is None or tokens <= 0:
        return
    try:
        redis_client().eval(_GIVE_BACK, 1, _bucket_key(channel_id), tokens, limit.capacity)
    except redis.RedisError as exc:
        log.warning("channel %s: tokens not returned, Redis unavailable: %s", channel_id, exc)


def block_channel(channel_id: int, until: float, now: float) -> None:
    """Send nothing to the channel before `until` (epoch seconds): its receiver answered 429
    with Retry-After. A later block only ever extends an earlier one."""
    key = _block_key(channel_id)
    ttl = max(1, int(math.ceil(until - now)) + 60)
    try:
        client = redis_client()
        current = client.get(key)
        if current is not None and float(current) >= until:
            return
        client.set(key, repr(until), ex=ttl)
    except redis.RedisError as exc:
        log.warning("channel %s: Retry-After not shared with other workers, Redis unavailable: %s", channel_id, exc)


def blocked_until(channel_id: int, now: float) -> float | None:
    """When the channel's Retry-After pause ends, if it has not ended by `now`."""
    try:
        value = redis_client().get(_block_key(channel_id))
    except redis.RedisError:
        return None
    if value is None:
        return None
    until = float(value)
    return until if until > now else None


def _bucket_key(channel_id: int) -> str:
    return f"{KEY_PREFIX}:bucket:{channel_id}"


def _block_key(channel_id: int) -> str:
    return f"{KEY_PREFIX}:block:{channel_id}"


# --- Grouping ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """Which notifications go out now, as messages (tuples of indexes into the input), and
    which wait for the next token (`held`)."""

    messages: tuple[tuple[int, ...], ...]
    held: tuple[int, ...]


def plan_messages(events: list[str], tokens: int, *, can_group: bool, max_group: int) -> Plan:
    """Decide how the notifications of one channel (their events, oldest first) use `tokens`
    messages. With a token each, each goes alone. Otherwise, on a channel that can group,
    notifications of one event share messages of up to `max_group`, oldest first, one
    message per token; what does not fit waits. Nothing is dropped: every notification is
    either in a message or held."""
    count = len(events)
    if tokens >= count:
        return Plan(tuple((i,) for i in range(count)), ())
    if tokens <= 0:
        return Plan((), tuple(range(count)))
    if not can_group or max_group <= 1:
        return Plan(tuple((i,) for i in range(tokens)), tuple(range(tokens, count)))
    by_event: dict[str, list[int]] = {}
    for index, event in enumerate(events):
        by_event.setdefault(event, []).append(index)
    messages: list[tuple[int, ...]] = []
    for indexes in by_event.values():  # events in the order of their oldest notification
        for start in range(0, len(indexes), max_group):
            if len(messages) == tokens:
                break
            messages.append(tuple(indexes[start : start + max_group]))
    sent = {i for message in messages for i in message}
    return Plan(tuple(messages), tuple(i for i in range(count) if i not in sent))
