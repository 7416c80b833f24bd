"""The SendGrid-contract server of tests/sinks with a fixed latency before each reply.

``python bench/slow_sendgrid.py --latency 0.15 [the server's own options]``: a stand-in for a
provider 150 ms away (each request is held that long on its own thread, so requests overlap as
they would over the internet).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.sinks import sendgrid_server


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before each reply")
    args, rest = parser.parse_known_args(argv)
    if args.latency > 0:
        answer = sendgrid_server._Handler.do_POST

        def slow(handler: sendgrid_server._Handler) -> None:
            time.sleep(args.latency)
            answer(handler)

        sendgrid_server._Handler.do_POST = slow  # type: ignore[method-assign]
    sendgrid_server.main(rest)


if __name__ == "__main__":
    main()
