"""Fixtures for the config generator: the catalog, a stand-in control plane, the generator subprocess."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from config_generator.catalog import Template, load_catalog
from tests.support import free_port
from tests.support.generator import API_TOKEN, ControlPlaneStandIn, Service, start_generator


@pytest.fixture(scope="session")
def catalog() -> dict[str, Template]:
    """The templates shipped in config_generator/templates."""
    return load_catalog()


@pytest.fixture(scope="module")
def control_plane() -> Iterator[ControlPlaneStandIn]:
    """The control plane's experiment endpoint, served over real HTTP."""
    server = ControlPlaneStandIn().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def generator(
    control_plane: ControlPlaneStandIn, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Service]:
    """The generator service with an API token, reading experiments from the stand-in."""
    service = start_generator(
        tmp_path_factory.mktemp("generator"),
        {"PHOENIX_GENERATOR_CONTROL_PLANE_URL": control_plane.url, "PHOENIX_GENERATOR_API_TOKEN": API_TOKEN},
    )
    yield service
    service.stop()


@pytest.fixture(scope="module")
def orphan_generator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """A generator whose control plane is not running (nothing listens on its port)."""
    service = start_generator(
        tmp_path_factory.mktemp("orphan"),
        {"PHOENIX_GENERATOR_CONTROL_PLANE_URL": f"http://127.0.0.1:{free_port()}"},
    )
    yield service
    service.stop()
