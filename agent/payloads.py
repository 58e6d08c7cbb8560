"""Task payloads as the agent runs them: the wire contracts, with keep files moved into the state dir."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from agent import policy
from agent.collector import MergeError, dump_config, merge_configs, parse_config, sha256_text
from agent.state import StateDir
from phoenix_common import wire
from phoenix_common.settings import parse_duration

T = TypeVar("T")


class TaskError(Exception):
    """A task cannot be done; the message is the one-line reason reported with status failed."""


def check(kind: type[T], payload: Any) -> T:
    """`payload` as a wire contract, or TaskError naming the field."""
    try:
        return wire.check(kind, payload)
    except wire.WireError as exc:
        raise TaskError(str(exc)) from None


def relocate(config_yaml: str, keep: wire.KeepList, state: StateDir, where: str) -> tuple[str, Path]:
    """Point the config at the agent's own keep file by replacing the exact path string."""
    try:
        target = state.keep_path(keep.path)
    except ValueError as exc:
        raise TaskError(f"{where}: {exc}") from None
    if keep.path not in config_yaml:
        raise TaskError(f"{where}.path {keep.path!r} does not occur in the config")
    return config_yaml.replace(keep.path, str(target)), target


def relocate_shipping(
    config_yaml: str,
    shipping: wire.Shipping | None,
    secret_files: Mapping[str, Mapping[str, str]],
    state: StateDir,
    queue_dir: Path,
    where: str,
) -> tuple[str, dict[Path, str]]:
    """Point the config at the agent's queue directory and headers files; (text, files to write)."""
    files: dict[Path, str] = {}
    if shipping is None:
        return config_yaml, files
    text = config_yaml.replace(shipping.queue_directory, str(queue_dir))
    for original, headers in secret_files.items():
        try:
            target = state.secret_path(original)
        except ValueError as exc:
            raise TaskError(f"{where}.secret_files: {exc}") from None
        if original not in text:
            raise TaskError(f"{where}.secret_files: {original!r} does not occur in the config")
        text = text.replace(original, str(target))
        # JSON is YAML: the collector's file provider reads it as the exporter's headers map.
        files[target] = json.dumps(dict(headers), sort_keys=True)
    if shipping.headers_file and shipping.headers_file not in secret_files:
        raise TaskError(
            f"{where}: the config reads {shipping.headers_file!r} but the task brings no such file"
        )
    return text, files


def _secrets_readable(secret_error: str | None) -> None:
    if secret_error:
        raise TaskError(f"the control plane could not open this task's secrets: {secret_error}")


def _config(text: str, where: str, state: StateDir, queue_dir: Path) -> dict[str, Any]:
    """The parsed config, if it keeps to what Phoenix renders (agent/policy.py); else a TaskError."""
    try:
        config = parse_config(text, where)
        policy.check(text, config, [state.root, queue_dir], where)
    except ValueError as exc:
        raise TaskError(str(exc)) from None
    return config


def collection_interval(config: Mapping[str, Any]) -> float | None:
    """The shared receiver's collection interval in seconds, when the config states one."""
    receivers = config.get("receivers") or {}
    for name, spec in receivers.items() if isinstance(receivers, Mapping) else ():
        if (
            str(name).startswith("hostmetrics")
            and isinstance(spec, Mapping)
            and spec.get("collection_interval")
        ):
            with contextlib.suppress(Exception):
                return parse_duration(spec["collection_interval"], "collection_interval")
    return None


@dataclass(frozen=True)
class Deployment:
    """A deployment/apply payload whose config points at the agent's keep file."""

    deployment_id: str | None
    pipeline: str
    config_yaml: str
    config_hash: str  # as stated, else of the config as received (before relocation)
    received_hash: str
    config: dict[str, Any]
    keep: wire.KeepList | None
    keep_path: Path | None
    shipping: wire.Shipping | None = None
    side_files: Mapping[Path, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, payload: Any, state: StateDir, queue_dir: Path) -> Deployment:
        body = check(wire.DeploymentApply, payload)
        _secrets_readable(body.secret_error)
        text, keep_path = body.config_yaml, None
        if body.keep_list is not None:
            text, keep_path = relocate(text, body.keep_list, state, "payload.keep_list")
        text, side_files = relocate_shipping(
            text, body.shipping, body.secret_files, state, queue_dir, "payload"
        )
        config = _config(text, "payload.config_yaml", state, queue_dir)
        received = sha256_text(body.config_yaml)
        return cls(
            body.deployment_id,
            body.pipeline,
            text,
            body.config_hash or received,
            received,
            config,
            body.keep_list,
            keep_path,
            body.shipping,
            side_files,
        )


@dataclass(frozen=True)
class Variant:
    """One variant of an experiment (a Rendered object), with its keep file relocated."""

    role: str
    template: str
    config_yaml: str
    config: dict[str, Any]
    prometheus_endpoint: str
    observe_endpoint: str | None
    keep: wire.KeepList | None
    keep_path: Path | None
    shipping: wire.Shipping | None = None
    side_files: Mapping[Path, str] = field(default_factory=dict)

    @classmethod
    def of(
        cls,
        role: str,
        rendered: wire.Rendered,
        state: StateDir,
        queue_dir: Path,
        secret_files: Mapping[str, Mapping[str, str]],
    ) -> Variant:
        where = f"payload.{role}"
        text, keep, keep_path = rendered.config_yaml, rendered.keep_list, None
        if keep is not None:
            text, keep_path = relocate(text, keep, state, f"{where}.keep_list")
        mine = {
            path: headers
            for path, headers in secret_files.items()
            if rendered.shipping and path == rendered.shipping.headers_file
        }
        text, side_files = relocate_shipping(text, rendered.shipping, mine, state, queue_dir, where)
        config = _config(text, f"{where}.config_yaml", state, queue_dir)
        return cls(
            role,
            rendered.template,
            text,
            config,
            rendered.prometheus_endpoint,
            rendered.observe_endpoint,
            keep,
            keep_path,
            rendered.shipping,
            side_files,
        )


@dataclass(frozen=True)
class ExperimentPlan:
    """A validated experiment/start payload, its two variants merged into one config."""

    experiment_id: str
    duration: float
    warmup: float
    interval: float
    critical: tuple[str, ...]
    load_profile: str | None
    baseline: Variant
    candidate: Variant
    merged_yaml: str
    billing_window: float = wire.DEFAULT_BILLING_WINDOW
    overhead_probe: float = 0.0

    @property
    def variants(self) -> tuple[Variant, Variant]:
        return (self.baseline, self.candidate)

    @classmethod
    def parse(cls, payload: Any, state: StateDir, queue_dir: Path) -> ExperimentPlan:
        body = check(wire.ExperimentStart, payload)
        _secrets_readable(body.secret_error)
        assert body.baseline is not None and body.candidate is not None  # ExperimentStart checks both
        baseline = Variant.of("baseline", body.baseline, state, queue_dir, body.secret_files)
        candidate = Variant.of("candidate", body.candidate, state, queue_dir, body.secret_files)
        if baseline.keep_path and candidate.keep_path and baseline.keep_path == candidate.keep_path:
            raise TaskError("payload.baseline and payload.candidate use the same keep-list file")
        if baseline.prometheus_endpoint == candidate.prometheus_endpoint:
            raise TaskError("payload.baseline and payload.candidate export to the same prometheus_endpoint")
        try:
            merged = dump_config(merge_configs(baseline.config, candidate.config))
        except MergeError as exc:
            raise TaskError(str(exc)) from None
        return cls(
            body.experiment_id,
            body.duration_seconds,
            body.warmup_seconds,
            body.sample_interval_seconds,
            tuple(body.critical_processes),
            body.load_profile,
            baseline,
            candidate,
            merged,
            billing_window=body.billing_window_seconds,
            overhead_probe=body.overhead_probe_seconds,
        )
