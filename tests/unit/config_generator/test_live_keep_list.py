"""Which templates read their keep file live (no collector reload on a change): config_generator.render."""

from __future__ import annotations

from config_generator.catalog import load_catalog
from config_generator.render import KEEPLIST_PROCESSOR, render

CATALOG = load_catalog()
PARAMS = {"keep_list_path": "/var/lib/phoenix-agent/keep/candidate.yaml", "critical_processes": ["sshd"]}


def test_the_roll_up_reads_its_keep_file_live_after_the_delta_conversion() -> None:
    rendered = render(CATALOG["process-intelligent-v1"], dict(PARAMS), "candidate")
    chain = rendered.config["service"]["pipelines"]["metrics/candidate"]["processors"]
    at = chain.index(f"{KEEPLIST_PROCESSOR}/candidate")
    # Deltas per process first (keyed by the real name), the sum by name after the renaming.
    assert chain[at - 1] == "cumulativetodelta/candidate"
    assert chain.index("deltatocumulative/candidate") > at
    assert rendered.config["processors"][f"{KEEPLIST_PROCESSOR}/candidate"] == {
        "path": PARAMS["keep_list_path"],
        "attribute": "process.executable.name",
        "other": "other",
    }
    # Nothing embeds the file: the collector needs no reload when the agent rewrites it.
    assert "${file:" not in rendered.config_yaml
    assert rendered.keep_list is not None and rendered.keep_list["live"] is True


def test_top_k_embeds_its_keep_file_and_reloads() -> None:
    rendered = render(CATALOG["process-topk-v1"], {"keep_list_path": PARAMS["keep_list_path"]}, "candidate")
    assert f"${{file:{PARAMS['keep_list_path']}}}" in rendered.config_yaml
    assert KEEPLIST_PROCESSOR not in rendered.config_yaml
    assert rendered.keep_list is not None and rendered.keep_list["live"] is False
