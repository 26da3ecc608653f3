"""utils.files: atomic writes leave either the old file or the new one, and no temporary file."""
import json
import math
import os
import stat

import pytest

from utils.files import atomic_write, atomic_write_json, atomic_write_text


def test_the_callback_writes_the_file_and_its_folder_is_created(tmp_path):
    path = tmp_path / "run" / "data.bin"
    atomic_write(str(path), lambda handle: handle.write(b"\x00\x01 bytes"))
    assert path.read_bytes() == b"\x00\x01 bytes"
    assert os.listdir(path.parent) == ["data.bin"]
    atomic_write(str(path), lambda handle: handle.write(b"new"))  # replaces the old content
    assert path.read_bytes() == b"new"


def test_text_is_written_exactly_as_given(tmp_path):
    path = tmp_path / "metrics.txt"
    atomic_write_text(str(path), "mIoU 12.5 \u2193\nno newline at the end")
    assert path.read_bytes() == "mIoU 12.5 \u2193\nno newline at the end".encode("utf-8")


def test_a_new_file_gets_the_permissions_of_a_plain_open(tmp_path):
    plain, atomic = tmp_path / "plain.txt", tmp_path / "atomic.txt"
    plain.write_text("x")
    atomic_write_text(str(atomic), "x")
    assert stat.S_IMODE(atomic.stat().st_mode) == stat.S_IMODE(plain.stat().st_mode)


@pytest.mark.parametrize("error", [RuntimeError("disk full"), KeyboardInterrupt()])
def test_a_failing_callback_keeps_the_old_file_and_leaves_no_temporary_file(tmp_path, error):
    path = tmp_path / "last.pth"
    path.write_bytes(b"old")

    def half_then_fail(handle):
        handle.write(b"half of the new")
        raise error

    with pytest.raises(type(error)):
        atomic_write(str(path), half_then_fail)
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["last.pth"]


def test_json_helper_passes_its_options_and_adds_no_newline(tmp_path):
    path = tmp_path / "metrics.json"
    payload = {"semseg": {"mIoU": 12.5}, "iteration": 3}
    atomic_write_json(str(path), payload, indent=2)
    assert path.read_text() == json.dumps(payload, indent=2)
    assert json.loads(path.read_text()) == payload


def test_json_that_cannot_be_written_leaves_the_old_file(tmp_path):
    path = tmp_path / "ablation.json"
    atomic_write_json(str(path), {"ok": 1})
    with pytest.raises(ValueError):
        atomic_write_json(str(path), {"value": math.nan}, allow_nan=False)
    assert json.loads(path.read_text()) == {"ok": 1}
    assert os.listdir(tmp_path) == ["ablation.json"]
