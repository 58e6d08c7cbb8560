"""Deployments: apply one, and put back the config that ran before an experiment."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgspec
import structlog

from agent.collector import ApplyError, Collector, observe_endpoints, prometheus_endpoints, sha256_text
from agent.export import ExportWatch
from agent.keeprefresh import Refreshers
from agent.payloads import Deployment, collection_interval
from agent.state import StateDir
from phoenix_common.keeplist import render_keep_file

log = structlog.get_logger("phoenix.agent.apply")


async def apply_deployment(
    collector: Collector,
    state: StateDir,
    refreshers: Refreshers,
    deployment: Deployment,
    export: ExportWatch,
) -> dict[str, Any]:
    """Run the deployment's config (validate, swap, health, delivery to its destination, or roll back)
    and remember what runs."""
    config_hash = deployment.config_hash
    if config_hash != deployment.received_hash:
        # Not the config the control plane stated: changed on the way. Never run it.
        log.error("config_hash_mismatch", pipeline=deployment.pipeline, stated=config_hash)
        raise ApplyError(
            f"config_hash {config_hash[:16]}... does not match the config received "
            f"({deployment.received_hash[:16]}...): refusing to run it"
        )
    keep, keep_path = deployment.keep, deployment.keep_path
    files = {keep_path: render_keep_file(keep.initial)} if keep and keep_path else {}
    files.update(deployment.side_files)
    # Only a config that ships is held to delivering; the counters of the one running now are its base.
    before = await export.baseline(collector.current_config()) if deployment.shipping else None
    interval = collection_interval(deployment.config) or 10.0
    wait = max(collector.settings.export_check_seconds, 2 * interval + 15)

    async def delivers() -> str | None:
        return await export.delivered(deployment.config, wait, before)

    await refreshers.suspend()
    try:
        await collector.apply(
            deployment.config_yaml, files=files, check=delivers if deployment.shipping else None
        )
    except ApplyError:
        await refreshers.resume()
        raise
    keep_lists = []
    if keep is not None and keep_path is not None:
        observe = observe_endpoints(deployment.config)
        variant = keep_path.stem if keep_path.stem in observe or len(observe) != 1 else next(iter(observe))
        keep_lists.append(
            {
                "variant": variant,
                "spec": msgspec.to_builtins(keep),
                "keep_path": str(keep_path),
                "observe_endpoint": observe.get(variant),
            }
        )
    state.save_applied(
        {
            "source": "deployment",
            "deployment_id": deployment.deployment_id,
            "pipeline": deployment.pipeline,
            "config_hash": config_hash,
            "variants": {v: deployment.pipeline for v in prometheus_endpoints(deployment.config)},
            "keep_lists": keep_lists,
            "destination": deployment.shipping.destination if deployment.shipping else None,
        }
    )
    await refreshers.resume()
    shipped = {"destination": deployment.shipping.destination} if deployment.shipping else {}
    return {"config_hash": config_hash, "health": "ok", **shipped}


async def restore_previous(
    collector: Collector,
    state: StateDir,
    refreshers: Refreshers,
    experiment_id: str,
    text: str | None,
    record: dict[str, Any],
    keep: Mapping[Path, str],
) -> tuple[str | None, str | None]:
    """Put back the config that ran before an experiment; (restored hash, error if it did not take)."""
    restored: str | None = None
    error: str | None = None
    try:
        if text:
            await collector.apply(text, files=keep)
            restored = record.get("config_hash") or sha256_text(text)
        else:
            await collector.remove_config()
        state.save_applied(record)
        log.info("experiment_config_restored", experiment_id=experiment_id, config_hash=restored)
    except ApplyError as exc:
        error = str(exc)
        log.error("experiment_restore_failed", experiment_id=experiment_id, error=error)
    await refreshers.resume()
    return restored, error
