"""Copy the headline tables of the committed benchmark results into both READMEs.

README's figures must come from committed results files only. Each table sits
between ``<!-- results:NAME -->`` and ``<!-- /results:NAME -->`` markers and is
rebuilt here from ``benchmarks/results/`` by the ``headline`` function of the
script that wrote the file, which shares its rows with the script's own markdown
(``bench`` by :func:`he_fed.bench.report.headline_markdown`). The Chinese README
(``README.zh-CN.md``) carries the same blocks, rendered alike. ``tests/test_readme.py``
fails when either README and the results disagree.

Run::

    python benchmarks/update_readme.py
"""

from __future__ import annotations

import importlib.util
import json
import re
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
#: The READMEs that carry the results blocks, English first.
READMES = ("README.md", "README.zh-CN.md")


def _script(name: str) -> ModuleType:
    """A benchmark script of this folder, imported by path (``benchmarks/`` is no package)."""
    spec = importlib.util.spec_from_file_location(f"benchmarks_{name}", HERE / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _headline(name: str, **options: Any) -> Callable[[dict[str, Any]], str]:
    """A renderer that joins the lines of script ``name``'s ``headline(data, **options)``."""

    def render(data: dict[str, Any]) -> str:
        return "\n".join(_script(name).headline(data, **options))

    return render


def _ckks_speed(data: dict[str, Any]) -> str:
    script = _script("ckks_speed")
    return "\n".join(
        [
            *script.headline(data),
            "",
            "Issue 4's targets, aggregation-fast against tenseal-nvflare in the same run:",
            "",
            *script.target_lines(data),
        ]
    )


def _bench(data: dict[str, Any]) -> str:
    from he_fed.bench.report import headline_markdown

    env = data["environment"]
    head = (
        f"`he-fed bench --{data['mode']}`, {env['date']}, {env['cpu']} "
        f"({env['cpu_count']} cores), Python {env['python']}; medians of "
        f"{data['grid']['repeats']} interleaved repetitions, {data['grid']['clients']} "
        "clients in the aggregation step."
    )
    measured = [r for r in data.get("macro", []) if r.get("measured")]
    errors = [abs(r["estimate_error"]) for r in measured if r["scheme"] != "plain"]
    tail = ""
    if errors:
        tail = (
            f"\n\n`he-fed estimate` against these {len(errors)} measured runs (plain aside): "
            f"largest error {100 * max(errors):.0f}%, "
            f"median {100 * sorted(errors)[len(errors) // 2]:.0f}%. "
            f"{sum(1 for r in data['macro'] if not r.get('measured'))} larger cells were "
            "estimated only (over the run budget); `benchmarks/results/bench.md` lists every cell."
        )

    def shown(row: dict[str, Any]) -> bool:  # README: 10 clients, and 1,000 features
        return row["clients"] == 10 or row["features"] == 1000

    return head + "\n\n" + headline_markdown(data, macro_filter=shown) + tail


#: Block name -> (results file, renderer).
BLOCKS: dict[str, tuple[str, Callable[[dict[str, Any]], str]]] = {
    "paillier_speed": ("paillier_speed.json", _headline("paillier_speed")),
    "ckks_speed": ("ckks_speed.json", _ckks_speed),
    "ckks_large": ("ckks_large.json", _headline("ckks_large", brief=True)),
    "scale": ("scale.json", _headline("scale")),
    "optimizers": ("optimizers.json", _headline("optimizers")),
    "bench": ("bench.json", _bench),
    "dp_tradeoff": ("dp_tradeoff.json", _headline("dp_tradeoff")),
}


def render(readme: str, name: str = "README.md") -> str:
    """README text with every results block rebuilt from the committed files.

    ``name`` is the README's file name, for the error when a block is missing.
    """
    for block, (filename, renderer) in BLOCKS.items():
        data = json.loads((RESULTS / filename).read_text(encoding="utf-8"))
        pattern = re.compile(
            rf"(<!-- results:{block} -->).*?(<!-- /results:{block} -->)", re.DOTALL
        )
        if not pattern.search(readme):
            raise SystemExit(f"{name} has no results:{block} block")
        table = renderer(data)
        readme = pattern.sub(lambda m, t=table: f"{m.group(1)}\n{t}\n{m.group(2)}", readme)
    return readme


def main() -> None:
    for name in READMES:
        path = ROOT / name
        path.write_text(render(path.read_text(encoding="utf-8"), name), encoding="utf-8")


if __name__ == "__main__":
    main()
