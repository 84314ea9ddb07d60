import pytest

from agent.qr.legacy_ids import legacy_vehicle_id

SALT = bytes(range(16))


def test_same_text_same_salt_same_id() -> None:
    assert legacy_vehicle_id("ABC-123", SALT) == legacy_vehicle_id(" ABC-123\r\n", SALT)


def test_salt_changes_the_id() -> None:
    assert legacy_vehicle_id("ABC-123", SALT) != legacy_vehicle_id("ABC-123", bytes(16))


def test_ids_are_64_bit_and_nonzero() -> None:
    ids = {legacy_vehicle_id(f"legacy-{n}", SALT) for n in range(1000)}
    assert len(ids) == 1000
    assert all(0 < i < 2**64 for i in ids)


@pytest.mark.parametrize("text,salt", [("", SALT), ("x" * 201, SALT), ("ok", b"short")])
def test_bad_input_is_refused(text: str, salt: bytes) -> None:
    with pytest.raises(ValueError):
        legacy_vehicle_id(text, salt)
