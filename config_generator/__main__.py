"""`phoenix-config-generator`: run the config generator service."""

from __future__ import annotations

import argparse
import os

import structlog
from aiohttp import web

from config_generator.catalog import CatalogError
from config_generator.settings import ENV_PREFIX, Settings
from phoenix_common import logging as plog
from phoenix_common.settings import SettingsError, exit_on_error, load


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="phoenix-config-generator", description="Phoenix config generator: renders collector configs"
    )
    parser.add_argument("--config", help="YAML settings file (default: $PHOENIX_GENERATOR_CONFIG)")
    parser.add_argument("--host", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port to bind (default 8082)")
    parser.add_argument(
        "--insecure", action="store_true", default=None, help="allow a non-loopback bind without an API token"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Load settings (exit 2 with one line if invalid) and serve until interrupted."""
    args = parse_args(argv)
    try:
        settings = load(
            Settings,
            path=args.config or os.environ.get(f"{ENV_PREFIX}CONFIG"),
            env_prefix=ENV_PREFIX,
            overrides={"host": args.host, "port": args.port, "insecure": args.insecure},
        )
    except SettingsError as exc:
        exit_on_error(exc)
    plog.configure(settings.log_level)
    from config_generator.app import create_app

    try:
        app = create_app(settings)
    except CatalogError as exc:
        exit_on_error(SettingsError(f"templates: {exc}"))
    structlog.get_logger("phoenix.generator").info(
        "generator_starting",
        host=settings.host,
        port=settings.port,
        control_plane_url=settings.control_plane_url,
        auth="token" if settings.api_token else "none",
    )
    web.run_app(app, host=settings.host, port=settings.port, print=None, access_log=None, shutdown_timeout=5)


if __name__ == "__main__":
    main()
