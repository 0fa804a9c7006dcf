#!/usr/bin/python3
"""tests/report_counts.py — counts the test cases behind a CTest run (owned by the
tooling; scripts/test.sh calls it after ctest).

    report_counts.py RESULTS_DIR CTEST_JUNIT

CTEST_JUNIT is the file of `ctest --output-junit`: which CTest tests ran and
whether each passed. For each of them RESULTS_DIR holds its cases (see
tests/CMakeLists.txt): <test>.xml, pytest's JUnit XML, or <test>.log, a doctest
console log with its "[doctest] test cases: N | N passed | N failed" line.

Prints one line per CTest test ("  integration.test_http_guide  12 passed, 0 failed")
and, last, "P F S": cases passed, failed, skipped. A CTest test counts as one
failed case more than its cases show when it failed without a failed case (a
crash, a timeout, a fixture error outside any case, pytest collecting nothing),
and as one failed case when it reported no case at all (nothing ran). A CTest
test that keeps no case results counts as one case.
"""
from __future__ import annotations

import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

DOCTEST_LINE = re.compile(
    r"^\[doctest\] test cases:\s*(\d+)\s*\|\s*(\d+) passed\s*\|\s*(\d+) failed(?:\s*\|\s*(\d+) skipped)?")


def ctest_results(path: Path) -> list[tuple[str, str]]:
    """(name, 'passed' / 'failed' / 'notrun') of each CTest test in the file."""
    out = []
    for case in ET.parse(path).getroot().iter("testcase"):
        if case.find("failure") is not None or case.find("error") is not None:
            state = "failed"
        elif case.get("status") in ("notrun", "disabled") or case.find("skipped") is not None:
            state = "notrun"
        else:
            state = "passed"
        out.append((case.get("name", "?"), state))
    return out


def junit_cases(path: Path) -> tuple[int, int, int]:
    """(passed, failed, skipped) test cases of a pytest JUnit XML file."""
    passed = failed = skipped = 0
    for case in ET.parse(path).getroot().iter("testcase"):
        if case.find("failure") is not None or case.find("error") is not None:
            failed += 1
        elif case.find("skipped") is not None:
            skipped += 1
        else:
            passed += 1
    return passed, failed, skipped


def doctest_cases(path: Path) -> tuple[int, int, int] | None:
    """(passed, failed, skipped) from the last doctest summary line, or None."""
    found = None
    for line in path.read_text(errors="replace").splitlines():
        m = DOCTEST_LINE.match(line.strip())
        if m:
            found = (int(m.group(2)), int(m.group(3)), int(m.group(4) or 0))
    return found


def case_counts(results: Path, name: str) -> tuple[tuple[int, int, int] | None, str]:
    """The cases of one CTest test and where they came from ('' if it keeps none)."""
    xml, log = results / f"{name}.xml", results / f"{name}.log"
    if xml.exists():
        try:
            return junit_cases(xml), ""
        except ET.ParseError as e:
            return None, f"unreadable {xml.name}: {e}"
    if log.exists():
        counts = doctest_cases(log)
        return counts, "" if counts else f"no doctest summary in {log.name}"
    return None, "no case results"


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print("usage: report_counts.py RESULTS_DIR CTEST_JUNIT", file=sys.stderr)
        return 2
    results, ctest_junit = Path(argv[1]), Path(argv[2])
    total = [0, 0, 0]
    if not ctest_junit.exists():
        print(f"  (no CTest results in {ctest_junit})")
    else:
        for name, state in ctest_results(ctest_junit):
            if state == "notrun":
                print(f"  {name:<44} not run")
                continue
            counts, note = case_counts(results, name)
            if counts is None:
                # No per-case results: the CTest test is one case.
                passed, failed, skipped = (1, 0, 0) if state == "passed" and note == "no case results" else (0, 1, 0)
            else:
                passed, failed, skipped = counts
                if state == "failed" and failed == 0:
                    failed, note = 1, "failed outside its cases (crash, timeout, setup, nothing collected)"
                elif passed == 0 and failed == 0:
                    failed, note = 1, "ran no test case"
            line = f"  {name:<44} {passed} passed, {failed} failed"
            if skipped:
                line += f", {skipped} skipped"
            if note and (failed or state == "failed"):
                line += f"  [{note}]"
            print(line)
            total[0] += passed
            total[1] += failed
            total[2] += skipped
    print(f"{total[0]} {total[1]} {total[2]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
