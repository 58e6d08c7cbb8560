"""Phoenix host agent: runs and reconfigures the OpenTelemetry Collector on behalf of the control plane."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("phoenix-metrics")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+source"
