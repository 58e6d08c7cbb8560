"""enrolment_tokens: namespace:token entries, each token long enough and given to one namespace only."""

from __future__ import annotations

import pytest

from control_plane.settings import Settings
from phoenix_common.settings import SettingsError, build

GOOD = "t" * 16


def settings(**values: object) -> Settings:
    return build(Settings, values)


def test_scoped_tokens_map_to_their_namespaces_and_turn_agent_tokens_on() -> None:
    s = settings(enrolment_tokens=f"dev:{GOOD},prod:{'p' * 20}")
    assert s.scoped_enrolment() == {GOOD: "dev", "p" * 20: "prod"}
    assert s.agent_tokens_on() and not settings().agent_tokens_on()


@pytest.mark.parametrize(
    "entry",
    [GOOD, f"Prod:{GOOD}", "dev:short", f":{GOOD}", f"dev:{GOOD},prod:{GOOD}"],
)
def test_bad_entries_are_one_line_errors(entry: str) -> None:
    with pytest.raises(SettingsError, match="enrolment_tokens"):
        settings(enrolment_tokens=entry)


def test_the_unscoped_token_cannot_also_be_a_scoped_one() -> None:
    with pytest.raises(SettingsError, match="agent_token must differ"):
        settings(agent_token=GOOD, enrolment_tokens=f"dev:{GOOD}")
