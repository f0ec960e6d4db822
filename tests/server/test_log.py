"""The event log: fsync'ed appends, replay after a snapshot, torn tails, damage."""

import os

import pytest

import dmf
from dmf.server._log import EventLog


def test_append_replay_rotate_drop(tmp_path):
    log = EventLog(str(tmp_path))
    assert log.replay(after=0) == []
    for j in range(3):
        assert log.append({"user": j, "items": [1], "weights": [1.0]}) == j + 1
    assert log.rotate() == 3
    log.append({"user": 9, "items": [2], "weights": [1.0]})
    log.close()
    again = EventLog(str(tmp_path))
    assert [e["user"] for e in again.replay(after=0)] == [0, 1, 2, 9]
    again.close()
    again = EventLog(str(tmp_path))
    assert [e["seq"] for e in again.replay(after=3)] == [4]
    again.drop_through(3)
    assert [os.path.basename(p) for _, p in again.segments()] == ["events-000000000004.log"]
    assert again.append({"user": 1, "items": [1], "weights": [1.0]}) == 5
    again.close()


def test_torn_tail_is_cut_and_damage_refused(tmp_path):
    log = EventLog(str(tmp_path))
    log.replay(after=0)
    log.append({"user": 1, "items": [1], "weights": [1.0]})
    log.append({"user": 2, "items": [1], "weights": [1.0]})
    log.close()
    (path,) = [p for _, p in log.segments()]
    size = os.path.getsize(path)
    with open(path, "ab") as f:
        f.write(b"0000")  # a write the crash cut short: never acknowledged
    log = EventLog(str(tmp_path))
    assert len(log.replay(after=0)) == 2
    assert os.path.getsize(path) == size
    log.close()
    data = bytearray(open(path, "rb").read())
    data[12] ^= 1  # a flipped bit inside the first event
    open(path, "wb").write(bytes(data))
    with pytest.raises(dmf.StoreError, match="damaged at byte 0"):
        EventLog(str(tmp_path)).replay(after=0)
