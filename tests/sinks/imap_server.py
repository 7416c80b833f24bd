"""A minimal IMAP4rev1 server on 127.0.0.1 for tests: LOGIN, SELECT, (UID) SEARCH, (UID) FETCH,
(UID) STORE, NOOP, LOGOUT, and STARTTLS when given a TLS context. Enough for imaplib::

    with ImapServer("user", "password", {"INBOX": [raw_bytes, ...]}) as server:
        ...  # 127.0.0.1:server.port; server.logins, server.tls_logins, server.commands
"""

from __future__ import annotations

import re
import socket
import socketserver
import ssl
import threading
from dataclasses import dataclass, field


@dataclass
class Stored:
    uid: int
    data: bytes
    flags: set[str] = field(default_factory=set)


class ImapServer:
    """A minimal IMAP4rev1 server on 127.0.0.1: LOGIN, SELECT, (UID) SEARCH, (UID) FETCH,
    (UID) STORE, NOOP, LOGOUT; one mailbox per folder name. Enough for imaplib."""

    def __init__(self, user: str, password: str, folders: dict[str, list[bytes]], *,
                 tls: ssl.SSLContext | None = None) -> None:
        """With ``tls``, STARTTLS is offered and LOGIN refused before it (LOGINDISABLED)."""
        self.user, self.password, self.tls = user, password, tls
        self.folders = {name.upper(): [Stored(n + 1, data) for n, data in enumerate(mails)]
                        for name, mails in folders.items()}
        self.commands: list[str] = []
        self.logins: list[str] = []
        self.tls_logins: list[str] = []  # those made after STARTTLS
        self.lock = threading.Lock()
        server = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                server._session(self.request)

        self._tcp = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self._tcp.daemon_threads = True
        self.port = int(self._tcp.server_address[1])
        self._thread = threading.Thread(target=self._tcp.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> ImapServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._tcp.shutdown()
        self._tcp.server_close()
        self._thread.join(5)

    def flags(self, folder: str = "INBOX") -> list[set[str]]:
        with self.lock:
            return [set(m.flags) for m in self.folders[folder.upper()]]

    # the protocol

    _ARG = re.compile(r'"((?:[^"\\]|\\.)*)"|(\S+)')

    def _session(self, sock: socket.socket) -> None:
        rfile, wfile = sock.makefile("rb"), sock.makefile("wb", buffering=0)
        secure = False

        def send(line: str | bytes) -> None:
            wfile.write(line if isinstance(line, bytes) else line.encode() + b"\r\n")

        def capabilities() -> str:
            if self.tls is None or secure:
                return "IMAP4rev1 AUTH=PLAIN"
            return "IMAP4rev1 STARTTLS LOGINDISABLED"

        send(f"* OK [CAPABILITY {capabilities()}] comms test IMAP ready")
        authenticated = False
        selected: list[Stored] | None = None
        while line := rfile.readline():
            tag, _, rest = line.decode("utf-8").rstrip("\r\n").partition(" ")
            command, _, args = rest.partition(" ")
            command = command.upper()
            uid_mode = command == "UID"
            if uid_mode:
                command, _, args = args.partition(" ")
                command = command.upper()
            with self.lock:
                self.commands.append(f"{'UID ' if uid_mode else ''}{command}")
            if command == "CAPABILITY":
                send(f"* CAPABILITY {capabilities()}")
                send(f"{tag} OK CAPABILITY completed")
            elif command == "STARTTLS" and self.tls is not None and not secure:
                send(f"{tag} OK Begin TLS negotiation now")
                try:
                    sock = self.tls.wrap_socket(sock, server_side=True)
                except (ssl.SSLError, OSError):
                    return  # the client refused our certificate
                rfile, wfile = sock.makefile("rb"), sock.makefile("wb", buffering=0)
                secure = True
            elif command == "NOOP":
                send(f"{tag} OK NOOP completed")
            elif command == "LOGOUT":
                send("* BYE logging out")
                send(f"{tag} OK LOGOUT completed")
                return
            elif command == "LOGIN" and self.tls is not None and not secure:
                send(f"{tag} NO [PRIVACYREQUIRED] LOGIN is disabled before STARTTLS")
            elif command == "LOGIN":
                user, password = self._args(args)
                if (user, password) != (self.user, self.password):
                    send(f"{tag} NO [AUTHENTICATIONFAILED] Invalid credentials (Failure)")
                    continue
                authenticated = True
                with self.lock:
                    self.logins.append(user)
                    if secure:
                        self.tls_logins.append(user)
                send(f"{tag} OK [CAPABILITY IMAP4rev1] LOGIN completed")
            elif not authenticated:
                send(f"{tag} BAD not authenticated")
            elif command in ("SELECT", "EXAMINE"):
                (name,) = self._args(args)
                selected = self.folders.get(name.upper())
                if selected is None:
                    send(f"{tag} NO [NONEXISTENT] Unknown mailbox: {name}")
                    continue
                send(r"* FLAGS (\Answered \Flagged \Deleted \Seen \Draft)")
                send(f"* {len(selected)} EXISTS")
                send("* 0 RECENT")
                send("* OK [UIDVALIDITY 1] UIDs valid")
                send(f"* OK [UIDNEXT {len(selected) + 1}] Predicted next UID")
                send(f"{tag} OK [READ-WRITE] {command} completed")
            elif selected is None:
                send(f"{tag} BAD no mailbox selected")
            elif command == "SEARCH":
                criteria = args.upper().split()
                with self.lock:
                    found = [(m.uid if uid_mode else n) for n, m in enumerate(selected, 1)
                             if criteria == ["ALL"]
                             or (criteria == ["UNSEEN"] and "\\Seen" not in m.flags)]
                send("* SEARCH" + "".join(f" {x}" for x in found))
                send(f"{tag} OK SEARCH completed")
            elif command == "FETCH":
                numbers, _, items = args.partition(" ")
                for n, mail in self._pick(selected, numbers, uid_mode):
                    item = items.strip("()").upper()
                    if item in ("RFC822", "BODY[]"):
                        with self.lock:
                            mail.flags.add("\\Seen")  # a plain fetch marks the message read
                    name = "RFC822" if item == "RFC822" else "BODY[]"
                    send(f"* {n} FETCH (UID {mail.uid} {name} {{{len(mail.data)}}}".encode()
                         + b"\r\n" + mail.data + b")\r\n")
                send(f"{tag} OK FETCH completed")
            elif command == "STORE":
                numbers, _, change = args.partition(" ")
                action, _, flags = change.partition(" ")
                for n, mail in self._pick(selected, numbers, uid_mode):
                    with self.lock:
                        if action.upper().startswith("+FLAGS"):
                            mail.flags.update(flags.strip("()").split())
                        elif action.upper().startswith("-FLAGS"):
                            mail.flags.difference_update(flags.strip("()").split())
                        current = " ".join(sorted(mail.flags))
                    send(f"* {n} FETCH (UID {mail.uid} FLAGS ({current}))")
                send(f"{tag} OK STORE completed")
            else:
                send(f"{tag} BAD unknown command {command}")

    def _args(self, text: str) -> list[str]:
        """Atoms and quoted strings (backslash escapes undone)."""
        return [re.sub(r"\\(.)", r"\1", m.group(1)) if m.group(1) is not None else m.group(2)
                for m in self._ARG.finditer(text)]

    @staticmethod
    def _pick(mails: list[Stored], numbers: str, uid_mode: bool) -> list[tuple[int, Stored]]:
        wanted: set[int] = set()
        for piece in numbers.split(","):
            low, _, high = piece.partition(":")
            top = max((m.uid if uid_mode else n) for n, m in enumerate(mails, 1)) if mails else 0
            end = top if high == "*" else int(high or low)
            wanted.update(range(int(low), end + 1))
        return [(n, m) for n, m in enumerate(mails, 1) if (m.uid if uid_mode else n) in wanted]
