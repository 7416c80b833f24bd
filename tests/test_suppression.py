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


def test_one_click_unsubscribe_stops_every_later_step_of_every_campaign(
        project_dir, store_url, clock) -> None:  # type: ignore[no-untyped-def]
    from sqlalchemy import select

    from comms.app import App
    from comms.settings import load_settings
    from comms.store import tables
    from comms.suppression import unsubscribe_send

    app = App(load_settings(project_dir, database_url=store_url), clock=clock)
    app.sync_directory()
    awareness = app.project.campaign("nmdi-awareness")
    workshops = app.project.campaign("workshops")
    app.dispatcher().send(awareness, awareness.steps[0])
    s, st = tables.sends, tables.stakeholders
    with app.store.read() as conn:
        uid, email = conn.execute(select(s.c.uid, st.c.email).join(st, st.c.id == s.c.stakeholder_id)
                                  .order_by(s.c.id)).first()  # type: ignore[misc]
    hasher = AddressHasher(app.store)
    assert unsubscribe_send(app.store, hasher, uid, now=clock.now(), source="one-click")
    assert unsubscribe_send(app.store, hasher, uid, now=clock.now(), source="one-click")  # again
    follow_up = app.dispatcher().send(awareness, awareness.steps[1], respect_delay=False)
    invite = app.dispatcher().send(workshops, workshops.steps[0])
    assert (follow_up.sent, follow_up.suppressed) == (79, 1)
    assert (invite.sent, invite.suppressed) == (79, 1)
    with app.store.read() as conn:
        got = conn.execute(select(s.c.step, s.c.status).join(st, st.c.id == s.c.stakeholder_id)
                           .where(st.c.email == email).order_by(s.c.id)).all()
        kinds = conn.execute(select(tables.responses.c.kind)).scalars().all()
    assert got == [("launch", "sent"), ("follow-up", "suppressed"), ("invite", "suppressed")]
    assert kinds == ["unsubscribed"]  # recorded once, for reports
    app.close()
