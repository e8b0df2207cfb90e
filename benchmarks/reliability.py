"""Reliability under load, crashes and hostile input: the suite at its heavier size, in one table.

One command runs ``pytest tests/reliability --heavy`` with ``LABELWISE_RELIABILITY_LOG`` set, so
that every test appends what it did (one JSON line per load run, fault injected, hostile input,
fuzz campaign, security or data-safety check) through its ``record`` fixture. Among those tests
is the multi-process load: two ``labelwise serve`` processes on two ports and one ``labelwise
worker`` process over one PostgreSQL database, with 64 simulated annotators for 2 minutes by
default. The lines are then summed into ``results/reliability.md``::

    python benchmarks/reliability.py                          # the full run
    python benchmarks/reliability.py --annotators 32 --minutes 1 --think-ms 0,100
    python benchmarks/reliability.py --quick                  # the CI sizes: a trial
    python benchmarks/reliability.py -- -k load               # extra pytest arguments

The summary says how much load was held (annotators x minutes), how many faults were injected
and survived, how many hostile inputs were tried, how many labels were lost and how many 5xx
answers were found (both must be 0); a table per kind follows, with every line's figures, then
the tests that failed or were skipped. A kind this script does not know is listed and shown as
it came. ``--quick`` writes ``reliability_quick.md`` so a trial never overwrites the committed
results. The raw lines are kept beside the report (``reliability.jsonl``).

Exit status: 0 when every test passed and no label was lost, no lease doubled and no 5xx found.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from serve_latency import machine_header

ROOT = Path(__file__).resolve().parent.parent
#: The kinds the summary knows, in the order it shows them.
KINDS = ("load", "fault", "hostile", "fuzz", "security", "data-safety")
#: Figures that must be 0 wherever a line reports them.
MUST_BE_ZERO = ("labels_lost", "server_errors", "double_leases")


@dataclass
class Outcomes:
    """What pytest said about each test (from its JUnit XML)."""

    passed: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0

    @classmethod
    def read(cls, path: Path) -> Outcomes:
        out = cls()
        if not path.exists():
            return out
        for case in ET.parse(path).getroot().iter("testcase"):
            name = f"{case.get('classname', '')}::{case.get('name', '')}"
            out.seconds += float(case.get("time") or 0)
            problem = next((c for c in case if c.tag in ("failure", "error", "skipped")), None)
            if problem is None:
                out.passed.append(name)
                continue
            message = (problem.get("message") or problem.text or "").strip().splitlines()
            first = message[0][:300] if message else ""
            if problem.tag == "skipped":
                out.skipped.append((name, first))
            else:
                out.failed.append((name, first))
        return out


def read_lines(path: Path) -> tuple[list[dict[str, Any]], int]:
    """The JSON lines the tests wrote, and how many lines could not be read."""
    lines, bad = [], 0
    if not path.exists():
        return lines, bad
    for raw in path.read_text(encoding="utf-8").splitlines():
        if not raw.strip():
            continue
        try:
            value = json.loads(raw)
        except ValueError:
            bad += 1
            continue
        if isinstance(value, dict) and isinstance(value.get("kind"), str):
            lines.append(value)
        else:
            bad += 1
    return lines, bad


# --------------------------------------------------------------------------------------------
# Formatting


def number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def cell(value: Any, width: int = 90) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "**no**"
    if isinstance(value, float):
        return f"{value:,.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, (list, dict)):
        value = json.dumps(value, default=str)
    text = " ".join(str(value).split()).replace("|", "\\|")
    return text if len(text) <= width else text[: width - 1] + "…"


def test_name(nodeid: Any) -> str:
    """``tests/reliability/test_x.py::test_y[p]`` -> ``test_x::test_y[p]``."""
    text = str(nodeid or "")
    path, _, name = text.partition("::")
    return f"{Path(path).stem}::{name}" if name else text


def table(lines: list[dict[str, Any]]) -> list[str]:
    """One row per line, one column per field any of them has (in the order first seen)."""
    columns: list[str] = []
    for line in lines:
        columns += [k for k in line if k not in ("kind", "test") and k not in columns]
    out = ["| test | " + " | ".join(columns) + " |", "|---|" + "---|" * len(columns)]
    for line in lines:
        cells = [cell(line.get(c)) for c in columns]
        out.append(f"| {cell(test_name(line.get('test')), 70)} | " + " | ".join(cells) + " |")
    return out


def total(lines: list[dict[str, Any]], key: str) -> float:
    return sum(number(line.get(key)) or 0.0 for line in lines)


def count(value: float) -> str:
    return f"{value:,.0f}" if value == int(value) else f"{value:,.2f}"


# --------------------------------------------------------------------------------------------
# The summary


def load_held(lines: list[dict[str, Any]]) -> str:
    runs = [ln for ln in lines if number(ln.get("annotators")) and number(ln.get("minutes"))]
    if not runs:
        return "no load run recorded"

    def size(ln: dict[str, Any]) -> float:
        return float(ln["annotators"]) * float(ln["minutes"])

    biggest = max(runs, key=size)
    where = ", ".join(
        str(biggest[k]) for k in ("processes", "database") if biggest.get(k) is not None
    )
    acked = total(lines, "labels_acknowledged")
    return (
        f"{count(biggest['annotators'])} annotator{'s' if biggest['annotators'] != 1 else ''}"
        f" × {biggest['minutes']:.2f} min"
        + (f" ({where})" if where else "")
        + f"; {len(lines)} runs in all, {count(acked)} labels acknowledged, "
        f"{count(total(lines, 'disconnects'))} requests cut off and retried"
    )


def summary_rows(
    by_kind: dict[str, list[dict[str, Any]]], everything: list[dict[str, Any]], tests: Outcomes
) -> list[tuple[str, str]]:
    faults = by_kind.get("fault", [])
    survived = sum(1 for ln in faults if ln.get("survived") is True)
    hostile = by_kind.get("hostile", [])
    unchanged = [ln for ln in hostile if "stored_unchanged" in ln]
    fuzz = by_kind.get("fuzz", [])
    return [
        ("load held", load_held(by_kind.get("load", []))),
        (
            "faults injected / survived",
            f"{len(faults)} / {survived}"
            + (f" ({len(faults) - survived} not)" if survived < len(faults) else ""),
        ),
        (
            "hostile inputs tried",
            f"{len(hostile)}"
            + (
                f" ({sum(1 for ln in unchanged if ln['stored_unchanged'] is True)} of "
                f"{len(unchanged)} checked left the stored data unchanged)"
                if unchanged
                else ""
            ),
        ),
        (
            "fuzz",
            f"{len(fuzz)} runs, {count(total(fuzz, 'operations'))} operations, "
            f"{count(total(fuzz, 'cases'))} cases"
            if fuzz
            else "no fuzz run recorded",
        ),
        ("security checks", f"{len(by_kind.get('security', []))} recorded"),
        ("data-safety checks", f"{len(by_kind.get('data-safety', []))} recorded"),
        ("labels lost (must be 0)", count(total(everything, "labels_lost"))),
        ("items leased twice (must be 0)", count(total(everything, "double_leases"))),
        ("5xx found (must be 0)", count(total(everything, "server_errors"))),
        (
            "tests",
            f"{len(tests.passed)} passed, {len(tests.failed)} failed, "
            f"{len(tests.skipped)} skipped ({tests.seconds / 60:.1f} min)",
        ),
    ]


def multi_process(lines: list[dict[str, Any]]) -> list[str]:
    """The paragraph about the 2 serve + 1 worker run(s)."""
    runs = [ln for ln in lines if str(ln.get("processes", "")).startswith("2 serve")]
    out: list[str] = []
    for ln in runs:
        out.append(
            f"- {cell(ln.get('annotators'))} annotators for {cell(ln.get('minutes'))} min "
            f"(think time {cell(ln.get('think_ms'))} ms), half on each server: "
            f"{cell(ln.get('labels_acknowledged'))} labels acknowledged, "
            f"{cell(ln.get('labels_lost'))} lost, {cell(ln.get('double_leases'))} items leased "
            f"twice ({cell(ln.get('samples'))} database snapshots and the clients' history), "
            f"{cell(ln.get('server_errors'))} 5xx, {cell(ln.get('model_versions'))} model "
            f"versions published by the worker meanwhile."
        )
        per = [
            f"server {s}: next p95 {cell(ln.get(f'next_p95_ms_{s}'))} ms, label p95 "
            f"{cell(ln.get(f'label_p95_ms_{s}'))} ms"
            for s in ("a", "b")
        ]
        out.append(
            f"  Latency on the client: next p50 {cell(ln.get('next_p50_ms'))} / p95 "
            f"{cell(ln.get('next_p95_ms'))} ms, label p50 {cell(ln.get('label_p50_ms'))} / p95 "
            f"{cell(ln.get('label_p95_ms'))} ms; " + "; ".join(per) + "."
        )
    return out


def markdown(
    lines: list[dict[str, Any]],
    bad: int,
    tests: Outcomes,
    header: dict[str, str],
    args: argparse.Namespace,
    pytest_command: list[str],
) -> str:
    by_kind: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for line in lines:
        by_kind[line["kind"]].append(line)
    unknown = sorted(set(by_kind) - set(KINDS))
    out = [
        "# Reliability: invariants under load, crashes and hostile input",
        "",
        "Every figure below was written by the test that measured it (its `record` fixture "
        "appends one JSON line per run, fault, input or check), then summed here. Produced by:",
        "",
        "```",
        header["command"],
        "```",
        "",
        "which ran `" + shlex.join(pytest_command) + "` with "
        f"`LABELWISE_LOAD_ANNOTATORS={args.annotators}`, `LABELWISE_LOAD_MINUTES={args.minutes}` "
        f"and `LABELWISE_LOAD_THINK_MS={args.think_ms}`"
        + (" (ignored at the CI sizes of `--quick`)" if args.quick else "")
        + ".",
        "",
        "Machine and software:",
        "",
    ]
    out += [f"- **{k}**: {v}" for k, v in header.items() if k != "command"]
    out += ["", "## Summary", "", "| | |", "|---|---|"]
    out += [f"| {k} | {v} |" for k, v in summary_rows(by_kind, lines, tests)]
    out.append("")
    if bad:
        out += [f"{bad} line(s) of the log could not be read and are not counted.", ""]
    runs = multi_process(by_kind.get("load", []))
    if runs:
        out += [
            "## Several processes over PostgreSQL",
            "",
            "Two `labelwise serve --no-worker` processes on two ports and one `labelwise worker` "
            "over one PostgreSQL database; every annotator talks to one of the servers, cuts a "
            "share of its requests off mid-way and sends them again with the same `request_id`.",
            "",
            *runs,
            "",
        ]
    for kind in (*[k for k in KINDS if k in by_kind], *unknown):
        out += [f"## {kind}" + (" (a kind this script does not know)" if kind in unknown else "")]
        out += ["", *table(by_kind[kind]), ""]
    missing = [k for k in KINDS if k not in by_kind]
    if missing:
        out += [f"No lines of kind: {', '.join(missing)}.", ""]
    if unknown:
        out += [f"Kinds not in the summary: {', '.join(unknown)}.", ""]
    if tests.failed:
        out += ["## Tests that failed", ""]
        out += [f"- `{name}`: {cell(msg, 300)}" for name, msg in tests.failed]
        out.append("")
    if tests.skipped:
        out += ["## Tests skipped", ""]
        out += [f"- `{name}`: {cell(msg, 300)}" for name, msg in tests.skipped]
        out.append("")
    return "\n".join(out)


# --------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--annotators", type=int, default=64, help="Annotators of the multi-process run (64)."
    )
    parser.add_argument(
        "--minutes", type=float, default=2.0, help="Minutes of the multi-process run (2)."
    )
    parser.add_argument(
        "--think-ms",
        default="500,2500",
        help="Think time of the multi-process run's annotators, a range in ms (500,2500).",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="The CI sizes (no --heavy): a trial; writes reliability_quick.md.",
    )
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    parser.add_argument(
        "pytest_args", nargs="*", help="Extra pytest arguments (after --), e.g. -k load."
    )
    args = parser.parse_args(argv)
    try:
        lo, hi = (float(x) for x in args.think_ms.split(","))
    except ValueError:
        parser.error(f"--think-ms takes a range lo,hi in ms, got {args.think_ms!r}")
    if not 0 <= lo <= hi:
        parser.error(f"--think-ms must be lo,hi with 0 ≤ lo ≤ hi, got {args.think_ms!r}")
    if args.annotators < 1 or args.minutes <= 0:
        parser.error(
            f"--annotators must be ≥ 1 and --minutes > 0, got {args.annotators} and {args.minutes}"
        )
    return args


def postgres_base() -> str:
    """The PostgreSQL server the tests use, as a libpq URL without a database."""
    from sqlalchemy.engine import make_url

    url = make_url(
        os.environ.get(
            "LABELWISE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
        )
    )
    url = url.set(drivername="postgresql", database="")
    return url.render_as_string(hide_password=False).rstrip("/")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    suffix = "_quick" if args.quick else ""
    args.out.mkdir(parents=True, exist_ok=True)
    header = machine_header(SimpleNamespace(pg_url=postgres_base(), database_list=["postgresql"]))
    header["command"] = "python benchmarks/reliability.py " + shlex.join(
        sys.argv[1:] if argv is None else argv
    )
    header["date"] = dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    log_path = args.out / f"reliability{suffix}.jsonl"
    log_path.write_text("")
    with tempfile.TemporaryDirectory(prefix="lw-reliability-") as tmp:
        junit = Path(tmp) / "junit.xml"
        command = [
            sys.executable,
            "-m",
            "pytest",
            "tests/reliability",
            "-p",
            "no:cacheprovider",
            "-rfEs",
            *([] if args.quick else ["--heavy"]),
            *args.pytest_args,
        ]
        env = dict(
            os.environ,
            LABELWISE_RELIABILITY_LOG=str(log_path),
            LABELWISE_LOAD_ANNOTATORS=str(args.annotators),
            LABELWISE_LOAD_MINUTES=str(args.minutes),
            LABELWISE_LOAD_THINK_MS=args.think_ms,
        )
        print(f"running {shlex.join(command[2:])}", file=sys.stderr, flush=True)
        start = time.monotonic()
        proc = subprocess.run([*command, f"--junitxml={junit}"], cwd=ROOT, env=env, check=False)
        seconds = time.monotonic() - start
        tests = Outcomes.read(junit)
    lines, bad = read_lines(log_path)
    header["duration"] = f"{seconds / 60:.1f} min for the whole run"
    text = markdown(lines, bad, tests, header, args, ["pytest", *command[3:]])
    report = args.out / f"reliability{suffix}.md"
    report.write_text(text)
    print(text)
    print(f"wrote {report} and {log_path}", file=sys.stderr)
    broken = any(total(lines, key) for key in MUST_BE_ZERO)
    return 1 if proc.returncode != 0 or tests.failed or broken else 0


if __name__ == "__main__":
    sys.exit(main())
