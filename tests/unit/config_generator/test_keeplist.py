"""The keep-list file format: escaping, validation and the round trip."""

from __future__ import annotations

import json
import re

import pytest

from phoenix_common.keeplist import (
    MAX_NAME_LENGTH,
    MAX_NAMES,
    parse_keep_file,
    render_keep_file,
    validate_process_name,
)

NASTY = [
    'quote"d',
    "back\\slash",
    "${env:HOME}",
    "$$dollar",
    "re.*[a-z]+(x|y)?^$",
    "yaml: #comment",
    "- dash",
    "*anchor",
    "!tag",
    "{brace}",
    "'single'",
    "spaced name",
    "ünïcødé-进程",
]


def test_empty_keep_list_is_an_empty_list_literal() -> None:
    assert render_keep_file([]) == "[]"
    assert parse_keep_file("[]") == []


def test_names_are_sorted_and_deduplicated() -> None:
    assert render_keep_file(["sshd", "bash", "sshd"]) == '["bash", "sshd"]'


@pytest.mark.parametrize("name", NASTY)
def test_every_name_round_trips_and_never_exposes_dollar(name: str) -> None:
    text = render_keep_file([name])
    assert parse_keep_file(text) == [name]
    # No `$` may reach the collector's ${...} expansion; no raw newline may end the OTTL statement.
    assert "$" not in text
    assert "\n" not in text
    assert text.startswith('["') and text.endswith('"]')


def test_quotes_and_backslashes_are_escaped() -> None:
    assert render_keep_file(['a"b\\c']) == '["a\\"b\\\\c"]'


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("a\nb", "control character U+000A"),
        ("a\rb", "control character U+000D"),
        ("a\x00b", "control character U+0000"),
        ("a\x7fb", "control character U+007F"),
        ("a\u2028b", "control character U+2028"),
        ("x" * (MAX_NAME_LENGTH + 1), "limit"),
        (42, "must be a string"),
        (None, "must be a string"),
    ],
)
def test_invalid_names_are_rejected_with_a_reason(name: object, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        validate_process_name(name)
    with pytest.raises(ValueError, match=re.escape(message)):
        render_keep_file([name])  # type: ignore[list-item]


def test_longest_name_is_accepted() -> None:
    name = "n" * MAX_NAME_LENGTH
    assert validate_process_name(name) == name


def test_too_many_names_are_rejected() -> None:
    with pytest.raises(ValueError, match="limit"):
        render_keep_file(f"p{i}" for i in range(MAX_NAMES + 1))


@pytest.mark.parametrize("text", ["", "{}", '"sshd"', "[1]", '["a\\nb"]', "not json"])
def test_parse_rejects_what_render_never_writes(text: str) -> None:
    with pytest.raises(ValueError):
        parse_keep_file(text)


def test_rendered_text_is_json() -> None:
    assert json.loads(render_keep_file(NASTY)) == sorted(set(NASTY))
