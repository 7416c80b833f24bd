"""Rate limits shared through the store: two processes (two Store objects) draw on one bucket."""

from __future__ import annotations

from datetime import timedelta

from comms.dispatch import _Result, _Window
from comms.store import Store, ratelimit
from comms.store import sends as ledger
from comms.store.ratelimit import Limit
from tests.conftest import FakeClock

LIMIT = 600  # a minute


def _take(store: Store, limits: list[Limit], wanted: int, clock: FakeClock) -> int:
    with store.write() as conn:
        return ratelimit.take(conn, limits, wanted, clock.now()).granted


def test_two_processes_share_one_per_minute_limit(store_url: str, clock: FakeClock) -> None:
    stores = [Store(store_url), Store(store_url)]
    limit = [Limit.per_minute("schedule:uk-working-hours", LIMIT)]
    burst = sum(_take(s, limit, LIMIT, clock) for s in stores)
    assert burst == LIMIT  # a full window: one minute's worth at once, between them
    by_tick = [burst]
    for tick in range(1800):  # three simulated minutes, both always wanting more
        clock.advance(seconds=0.1)
        by_tick.append(_take(stores[tick % 2], limit, 50, clock))
    # no 60 s hold more than the limit (the burst's minute included), each minute all of it
    assert max(sum(by_tick[i:i + 600]) for i in range(len(by_tick) - 599)) <= LIMIT
    minutes = [sum(by_tick[i:i + 600]) for i in (0, 600, 1200)]
    assert all(0.98 * LIMIT <= n <= LIMIT for n in minutes), minutes
    for store in stores:
        store.dispose()


def test_unused_sends_go_back(store_url: str, clock: FakeClock) -> None:
    store = Store(store_url)
    limit = [Limit.per_minute("schedule:s", 10)]
    assert _take(store, limit, 10, clock) == 10
    with store.write() as conn:
        ratelimit.give_back(conn, limit, 4, clock.now())
    clock.advance(seconds=10)
    assert _take(store, limit, 10, clock) == 4
    clock.advance(seconds=20)
    with store.write() as conn:
        grant = ratelimit.take(conn, limit, 1, clock.now())
    assert grant.granted == 0 and grant.wait == 30.0  # the first six leave the window then
    clock.advance(seconds=30)
    assert _take(store, limit, 10, clock) == 6
    store.dispose()


def test_a_day_cap_holds_across_the_day_boundary(store_url: str, clock: FakeClock) -> None:
    stores = [Store(store_url), Store(store_url)]
    clock.current = clock.current.replace(hour=22, minute=0)
    caps = [Limit.per_day("transport:smtp:day", 100), Limit.per_minute("transport:smtp:minute",
                                                                       60)]
    by_day: dict[object, int] = {}
    for tick in range(4 * 60 * 6):  # four hours, every 10 s, both processes wanting 30
        day = clock.now().date()
        by_day[day] = by_day.get(day, 0) + _take(stores[tick % 2], caps, 30, clock)
        clock.advance(seconds=10)
    assert list(by_day.values()) == [100, 100]
    with stores[0].write() as conn:
        grant = ratelimit.take(conn, caps, 1, clock.now())
    midnight = clock.now().replace(hour=0, minute=0) + timedelta(days=1)
    assert grant.granted == 0 and grant.wait == (midnight - clock.now()).total_seconds()
    for store in stores:
        store.dispose()


def _result(latency: float | None, throttled: tuple[float, ...] = ()) -> _Result:
    outcome = ledger.Outcome(send_id=1, status="sent" if latency is not None else "failed",
                             attempts=1)
    return _Result("a@x.example", 1, outcome, [], latency, throttled)


def test_concurrency_grows_with_a_slow_provider_and_halves_on_429() -> None:
    window = _Window(8, 256)
    while window.limit < 256:
        before = window.limit
        for _ in range(before):
            window.observe(_result(0.15))
        assert window.limit == 2 * before
    for _ in range(256):
        window.observe(_result(0.15, (1.0,) if _ == 3 else ()))
    assert window.limit == 128


def test_concurrency_stays_with_a_fast_provider_or_queueing() -> None:
    fast = _Window(8, 256)
    for _ in range(80):
        fast.observe(_result(0.002))
    assert fast.limit == 8
    queueing = _Window(8, 256)
    for latency in (0.05, 0.05, 0.2):
        for _ in range(queueing.limit):
            queueing.observe(_result(latency))
    assert queueing.limit == 32  # grew twice, then latency quadrupled: no more


def test_fixed_concurrency_never_moves() -> None:
    window = _Window(8, 8)
    for _ in range(100):
        window.observe(_result(0.5))
    assert window.limit == 8
