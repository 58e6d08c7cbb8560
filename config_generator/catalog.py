"""The template catalog: template specs and parameter schemas loaded from templates/*.yaml."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import yaml

from phoenix_common import wire
from phoenix_common.keeplist import validate_process_name

TYPES = ("integer", "number", "boolean", "string", "string_list")
BUILDERS = ("baseline", "selection")
STRATEGIES = (None, *wire.STRATEGIES)
TEMPLATE_NAME = re.compile(r"^[a-z][a-z0-9-]{0,62}\Z")
# Variants name collector components (`prometheus/<variant>`) and pipelines (`metrics/<variant>-observe`),
# so they hold no `/` and no `-` that could make two variants' ids collide.
VARIANT = re.compile(r"^[a-z][a-z0-9_]{0,31}\Z")


class CatalogError(Exception):
    """A template file is malformed; raised at start-up, never for a request."""


class ParameterError(ValueError):
    """A render parameter is unknown or invalid; `parameter` names it."""

    def __init__(self, parameter: str, message: str):
        super().__init__(message)
        self.parameter = parameter


@dataclass(frozen=True)
class Parameter:
    """One typed template parameter with its default and bounds."""

    name: str
    type: str
    default: Any
    description: str
    minimum: float | None = None
    maximum: float | None = None
    max_length: int | None = None
    max_items: int | None = None
    pattern: str | None = None

    def schema(self) -> dict[str, Any]:
        """The parameter as the templates endpoint shows it."""
        out: dict[str, Any] = {"type": self.type, "default": self.default, "description": self.description}
        for key in ("minimum", "maximum", "max_length", "max_items", "pattern"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        if self.type == "string_list":
            out["items"] = {"type": "string", "format": "process_name"}
        return out

    def check(self, value: Any) -> Any:
        """`value` converted to this parameter's type, or ParameterError saying what is wrong."""
        if value is None:
            if self.default is None:
                return None
            raise ParameterError(self.name, f"parameter '{self.name}' must not be null")
        return getattr(self, f"_check_{self.type}")(value)

    def _fail(self, message: str) -> ParameterError:
        return ParameterError(self.name, f"parameter '{self.name}' {message}")

    def _check_integer(self, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self._fail(f"must be an integer, got {_json_type(value)}")
        self._bounds(value)
        return value

    def _check_number(self, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self._fail(f"must be a number, got {_json_type(value)}")
        self._bounds(value)
        return float(value)

    def _check_boolean(self, value: Any) -> bool:
        if not isinstance(value, bool):
            raise self._fail(f"must be a boolean, got {_json_type(value)}")
        return value

    def _check_string(self, value: Any) -> str:
        if not isinstance(value, str):
            raise self._fail(f"must be a string, got {_json_type(value)}")
        if self.max_length is not None and len(value) > self.max_length:
            raise self._fail(f"is longer than {self.max_length} characters")
        if self.pattern is not None and not re.fullmatch(self.pattern, value):
            raise self._fail(f"must match {self.pattern}, got {value[:64]!r}")
        return value

    def _check_string_list(self, value: Any) -> list[str]:
        """Process names, each checked like a keep-list entry; sorted and de-duplicated."""
        if not isinstance(value, list):
            raise self._fail(f"must be an array of strings, got {_json_type(value)}")
        if self.max_items is not None and len(value) > self.max_items:
            raise self._fail(f"holds {len(value)} items; the limit is {self.max_items}")
        names: list[str] = []
        for index, item in enumerate(value):
            try:
                names.append(validate_process_name(item))
            except ValueError as exc:
                raise ParameterError(self.name, f"parameter '{self.name}'[{index}]: {exc}") from None
        return sorted(set(names))

    def _bounds(self, value: float) -> None:
        if self.minimum is not None and value < self.minimum:
            raise self._fail(f"must be >= {self.minimum:g}, got {value}")
        if self.maximum is not None and value > self.maximum:
            raise self._fail(f"must be <= {self.maximum:g}, got {value}")


@dataclass(frozen=True)
class Template:
    """A pipeline template: what it does, how it is built and the parameters it takes."""

    name: str
    description: str
    builder: str
    strategy: str | None
    rollup: bool
    parameters: Mapping[str, Parameter] = field(default_factory=dict)

    def schema(self) -> dict[str, Any]:
        """The template as the templates endpoint shows it."""
        return {
            "name": self.name,
            "description": self.description,
            "strategy": self.strategy,
            "parameters": {n: p.schema() for n, p in self.parameters.items()},
        }

    def resolve(self, raw: Mapping[str, Any], variant: str) -> dict[str, Any]:
        """Every parameter of this template: `raw` validated, the rest defaulted."""
        unknown = sorted(set(raw) - set(self.parameters))
        if unknown:
            known = ", ".join(sorted(self.parameters))
            raise ParameterError(
                unknown[0], f"unknown parameter '{unknown[0][:64]}' for template {self.name}; known: {known}"
            )
        out: dict[str, Any] = {}
        for name, param in self.parameters.items():
            if name in raw:
                out[name] = param.check(raw[name])
            elif isinstance(param.default, str):
                out[name] = param.default.replace("{variant}", variant)
            else:
                out[name] = list(param.default) if isinstance(param.default, list) else param.default
        return out


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _parameter(name: str, spec: Any, source: str) -> Parameter:
    if not isinstance(spec, Mapping):
        raise CatalogError(f"{source}: parameter {name} must be a mapping")
    known = {"type", "default", "description", "minimum", "maximum", "max_length", "max_items", "pattern"}
    extra = set(spec) - known
    if extra:
        raise CatalogError(f"{source}: parameter {name} has unknown key {sorted(extra)[0]}")
    if spec.get("type") not in TYPES:
        raise CatalogError(f"{source}: parameter {name} has type {spec.get('type')!r}; one of {TYPES}")
    if "default" not in spec or not spec.get("description"):
        raise CatalogError(f"{source}: parameter {name} needs a default and a description")
    param = Parameter(name=name, **dict(spec))
    if param.default is not None and param.type != "string":
        # A default must pass its own schema, so a typo in a template file fails at start-up.
        try:
            param.check(param.default)
        except ParameterError as exc:
            raise CatalogError(f"{source}: default of {name} is invalid: {exc}") from None
    return param


def _read(name: str) -> dict[str, Any]:
    try:
        text = resources.files(__package__).joinpath("templates", f"{name}.yaml").read_text("utf-8")
    except FileNotFoundError:
        raise CatalogError(f"template file templates/{name}.yaml does not exist") from None
    data = yaml.safe_load(text)
    if not isinstance(data, dict):
        raise CatalogError(f"templates/{name}.yaml must hold a mapping")
    return data


def _template(file_stem: str) -> Template:
    data = _read(file_stem)
    source = f"templates/{file_stem}.yaml"
    name = data.get("name")
    if name != file_stem or not isinstance(name, str) or not TEMPLATE_NAME.match(name):
        raise CatalogError(f"{source}: name must be the file name, got {name!r}")
    if data.get("builder") not in BUILDERS:
        raise CatalogError(f"{source}: builder must be one of {BUILDERS}")
    if data.get("strategy") not in STRATEGIES:
        raise CatalogError(f"{source}: strategy must be one of {STRATEGIES}")
    params: dict[str, Parameter] = {}
    for include in data.get("includes") or []:
        for pname, spec in (_read(include).get("parameters") or {}).items():
            params[pname] = _parameter(pname, spec, f"templates/{include}.yaml")
    for pname, spec in (data.get("parameters") or {}).items():
        params[pname] = _parameter(pname, spec, source)
    if data["builder"] == "selection" and not {"observe_port", "k", "keep_list_path"} <= set(params):
        raise CatalogError(f"{source}: a selection template must include _selection")
    return Template(
        name=name,
        description=" ".join(str(data.get("description", "")).split()),
        builder=data["builder"],
        strategy=data.get("strategy"),
        rollup=bool(data.get("rollup", False)),
        parameters=params,
    )


def load_catalog() -> dict[str, Template]:
    """Every template shipped in config_generator/templates, by name."""
    folder = resources.files(__package__).joinpath("templates")
    stems = sorted(
        entry.name[: -len(".yaml")]
        for entry in folder.iterdir()
        if entry.name.endswith(".yaml") and not entry.name.startswith("_")
    )
    if not stems:
        raise CatalogError("no templates found in config_generator/templates")
    return {stem: _template(stem) for stem in stems}
