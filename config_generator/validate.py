"""Checking a rendered config with the real collector's `validate` command."""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
from pathlib import Path

from config_generator.render import Rendered
from phoenix_common.keeplist import render_keep_file
from phoenix_common.problems import Problem, Unavailable


async def validate_with_collector(binary: str, rendered: Rendered, timeout: float) -> None:
    """Run `<binary> validate` on `rendered`; raise a 422 problem with the collector's own message."""
    if not os.access(binary, os.X_OK):
        raise Unavailable(f"cannot validate: the collector binary {binary} is missing (run `make otelcol`)")
    with tempfile.TemporaryDirectory(prefix="phoenix-validate-") as tmp:
        text = rendered.config_yaml
        if rendered.keep_list is not None:
            # The agent may relocate the keep-list file the same way: replace its exact path.
            keep = Path(tmp) / "keep.yaml"
            keep.write_text(render_keep_file(rendered.keep_list["initial"]))
            text = text.replace(rendered.keep_list["path"], str(keep))
        config = Path(tmp) / "config.yaml"
        config.write_text(text)
        proc = await asyncio.create_subprocess_exec(
            binary,
            "validate",
            f"--config={config}",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        try:
            output, _ = await asyncio.wait_for(proc.communicate(), timeout)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            raise Unavailable(f"the collector did not validate the config within {timeout:g}s") from None
    if proc.returncode != 0:
        lines = [ln for ln in output.decode(errors="replace").splitlines() if ln.strip()]
        message = next((ln for ln in reversed(lines) if "error" in ln.lower()), lines[-1] if lines else "")
        raise Problem(
            f"the collector rejects the rendered config: {message.strip()[:500]}",
            status=422,
            title="Unprocessable Content",
        )
