"""Where a Flower simulation's time goes: a py-spy profile, summarised by owner.

The profile comes from py-spy (``pip install py-spy``; not a dependency of
he-fed), recording the macro run of ``benchmarks/scale.py`` on the ``flower``
executor with every process of its tree (the driver, which holds the ServerApp
and Flower's in-memory LinkState, and Ray's ClientApp actors)::

    py-spy record --subprocesses -r 50 -f raw -o /tmp/flower1000.txt -- \\
        python benchmarks/scale.py --child 1000 flower /tmp/flower1000.json --child-rounds 2
    python benchmarks/flower_profile.py /tmp/flower1000.txt \\
        --json benchmarks/results/flower_profile.json \\
        --markdown benchmarks/results/flower_profile.md

Each sample is a stack of one thread that was running (py-spy leaves idle threads
out). A sample counts for the first of these owners its stack holds:

* **Flower's queue sweep**: ``add_messages_to_queue`` in Flower's simulation engine
  (``flwr/server/superlink/fleet/vce/vce_api.py``), which asks the in-memory
  LinkState for each node's next message in turn, while
  ``InMemoryLinkState.get_message_ins`` scans every stored message for each node:
  a sweep costs nodes × stored messages, quadratic in the clients during a round.
* **he-fed on a client node**: the ClientApp's round handler, split into
  rebuilding the client from the node's state (``build_client``) and the round's
  work (``participate``: training, encryption, signatures, proof).
* **he-fed in the ServerApp**: the aggregator and the round logic, and the key
  holder node's handlers (ticket, decryption).
* **Flower and Ray otherwise**: the rest of Flower's message path and Ray's
  workers (actor calls, serialisation, Ray's own threads).
"""

from __future__ import annotations

import argparse
import collections
from pathlib import Path
from typing import Any

from he_fed.bench.report import write_outputs

#: Owners in the order a stack is tested against them; the first match counts.
OWNERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Flower's queue sweep (LinkState scan per node)", ("add_messages_to_queue (",)),
    ("he-fed client node: building the client (at setup and every round)", ("build_client (",)),
    ("he-fed client node: the round (participate)", ("Client.participate (",)),
    ("he-fed handlers otherwise (key holder node, setup)", ("_refusing.<locals>.wrapped (",)),
    ("he-fed ServerApp: aggregator and round logic", ("he_fed/",)),
    ("Flower and Ray otherwise", ("flwr/", "ray/")),
)
OTHER = "other (imports, interpreter)"


def owner(stack: str) -> str:
    """The owner a sample's stack (frames joined by ``;``) counts for."""
    for name, needles in OWNERS:
        if any(needle in stack for needle in needles):
            return name
    return OTHER


def summarise(path: Path) -> dict[str, Any]:
    """Samples per owner and per process kind, from py-spy's raw (collapsed) output."""
    owners: collections.Counter[str] = collections.Counter()
    processes: collections.Counter[str] = collections.Counter()
    for line in path.read_text(encoding="utf-8").splitlines():
        stack, _, count = line.rpartition(" ")
        samples = int(count)
        owners[owner(stack)] += samples
        depth = sum(1 for frame in stack.split(";") if frame.startswith("process "))
        processes["driver (ServerApp, LinkState)" if depth == 1 else "Ray workers"] += samples
    total = sum(owners.values())
    return {
        "benchmark": "flower_profile",
        "source": path.name,
        "samples": total,
        "owners": [
            {"owner": name, "samples": owners[name], "share": owners[name] / total}
            for name in [n for n, _ in OWNERS] + [OTHER]
        ],
        "processes": dict(processes),
    }


def markdown(result: dict[str, Any]) -> str:
    """The committed table, from a result dict."""
    lines = [
        "# Where a Flower simulation's time goes",
        "",
        f"py-spy samples of running threads ({result['samples']:,} from `{result['source']}`), "
        "every process of the run's tree; each sample counts for the first owner its "
        "stack holds (see `benchmarks/flower_profile.py`).",
        "",
        "| owner | samples | share |",
        "|---|---:|---:|",
    ]
    for row in result["owners"]:
        lines.append(f"| {row['owner']} | {row['samples']:,} | {100 * row['share']:.0f}% |")
    lines += ["", "| process | samples |", "|---|---:|"]
    for name, samples in sorted(result["processes"].items()):
        lines.append(f"| {name} | {samples:,} |")
    if result.get("note"):
        lines += ["", result["note"]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("profile", type=Path, help="py-spy record -f raw output")
    parser.add_argument("--note", default="", help="what the profile covers, for the table")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--markdown", type=Path)
    args = parser.parse_args(argv)
    result = summarise(args.profile)
    if args.note:
        result["note"] = args.note
    text = markdown(result)
    print(text)
    write_outputs(result, text, args.json, args.markdown)
    return result


if __name__ == "__main__":
    main()
