"""The suppression list: keyed hashes, listing, removal; erased people stay out of imports."""

from __future__ import annotations

from datetime import UTC, datetime

from comms.audience import Stakeholder
from comms.store import Store
from comms.store.stakeholders import sync
from comms.suppression import AddressHasher, list_suppressions, suppress, unsuppress

NOW = datetime(2026, 12, 1, tzinfo=UTC)


def test_suppress_list_and_remove(store_url: str) -> None:
    store = Store(store_url)
    hasher = AddressHasher(store)
    assert hasher("A@X.example") == hasher("a@x.example") != hasher("b@x.example")
    with store.write() as conn:
        suppress(conn, hasher, ["A@X.example", "a@x.example"], reason="unsubscribed",
                 source="test", now=NOW)
        assert [s.email for s in list_suppressions(conn)] == ["a@x.example"]
        assert unsuppress(conn, hasher, "a@x.example")
        assert list_suppressions(conn) == []
    store.dispose()


def test_forgotten_address_is_not_imported_again(store_url: str) -> None:
    store = Store(store_url)
    hasher = AddressHasher(store)
    with store.write() as conn:
        suppress(conn, hasher, ["gone@x.example"], reason="forgotten", source="request", now=NOW)
    people = [Stakeholder(email="Gone@x.example", first_name="G", last_name="One", role="manager"),
              Stakeholder(email="kept@x.example", first_name="K", last_name="Two", role="manager")]
    result = sync(store, people, now=NOW)
    assert [p.email for p in result.forgotten] == ["Gone@x.example"]
    assert result.upserted == 1
    with store.write() as conn:
        assert not unsuppress(conn, hasher, "gone@x.example")  # erasure cannot be undone here
    store.dispose()
