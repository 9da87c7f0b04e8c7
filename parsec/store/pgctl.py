"""Start or stop an embedded PostgreSQL from the shell (scripts/test.sh, CI).

``python -m parsec.store.pgctl start DIR --env PARSEC_TEST_DATABASE_`` starts the server
in DIR and prints ``export`` lines for its settings; ``stop DIR`` stops the server of that
data directory (and only that one).
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from parsec.store.embedded import EmbeddedPostgres, find_bin_dir


def stop_data_dir(data_dir: Path) -> None:
    """Stop whatever server runs on ``data_dir`` (the owning process may be gone)."""
    server = EmbeddedPostgres(data_dir)
    version = server.pgdata / "PG_VERSION"
    if not version.exists():
        return
    server.bin_dir = find_bin_dir(major=int(version.read_text().strip()))
    server._stop_server()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m parsec.store.pgctl")
    parser.add_argument("action", choices=["start", "stop"])
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("--env", default="PARSEC_DATABASE_", help="prefix of the printed variables")
    args = parser.parse_args(argv)
    if args.action == "stop":
        stop_data_dir(args.data_dir)
        return 0
    settings = EmbeddedPostgres(args.data_dir).start()
    for field, value in settings.model_dump().items():
        print(f"export {args.env}{field.upper()}={shlex.quote(str(value))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
