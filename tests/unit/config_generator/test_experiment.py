"""An experiment's variants, resolved and checked without HTTP: config_generator.experiment."""

from __future__ import annotations

from typing import Any

import pytest

from config_generator.catalog import Template, load_catalog
from config_generator.experiment import Unprocessable, check_shareable, variants
from config_generator.render import render

CATALOG: dict[str, Template] = load_catalog()


def spec(**overrides: Any) -> dict[str, Any]:
    return {
        "baseline_pipeline": "process-baseline-v1",
        "candidate_pipeline": "process-intelligent-v1",
        "parameters": {"baseline": {}, "candidate": {"k": 7}},
        "critical_processes": ["sshd"],
        **overrides,
    }


def test_variants_take_default_ports_and_the_critical_list() -> None:
    baseline, candidate = variants(CATALOG, "exp-1", spec())
    assert (baseline.name, baseline.template.name) == ("baseline", "process-baseline-v1")
    assert baseline.parameters == {"prometheus_port": 9464, "relay_port": 14318}
    assert (candidate.name, candidate.template.name) == ("candidate", "process-intelligent-v1")
    assert candidate.parameters == {
        "k": 7,
        "prometheus_port": 9466,
        "observe_port": 9467,
        "relay_port": 14319,
        "critical_processes": ["sshd"],
    }


def test_given_parameters_win_and_experiment_id_is_not_a_parameter() -> None:
    parameters = {"baseline": {"prometheus_port": 19464, "experiment_id": "other"}, "candidate": None}
    baseline, candidate = variants(CATALOG, "exp-1", spec(parameters=parameters))
    assert baseline.parameters == {"prometheus_port": 19464, "relay_port": 14318}
    assert candidate.parameters["prometheus_port"] == 9466


@pytest.mark.parametrize(
    ("overrides", "words", "field"),
    [
        ({"baseline_pipeline": None}, "experiment exp-1 has no 'baseline_pipeline'", "baseline_pipeline"),
        ({"candidate_pipeline": 7}, "has no 'candidate_pipeline'", "candidate_pipeline"),
        ({"candidate_pipeline": "process-nope-v1"}, "'process-nope-v1' is not a known template", None),
        ({"parameters": "nope"}, "'parameters' must be an object", "parameters"),
        ({"parameters": {"candidate": ["k"]}}, "candidate must be an object", "parameters.candidate"),
    ],
)
def test_bad_specs_are_422_naming_the_field(overrides: dict[str, Any], words: str, field: str | None) -> None:
    with pytest.raises(Unprocessable) as caught:
        variants(CATALOG, "exp-1", spec(**overrides))
    assert caught.value.status == 422 and words in caught.value.detail
    if field:
        assert caught.value.extra["field"] == field


def test_variants_that_disagree_cannot_share_a_collector() -> None:
    baseline, candidate = variants(
        CATALOG, "exp-1", spec(parameters={"baseline": {}, "candidate": {"collection_interval": 30}})
    )
    rendered = [render(v.template, v.parameters, v.name, "exp-1") for v in (baseline, candidate)]
    with pytest.raises(Unprocessable, match=r"at receivers\.hostmetrics/phoenix\.collection_interval"):
        check_shareable("exp-1", *rendered)


def test_default_variants_share_a_collector() -> None:
    rendered = [render(v.template, v.parameters, v.name, "exp-1") for v in variants(CATALOG, "exp-1", spec())]
    check_shareable("exp-1", *rendered)
