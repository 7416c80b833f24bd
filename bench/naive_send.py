"""The naive baseline: one blocking request per message, a new connection each time.

SendGrid: the ``sendgrid`` package's stock client and ``Mail`` helper, one ``send`` per recipient.
SMTP: an ``email.message.EmailMessage`` built per recipient, ``smtplib.SMTP`` opened per message.

    python bench/naive_send.py sendgrid --url http://127.0.0.1:PORT --api-key KEY \\
        --csv stakeholders.csv --template message.json
    python bench/naive_send.py smtp --host 127.0.0.1 --port PORT --csv ... --template ...

``message.json`` holds Jinja2 sources for ``subject``, ``text`` and ``html`` (compiled once) and
the plain ``sender_email``, ``sender_name`` and ``reply_to``; each CSV row is the context.
"""

from __future__ import annotations

import argparse
import csv
import json
import smtplib
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import jinja2


def rendered(template: Path, database: Path) -> Iterator[tuple[dict[str, str], dict[str, Any]]]:
    """(recipient row, message fields) for each row of the CSV."""
    spec = json.loads(template.read_text(encoding="utf-8"))
    env = jinja2.Environment(autoescape=False, undefined=jinja2.StrictUndefined)
    parts = {name: env.from_string(spec[name]) for name in ("subject", "text", "html")}
    with open(database, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            yield row, {**spec, **{name: t.render(row) for name, t in parts.items()}}


def send_sendgrid(args: argparse.Namespace) -> int:
    from sendgrid import SendGridAPIClient
    from sendgrid.helpers.mail import From, Mail, ReplyTo, To

    client = SendGridAPIClient(args.api_key, host=args.url)
    client.client.timeout = 10
    sent = 0
    for row, m in rendered(args.template, args.csv):
        mail = Mail(from_email=From(m["sender_email"], m["sender_name"]),
                    to_emails=To(row["email"], f"{row['first_name']} {row['last_name']}"),
                    subject=m["subject"], plain_text_content=m["text"], html_content=m["html"])
        mail.reply_to = ReplyTo(m["reply_to"])
        client.send(mail)
        sent += 1
    return sent


def send_smtp(args: argparse.Namespace) -> int:
    sent = 0
    for row, m in rendered(args.template, args.csv):
        message = EmailMessage()
        message["From"] = f"{m['sender_name']} <{m['sender_email']}>"
        message["To"] = f"{row['first_name']} {row['last_name']} <{row['email']}>"
        message["Reply-To"] = m["reply_to"]
        message["Subject"] = m["subject"]
        message.set_content(m["text"])
        message.add_alternative(m["html"], subtype="html")
        with smtplib.SMTP(args.host, args.port, timeout=30) as smtp:
            smtp.send_message(message)
        sent += 1
    return sent


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="transport", required=True)
    for name in ("sendgrid", "smtp"):
        p = sub.add_parser(name)
        p.add_argument("--csv", type=Path, required=True)
        p.add_argument("--template", type=Path, required=True)
    sub.choices["sendgrid"].add_argument("--url", required=True)
    sub.choices["sendgrid"].add_argument("--api-key", required=True)
    sub.choices["smtp"].add_argument("--host", default="127.0.0.1")
    sub.choices["smtp"].add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    (send_sendgrid if args.transport == "sendgrid" else send_smtp)(args)


if __name__ == "__main__":
    main()
