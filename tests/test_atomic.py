"""`kdmed.atomic`: outputs appear whole or not at all, and reach the disk before they are renamed in."""

from __future__ import annotations

import os

import pytest

from kdmed import atomic


def test_a_failed_write_keeps_the_previous_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "metrics.json"
    atomic.write_json(target, {"auroc": 0.9})
    with pytest.raises(RuntimeError), atomic.atomic_path(target) as tmp:
        tmp.write_text('{"auroc": ')
        raise RuntimeError("killed mid-write")
    assert target.read_text() == '{\n  "auroc": 0.9\n}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_the_file_and_its_folder_are_fsynced_around_the_rename(tmp_path, monkeypatch):
    synced: list[str] = []
    real_fsync = os.fsync

    def record(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(atomic.os, "fsync", record)
    target = tmp_path / "scores.csv"
    atomic.write_csv(target, [{"name": "a", "score": 1.0}])
    assert len(synced) == 2
    assert os.path.basename(synced[0]).startswith(".scores.csv.")  # the temporary, before the rename
    assert synced[1] == str(tmp_path)  # the folder, after it
    assert target.read_text().splitlines() == ["name,score", "a,1.0"]
