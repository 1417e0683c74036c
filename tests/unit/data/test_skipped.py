"""The list of what the download stage could not bring into the raw folder, written beside the images and read
back by discovery."""

from __future__ import annotations

from smallvision.data.skipped import SKIPPED, Skipped, read_skipped, write_skipped


def test_skipped_entries_are_read_back_as_written_and_none_writes_no_file(tmp_path):
    assert read_skipped(tmp_path) == []  # no list: nothing was skipped
    write_skipped(tmp_path, [])
    assert not (tmp_path / SKIPPED).exists()
    entries = [Skipped("a/fifo", "not copied: a FIFO"), Skipped("b/çà.jpg", "extracts onto the same file as b/ca.jpg")]
    write_skipped(tmp_path, entries)
    assert read_skipped(tmp_path) == entries
