"""Replies by mail: matched to the send they answer by In-Reply-To / References, text kept."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from comms.app import App
from comms.settings import load_settings
from comms.store import tables
from comms.tracking.inbound import process_message
from tests.conftest import FakeClock

REPLY = """\
From: Tariq Nowak <tariq.nowak@bexley-ct.nhs.example>
To: programme.office@sel-learning.example
Subject: Re: Tariq, develop as a leader with the NMDI
Date: Wed, 02 Dec 2026 10:15:00 +0000
Message-ID: <reply-1@bexley-ct.nhs.example>
In-Reply-To: {in_reply_to}
References: <older@elsewhere.example> {in_reply_to}
Content-Type: text/plain; charset=utf-8

Thank you — I would like to take part. Could my deputy come to workshop 1 too?

> Dear Tariq,
"""


def test_reply_is_recorded_on_the_send_it_answers(project_dir: Path, store_url: str,
                                                 clock: FakeClock) -> None:
    app = App(load_settings(project_dir, database_url=store_url), clock=clock)
    app.sync_directory()
    campaign = app.project.campaign("nmdi-awareness")
    app.dispatcher().send(campaign, campaign.steps[0])
    s, st, r = tables.sends, tables.stakeholders, tables.responses
    with app.store.read() as conn:
        send_id, uid = conn.execute(select(s.c.id, s.c.uid).join(st, st.c.id == s.c.stakeholder_id)
                                    .where(st.c.email == "tariq.nowak@bexley-ct.nhs.example")).one()
    raw = REPLY.format(in_reply_to=f"<{uid}@sel-learning.example>").encode()
    result = process_message(app.rsvps, raw)
    assert result.recorded == ["nmdi-awareness/launch: replied"] and result.unmatched == []
    with app.store.read() as conn:
        row = conn.execute(select(r.c.send_id, r.c.kind, r.c.detail, r.c.occurred_at)).one()
    assert (row.send_id, row.kind) == (send_id, "replied")
    assert row.detail.startswith("Thank you — I would like to take part.")
    assert row.occurred_at.isoformat() == "2026-12-02T10:15:00+00:00"
    other = process_message(app.rsvps, REPLY.format(in_reply_to="<x@elsewhere.example>").encode())
    assert other.recorded == [] and other.unmatched == []  # ordinary mail is left alone
    unknown = process_message(app.rsvps, REPLY.format(in_reply_to=f"<{'f' * 32}@x.example>").encode())
    assert unknown.unmatched == ["a reply to an email this store did not send"]
    app.close()
