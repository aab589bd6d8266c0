"""The prelabel journal: what survives a kill at any byte, and what it refuses to mix."""

from __future__ import annotations

import pytest

from converters.errors import SegassistError
from ml_backend.prelabel.journal import Journal

FINGERPRINT = {"source": "folder /x", "model_version": "m-1"}


def test_records_survive_reopening_and_are_read_back_in_the_asked_order(tmp_path) -> None:
    path = tmp_path / "j"
    journal = Journal(path, FINGERPRINT)
    assert not journal.resumed
    journal.done("b.png", {"segments": 2})
    journal.done("a.png", {"segments": 1, "blob": b"\x00\xff" * 1000})
    journal.mark_pushed(["b.png"])
    journal.close()

    again = Journal(path, FINGERPRINT)
    assert again.resumed
    assert set(again.offsets) == {"a.png", "b.png"} and again.pushed == {"b.png"}
    assert list(again.outcomes(["a.png", "missing", "b.png"])) == [
        ("a.png", {"segments": 1, "blob": b"\x00\xff" * 1000}),
        ("missing", None),
        ("b.png", {"segments": 2}),
    ]
    again.remove()
    assert not path.exists()


@pytest.mark.parametrize("cut", [1, 5, 8, 20])
def test_a_record_torn_by_a_kill_is_dropped_and_the_journal_goes_on(tmp_path, cut) -> None:
    path = tmp_path / "j"
    journal = Journal(path, FINGERPRINT)
    journal.done("first", 1)
    whole = path.stat().st_size
    journal.done("second", 2)
    journal.close()
    # A kill in the middle of the second record's write leaves only its first `cut` bytes.
    with path.open("r+b") as handle:
        handle.truncate(whole + cut)

    resumed = Journal(path, FINGERPRINT)
    assert set(resumed.offsets) == {"first"}
    assert path.stat().st_size == whole  # the torn tail is gone before anything is appended
    resumed.done("second", 2)
    resumed.close()
    assert list(Journal(path, FINGERPRINT).outcomes(["first", "second"])) == [("first", 1), ("second", 2)]


def test_a_corrupted_record_ends_what_is_trusted(tmp_path) -> None:
    path = tmp_path / "j"
    journal = Journal(path, FINGERPRINT)
    journal.done("first", 1)
    whole = path.stat().st_size
    journal.done("second", 2)
    journal.close()
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF  # a flipped byte in the last body fails its CRC
    path.write_bytes(bytes(data))
    assert set(Journal(path, FINGERPRINT).offsets) == {"first"}
    assert path.stat().st_size == whole


def test_a_journal_killed_before_its_first_record_starts_over(tmp_path) -> None:
    path = tmp_path / "j"
    path.write_bytes(b"\x10\x00")
    journal = Journal(path, FINGERPRINT)
    assert not journal.resumed and journal.offsets == {}
    journal.done("a", 1)
    journal.close()
    assert Journal(path, FINGERPRINT).offsets.keys() == {"a"}


def test_another_command_s_journal_is_refused_naming_it(tmp_path) -> None:
    path = tmp_path / "j"
    Journal(path, FINGERPRINT).close()
    with pytest.raises(SegassistError) as error:
        Journal(path, {**FINGERPRINT, "model_version": "m-2"})
    assert str(path) in str(error.value) and "delete the journal" in str(error.value)
