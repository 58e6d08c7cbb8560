"""`phoenix-api`: run the control plane."""

from __future__ import annotations

import argparse
import sys

import structlog
from aiohttp import web

from control_plane.app import create_app
from control_plane.db import embedded_database_url
from control_plane.settings import Settings
from phoenix_common import logging as plog
from phoenix_common.settings import SettingsError, exit_on_error, load


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="phoenix-api", description="Phoenix control plane API")
    parser.add_argument("--config", help="YAML settings file (default: $PHOENIX_CONFIG)")
    parser.add_argument("--host", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port to bind (default 8080)")
    parser.add_argument(
        "--insecure", action="store_true", default=None, help="allow a non-loopback bind without tokens"
    )
    parser.add_argument(
        "--print-database-url",
        action="store_true",
        help="start the database if embedded, print its URL (for psql) and exit",
    )
    parser.add_argument("--migrate-only", action="store_true", help="apply migrations and exit")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    import os

    args = parse_args(argv)
    try:
        settings = load(
            Settings,
            path=args.config or os.environ.get("PHOENIX_CONFIG"),
            overrides={"host": args.host, "port": args.port, "insecure": args.insecure},
        )
    except SettingsError as exc:
        exit_on_error(exc)
    plog.configure(settings.log_level)
    log = structlog.get_logger("phoenix.api")
    if settings.database_url:
        url = settings.database_url
    else:
        try:
            url = embedded_database_url(settings.state_dir)
        except Exception as exc:
            print(
                f"phoenix-api: cannot start the embedded PostgreSQL under {settings.state_dir}: {exc}",
                file=sys.stderr,
            )
            raise SystemExit(1) from None
        log.info("embedded_database", state_dir=str(settings.state_dir))
    if args.print_database_url:
        print(url)
        return
    if args.migrate_only:
        import asyncio

        from control_plane.db import migrate

        applied = asyncio.run(migrate(url))
        print(f"applied migrations: {applied or 'none pending'}")
        return
    log.info(
        "api_starting",
        host=settings.host,
        port=settings.port,
        auth="tokens" if settings.api_token else "none",
        agent_auth="per-host tokens" if settings.agent_token or settings.agent_tokens_required else "none",
    )
    if settings.api_token and not (settings.agent_token or settings.agent_tokens_required):
        log.warning("agent_endpoints_open", hint="set agent_token or agent_tokens_required")
    _raise_open_files_limit()
    web.run_app(
        create_app(settings, url),
        backlog=settings.listen_backlog,
        host=settings.host,
        port=settings.port,
        print=None,
        access_log=None,
        shutdown_timeout=5,
    )


def _raise_open_files_limit() -> None:
    """Each waiting long poll holds a socket: allow as many as the hard limit lets us."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


if __name__ == "__main__":
    main()
