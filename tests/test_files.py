"""write_atomic: new file, exact mode from creation, rename over the destination."""

from __future__ import annotations

import os
import stat

import pytest

from he_fed import _files
from he_fed._files import write_atomic


@pytest.mark.parametrize("mode", [0o600, 0o644])
@pytest.mark.parametrize("umask", [0o022, 0o077, 0o000])
def test_the_file_has_exactly_its_mode_whatever_the_umask(tmp_path, mode, umask):
    old = os.umask(umask)
    try:
        write_atomic(tmp_path / "key", b"bytes", mode=mode)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "key").stat().st_mode) == mode
    assert (tmp_path / "key").read_bytes() == b"bytes"
    assert os.listdir(tmp_path) == ["key"]  # no temporary file left behind


def test_the_secret_is_created_exclusively_with_its_final_mode(tmp_path, monkeypatch):
    opened: list[tuple[str, int, int]] = []
    real_open = os.open

    def spy(path, flags, mode=0o777, **kwargs):
        opened.append((os.fspath(path), flags, mode))
        return real_open(path, flags, mode, **kwargs)

    monkeypatch.setattr(_files.os, "open", spy)
    write_atomic(tmp_path / "secret.key", b"secret", mode=0o600)
    path, flags, mode = opened[0]
    assert os.path.dirname(path) == str(tmp_path) and path != str(tmp_path / "secret.key")
    assert flags & os.O_EXCL and flags & os.O_NOFOLLOW and flags & os.O_CREAT
    assert mode == 0o600


def test_a_symlink_at_the_destination_is_replaced_and_its_target_untouched(tmp_path):
    target = tmp_path / "elsewhere"
    target.write_bytes(b"the target's own bytes")
    link = tmp_path / "secret.key"
    link.symlink_to(target)
    with open(target, "rb") as reader:  # opened before the write, as an attacker would
        write_atomic(link, b"new secret", mode=0o600)
        assert reader.read() == b"the target's own bytes"
    assert target.read_bytes() == b"the target's own bytes"
    assert not link.is_symlink() and link.read_bytes() == b"new secret"
    assert stat.S_IMODE(link.stat().st_mode) == 0o600


def test_a_reader_of_the_old_file_keeps_the_old_bytes(tmp_path):
    path = tmp_path / "secret.key"
    path.write_bytes(b"old secret")
    with open(path, "rb") as reader:
        write_atomic(path, b"new secret")
        assert reader.read() == b"old secret"
    assert path.read_bytes() == b"new secret"


def test_a_symlink_planted_at_the_temporary_name_is_never_followed(tmp_path, monkeypatch):
    target = tmp_path / "elsewhere"
    target.write_bytes(b"untouched")
    monkeypatch.setattr(_files.secrets, "token_hex", lambda _: "0" * 16)
    (tmp_path / f".key.{'0' * 16}.tmp").symlink_to(target)
    with pytest.raises(FileExistsError):
        write_atomic(tmp_path / "key", b"new")
    assert target.read_bytes() == b"untouched"
    assert not (tmp_path / "key").exists()


def test_a_failed_write_leaves_the_destination_and_no_temporary_file(tmp_path):
    (tmp_path / "key").mkdir()  # rename cannot replace a directory
    with pytest.raises(OSError):
        write_atomic(tmp_path / "key", b"new")
    assert sorted(os.listdir(tmp_path)) == ["key"]
