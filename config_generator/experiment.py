"""An experiment's two variants: the template and parameters each renders with, and whether they fit one
collector."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from config_generator.catalog import Template
from config_generator.render import Rendered
from phoenix_common.configmerge import MergeConflict, merge_configs
from phoenix_common.problems import Problem

# What the generator reads of an experiment, whether the caller sends it or the control plane answers it.
SPEC_FIELDS = ("baseline_pipeline", "candidate_pipeline", "parameters", "critical_processes")
# Variants of an experiment and the loopback ports they export on unless its parameters say otherwise.
VARIANTS = (
    ("baseline", "baseline_pipeline", {"prometheus_port": 9464, "observe_port": 9465, "relay_port": 14318}),
    ("candidate", "candidate_pipeline", {"prometheus_port": 9466, "observe_port": 9467, "relay_port": 14319}),
)


class Unprocessable(Problem):
    status = 422
    title = "Unprocessable Content"


@dataclass(frozen=True)
class Variant:
    """One variant of an experiment, ready to render."""

    name: str
    template: Template
    parameters: dict[str, Any]


def variants(
    catalog: dict[str, Template], experiment_id: str, experiment: Mapping[str, Any]
) -> list[Variant]:
    """Both variants of `experiment`; its own data errors are 422 problems naming the field."""
    out = []
    for variant, key, ports in VARIANTS:
        name = experiment.get(key)
        if not isinstance(name, str):
            raise Unprocessable(f"experiment {experiment_id} has no '{key}'", field=key)
        if name not in catalog:
            raise Unprocessable(
                f"experiment {experiment_id}: {key} '{name[:64]}' is not a known template; "
                f"known: {', '.join(sorted(catalog))}",
                field=key,
            )
        template = catalog[name]
        all_parameters = experiment.get("parameters") or {}
        if not isinstance(all_parameters, dict):
            raise Unprocessable(
                f"experiment {experiment_id}: 'parameters' must be an object", field="parameters"
            )
        given = all_parameters.get(variant) or {}
        if not isinstance(given, dict):
            raise Unprocessable(
                f"experiment {experiment_id}: parameters.{variant} must be an object",
                field=f"parameters.{variant}",
            )
        parameters = {k: v for k, v in given.items() if k != "experiment_id"}
        for pname, port in ports.items():
            if pname in template.parameters:
                parameters.setdefault(pname, port)
        if "critical_processes" in template.parameters:
            parameters.setdefault("critical_processes", experiment.get("critical_processes") or [])
        out.append(Variant(variant, template, parameters))
    return out


def check_shareable(experiment_id: str, baseline: Rendered, candidate: Rendered) -> None:
    """Raise a 422 problem unless both configs can run side by side in one collector."""
    try:
        merge_configs(baseline.config, candidate.config)
    except MergeConflict as exc:
        raise Unprocessable(
            f"experiment {experiment_id}: baseline and candidate cannot share one collector; they disagree "
            f"at {exc.path} (use the same collection_interval, health_port and telemetry_port)",
            field=exc.path,
        ) from None
