"""The key holder killed with SIGKILL at the worst moments of a release loses nothing.

A real process opens the key holder's store and decrypts an aggregate; a profile
hook (set in that process only, no change to he-fed) sends it SIGKILL at one of
three instructions: after the decision to release and the decryption, before the
state is written; with the new state in a temporary file, before the rename; and
after the rename, before the release is returned. Restarted, the key holder
releases the round once (again the same release, if the first was saved), and
refuses the round with another cohort.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap

import pytest

from he_fed.exceptions import PolicyViolation
from he_fed.protocol import Aggregate, decode
from he_fed.runtime.keyholder_store import KeyHolderStore
from tests.runtime.test_keyholder_store import _aggregate, _registered, _round

pytestmark = pytest.mark.slow

_SCRIPT = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    from he_fed.crypto import load_secret
    from he_fed.protocol import Identity
    from he_fed.runtime.keyholder_store import KeyHolderStore

    folder, point = Path(sys.argv[1]), sys.argv[2]
    keys = load_secret((folder / "secret.key").read_bytes(), allow_insecure=True)
    identity = Identity.from_private_bytes((folder / "identity").read_bytes())
    store = KeyHolderStore.open(folder / "keyholder.state", keys, identity)
    aggregate = (folder / "aggregate").read_bytes()

    def kill(frame, event, arg):
        if (
            (point == "before-write" and event == "call" and frame.f_code.co_name == "write_atomic")
            or (point == "before-rename" and event == "c_call" and arg is os.replace)
            or (point == "after-rename" and event == "c_return" and arg is os.replace)
        ):
            os.kill(os.getpid(), signal.SIGKILL)

    sys.setprofile(kill)
    store.decrypt_aggregate(aggregate)
    sys.setprofile(None)
    print("released")
    """
)


@pytest.mark.parametrize(
    ("point", "saved"), [("before-write", 0), ("before-rename", 0), ("after-rename", 1)]
)
def test_a_key_holder_killed_mid_release_releases_the_round_once(tmp_path, point, saved):
    keys, identity, path, store, aggregator, clients = _registered(tmp_path)
    _, updates = _round(store, aggregator, clients)
    store.close()
    everyone = _aggregate(updates, ["c0", "c1", "c2"])
    (tmp_path / "secret.key").write_bytes(keys.secret.to_bytes())
    (tmp_path / "identity").write_bytes(identity.private_bytes())
    (tmp_path / "aggregate").write_bytes(everyone)

    killed = subprocess.run(
        [sys.executable, "-c", _SCRIPT, str(tmp_path), point],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert killed.stdout == ""  # no release left the process

    with KeyHolderStore.open(path, keys, identity) as restarted:
        assert restarted.keyholder.released == saved
        release = restarted.decrypt_aggregate(everyone)
        assert decode(release, Aggregate).contributors == 3
        assert [r.round for r in restarted.releases] == [0]
        with pytest.raises(PolicyViolation, match="not the open round"):
            restarted.decrypt_aggregate(_aggregate(updates, ["c0", "c1"]))
