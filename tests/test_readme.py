"""README's figures come from the committed benchmark results, and its commands are real."""

from __future__ import annotations

import importlib.util
import re
import shlex
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _updater():
    spec = importlib.util.spec_from_file_location(
        "update_readme", ROOT / "benchmarks" / "update_readme.py"
    )
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


def test_readme_tables_match_the_committed_results():
    updater = _updater()
    assert updater.READMES == ("README.md", "README.zh-CN.md")
    for name in updater.READMES:
        readme = (ROOT / name).read_text(encoding="utf-8")
        assert updater.render(readme, name) == readme, "run python benchmarks/update_readme.py"


def test_readme_gives_the_two_commands_and_ci_runs_the_test_one():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "pip install . && he-fed run" in readme
    assert 'pip install -e ".[test]" && pytest' in readme
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert 'pip install -e ".[test]" && pytest' in ci


def test_the_chinese_readme_gives_the_same_commands_and_sections():
    english = (ROOT / "README.md").read_text(encoding="utf-8")
    chinese = (ROOT / "README.zh-CN.md").read_text(encoding="utf-8")
    for command in ("pip install . && he-fed run", 'pip install -e ".[test]" && pytest'):
        assert command in english and command in chinese
    notebooks = sorted(p.name for p in (ROOT / "notebooks").glob("*.ipynb"))
    for name in notebooks:
        assert name in english and name in chinese


_FENCE = re.compile(r"^```[^\n]*\n.*?^```$", re.DOTALL | re.MULTILINE)
_COMMENT = re.compile(r"(^|\s+)# .*$")


def _outline(readme: str) -> tuple[list[str], list[list[str]], list[str]]:
    """A README's heading levels, its code blocks with comments removed, and its markers.

    Comments are prose, translated in README.zh-CN.md; everything else in a code block
    (commands, flags, code, printed output) must be the English README's, character for
    character.
    """
    blocks = _FENCE.findall(readme)
    prose = _FENCE.sub("", readme)
    levels = [line.split(" ", 1)[0] for line in prose.splitlines() if line.startswith("#")]
    code = [[_COMMENT.sub("", line).rstrip() for line in b.splitlines()] for b in blocks]
    markers = re.findall(r"<!-- /?[\w:-]+ -->", prose)
    return levels, code, markers


def test_the_chinese_readme_has_every_section_and_code_block_in_order():
    english = _outline((ROOT / "README.md").read_text(encoding="utf-8"))
    chinese = _outline((ROOT / "README.zh-CN.md").read_text(encoding="utf-8"))
    assert len(english[0]) >= 15 and len(english[1]) >= 15
    assert chinese[0] == english[0], "a section is missing or out of order"
    for number, (ours, theirs) in enumerate(zip(chinese[1], english[1], strict=True)):
        assert ours == theirs, f"code block {number} differs from README.md's"
    assert chinese[2] == english[2]


def test_the_worked_example_shows_what_he_fed_run_prints():
    """Accuracy, loss, bytes and key sizes are deterministic; only the times vary."""
    from click.testing import CliRunner
    from he_fed.cli import main

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    example = readme.split("$ he-fed run\n", 1)[1].split("time per phase", 1)[0]
    shown = [line for line in example.splitlines() if line.strip()]
    assert len(shown) >= 8 and "0.9580" in example
    result = CliRunner().invoke(main, ["run"], catch_exceptions=False, terminal_width=100)
    assert result.exit_code == 0
    printed = result.output.splitlines()
    assert [line for line in shown if line not in printed] == []
    phases = readme.split("time per phase", 1)[1].split("```", 1)[0]
    for phase in (
        "local training",
        "encode + encrypt",
        "commit, sign, prove",
        "serialize",
        "aggregate",
        "decrypt",
        "key generation",
        "wall clock",
    ):
        assert phase in phases and phase in result.output


_HEX = re.compile(r"\b[0-9a-f]{16,}\b")


def _commands(block: str) -> list[tuple[list[list[str]], list[str]]]:
    """Each ``$`` command of a README block (a ``for`` loop expanded) and the lines shown after it.

    The one shell form allowed besides plain commands is ``for v in A B; do he-fed ...; done``.
    """
    entries: list[tuple[str, list[str]]] = []
    pending = ""
    for line in block.splitlines():
        if pending or line.startswith("$ "):
            text = line[2:] if line.startswith("$ ") else line.strip()
            pending += text.rstrip("\\").rstrip() + " "
            if not line.endswith("\\"):
                entries.append((pending.strip(), []))
                pending = ""
        elif line.strip():
            entries[-1][1].append(line)
    parsed = []
    for command, shown in entries:
        loop = re.fullmatch(r"for (\w+) in ([^;]+); do (.+); done", command)
        if loop:
            name, values, body = loop.groups()
            texts = [body.replace(f"${name}", value) for value in values.split()]
        else:
            texts = [command]
        argvs = [shlex.split(text) for text in texts]
        assert all(argv[0] == "he-fed" for argv in argvs), command
        parsed.append(([argv[1:] for argv in argvs], shown))
    return parsed


def test_the_file_workflow_shows_what_its_commands_print(tmp_path, monkeypatch):
    """Runs the README's file-workflow commands verbatim; digests and pins differ per run."""
    from click.testing import CliRunner
    from he_fed.cli import main

    from tests.cli_files_flow import experiment, write_partitions

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = readme.split("<!-- files-workflow -->\n```\n", 1)[1].split("```", 1)[0]
    monkeypatch.chdir(tmp_path)
    write_partitions(tmp_path, experiment(rounds=1))
    commands = _commands(block)
    assert len(commands) >= 10
    for argvs, shown in commands:
        printed: list[str] = []
        for argv in argvs:
            result = CliRunner().invoke(main, argv, catch_exceptions=False)
            assert result.exit_code == 0, (argv, result.output)
            printed += result.output.splitlines()
        masked = [_HEX.sub("<hex>", line) for line in printed]
        assert [_HEX.sub("<hex>", line) for line in shown] == masked, argvs
