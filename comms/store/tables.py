"""The store's tables (SQLAlchemy Core). Migrations in ``migrations/versions`` create the same."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
)


class UtcDateTime(TypeDecorator[datetime]):
    """Aware datetimes in, aware UTC datetimes out, on SQLite (which keeps no zone) as on PostgreSQL."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


metadata = MetaData()

meta = Table(
    "meta", metadata,
    Column("key", String(100), primary_key=True),
    Column("value", Text, nullable=False),
)

stakeholders = Table(
    "stakeholders", metadata,
    Column("id", Integer, primary_key=True),
    Column("email", String(320), nullable=False, unique=True),  # case-folded key
    Column("display_email", String(320), nullable=False),
    Column("first_name", String(200), nullable=False, server_default=""),
    Column("last_name", String(200), nullable=False, server_default=""),
    Column("role", String(100), nullable=False, server_default=""),
    Column("organisation", String(200), nullable=False, server_default=""),
    Column("borough", String(100), nullable=False, server_default=""),
    Column("job_title", String(200), nullable=False, server_default=""),
    Column("tags", Text, nullable=False, server_default=";"),  # ";a;b;" for LIKE matching
    Column("attributes", Text, nullable=False, server_default="{}"),  # JSON
    Column("source", String(500), nullable=False, server_default=""),
    Column("active", Boolean, nullable=False, server_default="1"),
    Column("updated_at", UtcDateTime(), nullable=False),
)
Index("ix_stakeholders_role", stakeholders.c.role)

runs = Table(
    "runs", metadata,
    Column("id", String(32), primary_key=True),
    Column("host", String(200), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("command", String(100), nullable=False),
    Column("started_at", UtcDateTime(), nullable=False),
    Column("heartbeat_at", UtcDateTime(), nullable=False),
    Column("finished_at", UtcDateTime()),
)

sends = Table(
    "sends", metadata,
    Column("id", Integer, primary_key=True),
    Column("uid", String(32), nullable=False, unique=True),  # opaque: custom arg, Message-ID
    Column("campaign", String(64), nullable=False),
    Column("step", String(64), nullable=False),
    Column("occurrence", String(40), nullable=False),
    Column("stakeholder_id", Integer, ForeignKey("stakeholders.id", ondelete="CASCADE"),
           nullable=False),
    # pending | claimed | sent | failed | uncertain | suppressed | skipped | missed
    Column("status", String(16), nullable=False),
    Column("run_id", String(32)),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("retryable", Boolean, nullable=False, server_default="0"),
    Column("provider_id", String(200)),
    Column("error", Text),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("claimed_at", UtcDateTime()),
    Column("sent_at", UtcDateTime()),
    Column("sequence", Integer),  # invitations: the SEQUENCE of the calendar sent
    Column("delivery", String(16)),  # the highest delivery state provider events reported
    Column("delivery_at", UtcDateTime()),
    Column("resent", Integer, nullable=False, server_default="0"),  # automatic resends (≤ 1)
    UniqueConstraint("campaign", "step", "occurrence", "stakeholder_id", name="uq_sends_key"),
)
Index("ix_sends_queue", sends.c.campaign, sends.c.step, sends.c.occurrence, sends.c.status)
Index("ix_sends_stakeholder", sends.c.stakeholder_id)

attempts = Table(
    "attempts", metadata,
    Column("id", Integer, primary_key=True),
    Column("send_id", Integer, ForeignKey("sends.id", ondelete="CASCADE"), nullable=False),
    Column("run_id", String(32), nullable=False),
    Column("at", UtcDateTime(), nullable=False),
    Column("outcome", String(16), nullable=False),  # sent | transient | permanent
    Column("status_code", Integer),
    Column("detail", Text),
)
Index("ix_attempts_send", attempts.c.send_id)

suppressions = Table(
    "suppressions", metadata,
    Column("id", Integer, primary_key=True),
    Column("email_hash", String(64), nullable=False, unique=True),  # keyed hash, kept after erasure
    Column("email", String(320)),  # case-folded; NULL once the person is forgotten
    Column("reason", String(32), nullable=False),  # unsubscribed | bounced | spam | manual | forgotten
    Column("source", String(200), nullable=False, server_default=""),
    Column("created_at", UtcDateTime(), nullable=False),
)
Index("ix_suppressions_email", suppressions.c.email)

responses = Table(
    "responses", metadata,
    Column("id", Integer, primary_key=True),
    Column("send_id", Integer, ForeignKey("sends.id", ondelete="CASCADE")),
    Column("stakeholder_id", Integer, ForeignKey("stakeholders.id", ondelete="CASCADE")),
    Column("campaign", String(64)),
    Column("step", String(64)),
    Column("event", String(64)),
    Column("kind", String(32), nullable=False),
    Column("detail", Text),
    Column("machine", Boolean, nullable=False, server_default="0"),
    Column("machine_reason", String(64)),  # why: sg_machine_open, a scanner's click, …
    Column("provider_event_id", String(200), unique=True),
    Column("occurred_at", UtcDateTime(), nullable=False),
    Column("received_at", UtcDateTime(), nullable=False),
    Column("raw", Text),
)
# Covering: reports read responses in send order without touching the table (migration 0005).
Index("ix_responses_send", responses.c.send_id, responses.c.kind, responses.c.machine,
      responses.c.occurred_at)
Index("ix_responses_stakeholder", responses.c.stakeholder_id)
Index("ix_responses_kind", responses.c.campaign, responses.c.kind)

events = Table(
    "events", metadata,
    Column("id", Integer, primary_key=True),
    Column("campaign", String(64), nullable=False),
    Column("event", String(64), nullable=False),
    Column("uid", String(200), nullable=False, unique=True),
    Column("sequence", Integer, nullable=False, server_default="0"),
    Column("fingerprint", String(64), nullable=False),
    Column("status", String(16), nullable=False),  # confirmed | cancelled
    Column("capacity", Integer),
    Column("starts_at", UtcDateTime(), nullable=False),
    Column("ends_at", UtcDateTime(), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
    UniqueConstraint("campaign", "event", name="uq_events_key"),
)

rsvps = Table(
    "rsvps", metadata,
    Column("id", Integer, primary_key=True),
    Column("campaign", String(64), nullable=False),
    Column("event", String(64), nullable=False),
    Column("stakeholder_id", Integer, ForeignKey("stakeholders.id", ondelete="CASCADE"),
           nullable=False),
    # accepted | tentative | declined | waitlisted | offered
    Column("status", String(16), nullable=False),
    Column("source", String(16), nullable=False),  # link | calendar | manual
    Column("answered_at", UtcDateTime(), nullable=False),  # a calendar reply: its DTSTAMP
    Column("queued_at", UtcDateTime()),  # when a waitlisted person asked for a seat
    Column("sequence", Integer),  # the event SEQUENCE the answer was given for
    Column("offer_expires_at", UtcDateTime()),  # an offered seat lapses then
    UniqueConstraint("campaign", "event", "stakeholder_id", name="uq_rsvps_key"),
)
Index("ix_rsvps_stakeholder", rsvps.c.stakeholder_id)

attendance = Table(
    "attendance", metadata,
    Column("id", Integer, primary_key=True),
    Column("campaign", String(64), nullable=False),
    Column("event", String(64), nullable=False),
    Column("stakeholder_id", Integer, ForeignKey("stakeholders.id", ondelete="CASCADE"),
           nullable=False),
    Column("recorded_at", UtcDateTime(), nullable=False),
    Column("source", String(500), nullable=False, server_default=""),
    UniqueConstraint("campaign", "event", "stakeholder_id", name="uq_attendance_key"),
)
Index("ix_attendance_stakeholder", attendance.c.stakeholder_id)

campaign_state = Table(
    "campaign_state", metadata,
    Column("campaign", String(64), primary_key=True),
    Column("first_seen", UtcDateTime(), nullable=False),  # cron steps count from here
    Column("paused_at", UtcDateTime()),
)

occurrences = Table(
    "occurrences", metadata,
    Column("id", Integer, primary_key=True),
    Column("campaign", String(64), nullable=False),
    Column("step", String(64), nullable=False),
    Column("occurrence", String(40), nullable=False),
    Column("due_at", UtcDateTime(), nullable=False),
    Column("status", String(16), nullable=False),  # seen | done | missed
    Column("reason", Text),
    Column("processed_at", UtcDateTime()),
    UniqueConstraint("campaign", "step", "occurrence", name="uq_occurrences_key"),
)

pairs = Table(
    "pairs", metadata,
    Column("id", Integer, primary_key=True),
    Column("round", String(64), nullable=False),  # pairs/ROUND.csv
    Column("mentee_id", Integer, ForeignKey("stakeholders.id", ondelete="CASCADE"),
           nullable=False),
    Column("mentor_id", Integer, ForeignKey("stakeholders.id", ondelete="CASCADE"),
           nullable=False),
    Column("note", Text, nullable=False, server_default=""),
    Column("active", Boolean, nullable=False, server_default="1"),  # still in the file
    Column("answer", String(16)),  # a check-in's answer: met | not_yet
    Column("answered_at", UtcDateTime()),
    Column("updated_at", UtcDateTime(), nullable=False),
    UniqueConstraint("round", "mentee_id", name="uq_pairs_key"),  # one mentor per round
)
Index("ix_pairs_mentor", pairs.c.mentor_id)

feedback = Table(
    "feedback", metadata,
    Column("id", Integer, primary_key=True),
    Column("campaign", String(64), nullable=False),
    Column("event", String(64), nullable=False),
    Column("stakeholder_id", Integer, ForeignKey("stakeholders.id", ondelete="CASCADE"),
           nullable=False),
    Column("rating", Integer, nullable=False),  # 1-5
    Column("comment", Text, nullable=False, server_default=""),
    Column("answered_at", UtcDateTime(), nullable=False),  # earlier answers: in responses
    UniqueConstraint("campaign", "event", "stakeholder_id", name="uq_feedback_key"),
)
Index("ix_feedback_stakeholder", feedback.c.stakeholder_id)

approvals = Table(
    "approvals", metadata,
    Column("campaign", String(64), primary_key=True),
    Column("approver", String(320), nullable=False),
    Column("approved_at", UtcDateTime(), nullable=False),
    Column("files", Text, nullable=False),  # JSON: path → SHA-256 of what was approved
)

rate_buckets = Table(
    "rate_buckets", metadata,
    Column("name", String(128), primary_key=True),  # schedule:ID, transport:NAME:minute|day
    Column("tokens", Float, nullable=False),  # sends allowed now (fractions accrue)
    Column("updated_at", UtcDateTime(), nullable=False),  # when tokens were last refilled
)

rate_grants = Table(  # what each per-minute limit granted in its last minute
    "rate_grants", metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(128), nullable=False),  # a rate_buckets name
    Column("at", UtcDateTime(), nullable=False),
    Column("n", Integer, nullable=False),  # sends granted then (less any given back)
)
Index("ix_rate_grants_name_at", rate_grants.c.name, rate_grants.c.at)
