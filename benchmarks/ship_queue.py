"""How much disk the persistent sending queue takes per datapoint while the destination is down.

Renders process-baseline-v1 shipping to a remote-write endpoint nobody listens on, runs the real collector
(bin/otelcol-phoenix) for --seconds, then reads the queue's size from the collector's own telemetry
(otelcol_exporter_queue_size, in datapoints) and the queue directory's size on disk. Medians of --rounds
runs; the last line gives the disk a full queue of the default ship_queue_points would take.

    python benchmarks/ship_queue.py [--seconds 30] [--rounds 3] [--interval 1]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from config_generator.catalog import load_catalog  # noqa: E402
from config_generator.render import render  # noqa: E402
from config_generator.shipping import QUEUE_DIR  # noqa: E402
from tests.support import free_port  # noqa: E402


def queue_points(port: int) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        for line in response.read().decode().splitlines():
            if line.startswith("otelcol_exporter_queue_size") and 'exporter="otlphttp/ship"' in line:
                return int(float(line.rsplit(" ", 1)[1]))
    return 0


def one_round(binary: Path, seconds: float, interval: int) -> tuple[int, int]:
    """(datapoints queued, bytes on disk) after `seconds` of collecting with the destination down."""
    ports = {k: free_port() for k in ("prometheus_port", "health_port", "telemetry_port", "relay_port")}
    destination = {
        "name": "down",
        "type": "prometheus_remote_write",
        "endpoint": f"http://127.0.0.1:{free_port()}/api/v1/write",
    }
    rendered = render(
        load_catalog()["process-baseline-v1"],
        {"collection_interval": interval, **ports},
        destination=destination,
    )
    with tempfile.TemporaryDirectory() as tmp:
        queue = Path(tmp) / "queue"
        config = Path(tmp) / "collector.yaml"
        config.write_text(rendered.config_yaml.replace(QUEUE_DIR, str(queue)))
        with open(Path(tmp) / "collector.log", "wb") as log:
            proc = subprocess.Popen([str(binary), "--config", str(config)], stdout=log, stderr=log)
        try:
            time.sleep(seconds)  # the measured span: the queue fills while the destination is down
            points = queue_points(ports["telemetry_port"])
        finally:
            proc.terminate()
            proc.wait(30)
        size = sum(p.stat().st_size for p in queue.rglob("*") if p.is_file())
    return points, size


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--interval", type=int, default=1, help="collection interval, seconds")
    args = parser.parse_args()
    binary = ROOT / "bin" / "otelcol-phoenix"
    if not binary.exists():
        sys.exit("bin/otelcol-phoenix is missing: run `make otelcol`")
    rows = [one_round(binary, args.seconds, args.interval) for _ in range(args.rounds)]
    print(f"{'round':>5}  {'queued points':>13}  {'bytes on disk':>13}  {'bytes/point':>11}")
    for index, (points, size) in enumerate(rows, start=1):
        print(f"{index:>5}  {points:>13,}  {size:>13,}  {size / max(points, 1):>11.1f}")
    per_point = statistics.median(size / max(points, 1) for points, size in rows)
    default = load_catalog()["process-baseline-v1"].parameters["ship_queue_points"].default
    print(
        f"median {per_point:.1f} bytes a queued datapoint; a full default queue ({default:,} points) "
        f"would take about {per_point * default / 1e9:.2f} GB"
    )


if __name__ == "__main__":
    main()
