"""The key holder's processes start without what only training needs (he_fed/_lazy.py).

Every command of the file workflow is a fresh process, and so is every message to a
Flower node (``flwr-clientapp`` imports the app for each). ``he-fed ticket`` and
``he-fed decrypt`` play the key holder, and the key-holder and share-holder nodes
never train either: importing scikit-learn (with the scipy.stats and pandas it
imports) and dp-accounting was most of the 1.2 s each spent importing before it
read a file, and of the 1.7 s before a node read a message.
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import types

import click
import pytest

from tests.cli_files_flow import KEYHOLDER, Flow, experiment, in_process, write_partitions

#: Modules only training, the data loaders or a privacy budget need.
HEAVY = ("sklearn", "scipy.stats", "pandas", "dp_accounting")

LAZY_PACKAGES = [
    "he_fed",
    "he_fed.protocol",
    "he_fed.runtime",
    "he_fed.runtime.files",
    "he_fed.data",
    "he_fed.privacy",
]


def _loaded_after(code: str) -> list[str]:
    """The heavy modules a fresh interpreter holds after running ``code``."""
    probe = (
        code + "\nimport json, sys\n"
        f"print(json.dumps(sorted(m for m in sys.modules if m.startswith({HEAVY!r}))))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def test_the_key_holders_modules_import_nothing_only_training_needs():
    assert (
        _loaded_after(
            "import he_fed, he_fed.crypto, he_fed.protocol.keyholder, he_fed.protocol.aggregator\n"
            "import he_fed.runtime.keyholder_store, he_fed.protocol.signed_release\n"
            "import he_fed.cli.ticket, he_fed.cli.decrypt\n"
            "import he_fed.runtime.flower.app  # what each Flower message's process loads"
        )
        == []
    )
    # The check can fail: the training side does load them.
    assert "sklearn" in _loaded_after("import he_fed.protocol.client")


def test_he_fed_ticket_and_decrypt_run_without_scikit_learn(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    flow = Flow(in_process)
    flow.setup(write_partitions(tmp_path, experiment(rounds=1)))
    flow.ticket(0)
    flow.answer(0)
    flow.run(flow.aggregate_args(0))
    for args in (flow.decrypt_args(0), ["ticket", *KEYHOLDER, "--out", "round-1.ticket"]):
        code = f"from he_fed.cli import main\nmain({args!r}, standalone_mode=False)\n"
        assert _loaded_after(code) == [], args
    assert (tmp_path / "round-0.release").exists() and (tmp_path / "round-1.ticket").exists()


@pytest.mark.parametrize("package", LAZY_PACKAGES)
def test_every_exported_name_resolves_and_is_listed(package):
    module = importlib.import_module(package)
    for name in module.__all__:
        assert getattr(module, name) is getattr(module, name)  # imported once, then kept
        assert name in dir(module)
    with pytest.raises(AttributeError, match="has no attribute 'nothing_here'"):
        module.nothing_here  # noqa: B018


def test_every_command_resolves_to_its_click_command():
    from he_fed.cli import _COMMANDS, main

    context = click.Context(main)
    assert main.list_commands(context) == sorted(_COMMANDS)
    for name in _COMMANDS:
        command = main.get_command(context, name)
        assert isinstance(command, click.Command) and command.name == name
    assert main.get_command(context, "nothing") is None


def test_subpackages_are_attributes_of_their_package_as_before():
    """Red team 34: ``import he_fed; he_fed.crypto`` raised AttributeError once the
    package stopped importing its subpackages."""
    code = (
        "import he_fed\n"
        "assert he_fed.crypto.Paillier is he_fed.Paillier\n"
        "assert he_fed.protocol.client.Client is he_fed.Client\n"
        "assert not hasattr(he_fed, 'no_such_module')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("form", ["attribute", "from-import"])
def test_names_used_first_by_two_threads_are_imported_one_at_a_time(monkeypatch, form):
    """Red team 34: two threads resolving names at once imported scikit-learn's
    modules at once, and one found ``sklearn.base`` partially initialised. Red team
    36: ``from package import name`` goes through importlib's frames, and the first
    test of whether a thread was importing let it past the lock."""
    from he_fed import _lazy

    running, most = [0], [0]
    barrier = threading.Barrier(2)
    real_import = importlib.import_module

    def slow_import(name):
        running[0] += 1
        most[0] = max(most[0], running[0])
        time.sleep(0.2)
        running[0] -= 1
        return real_import(name)

    package = types.ModuleType("lazy_probe")
    package.__path__ = []  # a package: ``from`` goes through _handle_fromlist
    package.__getattr__, _ = _lazy.exports(  # type: ignore[attr-defined]
        "lazy_probe", {"json": ("dumps",), "os": ("getcwd",)}
    )
    monkeypatch.setitem(sys.modules, "lazy_probe", package)
    monkeypatch.setattr(_lazy.importlib, "import_module", slow_import)

    def use(name):
        barrier.wait()
        if form == "attribute":
            getattr(package, name)
        else:
            exec(f"from lazy_probe import {name}", {})

    threads = [threading.Thread(target=use, args=(n,)) for n in ("dumps", "getcwd")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert package.dumps is json.dumps and package.getcwd is os.getcwd
    assert most[0] == 1


def test_a_module_whose_import_resolves_lazy_names_neither_deadlocks_nor_waits(
    tmp_path, monkeypatch
):
    """Thread B imports ``probe_mod``, holding its import lock, and its import
    resolves five lazy names; thread A, resolving a name of ``probe_mod``, holds the
    lazy lock and waits for ``probe_mod``. Had B waited for the lock, each would
    have waited for the other for ever; with a 5 s bound on the wait (red team 35),
    B waited 5 s a name."""
    from he_fed import _lazy

    (tmp_path / "probe_mod.py").write_text(
        "import time\ntime.sleep(0.5)\n"
        "from lazy_probe_b import dumps, loads, JSONDecoder, JSONEncoder, JSONDecodeError\n"
        "value = 1\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    json_names = ("dumps", "loads", "JSONDecoder", "JSONEncoder", "JSONDecodeError")
    for name, exported in (
        ("lazy_probe_a", {"probe_mod": ("value",)}),
        ("lazy_probe_b", {"json": json_names}),
    ):
        package = types.ModuleType(name)
        package.__getattr__, _ = _lazy.exports(name, exported)  # type: ignore[attr-defined]
        monkeypatch.setitem(sys.modules, name, package)
    monkeypatch.delitem(sys.modules, "probe_mod", raising=False)
    results: dict[str, object] = {}

    def b():
        results["b"] = importlib.import_module("probe_mod").value

    def a():
        time.sleep(0.2)  # B holds probe_mod's import lock and sleeps in it
        results["a"] = sys.modules["lazy_probe_a"].value

    threads = [threading.Thread(target=f, daemon=True) for f in (b, a)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)
    assert not any(thread.is_alive() for thread in threads), "deadlocked"
    assert results == {"a": 1, "b": 1}
    assert time.monotonic() - started < 3.0  # B's 0.5 s, not a wait per name


def _exit_code(pid: int, hung: str) -> int:
    """A forked child's exit code; the test fails with ``hung`` after 20 s."""
    deadline = time.monotonic() + 20
    while (done := os.waitpid(pid, os.WNOHANG))[0] == 0:
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail(hung)
        time.sleep(0.05)
    return os.waitstatus_to_exitcode(done[1])


def test_a_forked_child_does_not_inherit_a_held_lazy_lock(monkeypatch):
    """Red team 36: a child forked while a thread of the parent held the lock waited
    for it for ever, since that thread does not exist in the child."""
    from he_fed import _lazy

    package = types.ModuleType("lazy_probe_fork")
    package.__getattr__, _ = _lazy.exports(  # type: ignore[attr-defined]
        "lazy_probe_fork", {"json": ("dumps",)}
    )
    monkeypatch.setitem(sys.modules, "lazy_probe_fork", package)
    held, release = threading.Event(), threading.Event()

    def hold():
        with _lazy._LOCK:
            held.set()
            release.wait(30)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert held.wait(10)
        pid = os.fork()
        if pid == 0:  # the child: resolve a name, then leave without pytest's teardown
            os._exit(0 if package.dumps is json.dumps else 1)
        assert _exit_code(pid, "the child waited for the parent's lazy lock") == 0
    finally:
        release.set()
        holder.join()


def test_a_thread_that_forks_while_it_holds_the_lazy_lock_releases_it_in_the_child(
    monkeypatch,
):
    """Red team 37: the child got a fresh lock, then released that one, which it had
    never taken (RuntimeError), instead of the one its thread took."""
    from he_fed import _lazy

    package = types.ModuleType("lazy_probe_forking")
    package.__getattr__, _ = _lazy.exports(  # type: ignore[attr-defined]
        "lazy_probe_forking", {"json": ("dumps",)}
    )
    monkeypatch.setitem(sys.modules, "lazy_probe_forking", package)
    real_import = importlib.import_module
    children: list[int] = []

    def forking_import(name):
        children.append(os.fork())  # 0 in the child
        return real_import(name)

    monkeypatch.setattr(_lazy.importlib, "import_module", forking_import)
    try:
        value = package.dumps
    except BaseException:
        if children == [0]:
            os._exit(1)
        raise
    if children == [0]:
        os._exit(0 if value is json.dumps else 2)
    monkeypatch.undo()
    (pid,) = children
    assert _exit_code(pid, "the child hung") == 0
    assert value is json.dumps
