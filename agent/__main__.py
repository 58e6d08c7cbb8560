"""`phoenix-agent` / `python -m agent`: load settings, run the agent until SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

import structlog

from agent.config import AgentSettings, load_settings
from agent.daemon import Agent
from phoenix_common.logging import configure
from phoenix_common.settings import SettingsError, exit_on_error


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="phoenix-agent", description="Phoenix host agent")
    parser.add_argument(
        "--config",
        help="settings file (default: $PHOENIX_AGENT_CONFIG or /etc/phoenix-agent/config.yaml)",
    )
    parser.add_argument("--check-config", action="store_true", help="validate the settings and exit")
    return parser.parse_args(argv)


async def run(settings: AgentSettings) -> None:
    """Run the agent; the first SIGTERM/SIGINT starts a clean shutdown."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await Agent(settings).run(stop)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    try:
        settings = load_settings(args.config)
    except SettingsError as exc:
        exit_on_error(exc)
    configure(settings.log_level)
    if args.check_config:
        structlog.get_logger("phoenix.agent").info("config_ok", host_id=settings.host_id)
        return
    try:
        asyncio.run(run(settings))
    except KeyboardInterrupt:  # a second Ctrl-C during shutdown
        sys.exit(130)


if __name__ == "__main__":
    main()
