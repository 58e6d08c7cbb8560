"""Sealing destination header values: control_plane.secrets, with keys in a temporary state directory."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from control_plane.secrets import KEY_FILE, Sealer, SecretError, load_key
from phoenix_common.settings import SettingsError

HEADERS = {"Authorization": "Bearer s3cr3t-value", "X-Scope-OrgID": "team-a"}


def sealer() -> Sealer:
    return Sealer(Fernet.generate_key())


def test_a_sealed_value_opens_again() -> None:
    box = sealer()
    token = box.seal(HEADERS)
    assert box.unseal(token) == HEADERS
    assert "s3cr3t" not in token and "Authorization" not in token


def test_sealing_twice_gives_two_tokens() -> None:
    box = sealer()
    assert box.seal(HEADERS) != box.seal(HEADERS)


def unseal_error(box: Sealer, token: str) -> str:
    """The message of the SecretError `box` raises for `token`."""
    with pytest.raises(SecretError) as caught:
        box.unseal(token)
    assert caught.value.__cause__ is None  # no chained InvalidToken carrying details
    return str(caught.value)


def test_a_value_sealed_with_another_key_does_not_open_and_the_error_holds_no_plaintext() -> None:
    message = unseal_error(sealer(), sealer().seal(HEADERS))
    assert "secrets_key" in message
    assert "s3cr3t" not in message and "team-a" not in message


@pytest.mark.parametrize("damage", ["truncated", "plaintext", "non-ascii"])
def test_a_damaged_value_is_a_secret_error(damage: str) -> None:
    box = sealer()
    token = box.seal(HEADERS)
    given = {"truncated": token[:-10], "plaintext": HEADERS["Authorization"], "non-ascii": token + "é"}
    assert "s3cr3t" not in unseal_error(box, given[damage])


def test_a_configured_key_is_used_as_given(tmp_path: Path) -> None:
    key = Fernet.generate_key()
    assert load_key(f"  {key.decode()}\n", tmp_path) == key
    assert not (tmp_path / KEY_FILE).exists()


@pytest.mark.parametrize("configured", ["short", "x" * 44, Fernet.generate_key().decode()[:-4]])
def test_a_bad_configured_key_is_a_settings_error(tmp_path: Path, configured: str) -> None:
    with pytest.raises(SettingsError, match="secrets_key must be 32 bytes in urlsafe base64") as caught:
        load_key(configured, tmp_path)
    assert configured not in str(caught.value)
    assert not (tmp_path / KEY_FILE).exists()


@pytest.mark.parametrize("configured", [None, ""])
def test_without_a_key_one_is_made_0600_and_kept(tmp_path: Path, configured: str | None) -> None:
    state_dir = tmp_path / "state"
    key = load_key(configured, state_dir)
    path = state_dir / KEY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_bytes().strip() == key
    Fernet(key)
    assert load_key(configured, state_dir) == key
    # What the first start sealed, the next start opens.
    assert Sealer(load_key(None, state_dir)).unseal(Sealer(key).seal(HEADERS)) == HEADERS


def test_a_damaged_key_file_is_a_settings_error_not_a_new_key(tmp_path: Path) -> None:
    (tmp_path / KEY_FILE).write_text("not a key\n")
    with pytest.raises(SettingsError, match="does not hold a Fernet key"):
        load_key(None, tmp_path)
    assert (tmp_path / KEY_FILE).read_text() == "not a key\n"
