"""Test whether docs/configuration.md lists every option of `fleet-manager --help`,
with the same flag and default, and no option the binary lacks. The help is
rendered from the option table in src/core/config.cpp, so this keeps the document
from drifting from the table. Needs the built binary only: no Postgres, no broker."""
from __future__ import annotations

import re
import subprocess

from harness import REPO, fleet_manager_binary

DOC = REPO / "docs" / "configuration.md"

# "  --http-port VALUE           MAESTRA_HTTP_PORT (default: 8080)"
HELP_ENTRY = re.compile(r"^  (--[a-z0-9-]+) VALUE +(MAESTRA_[A-Z0-9_]+) \(default: (.*)\)$", re.MULTILINE)


def help_options() -> dict[str, tuple[str, str]]:
    """variable -> (flag, default) as `fleet-manager --help` prints them."""
    out = subprocess.run([str(fleet_manager_binary()), "--help"], capture_output=True, text=True, timeout=20,
                         env={"PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    options = {env: (flag, default) for flag, env, default in HELP_ENTRY.findall(out.stdout)}
    assert "MAESTRA_HTTP_PORT" in options, f"no option entries found in --help:\n{out.stdout}"
    return options


def doc_options(text: str) -> dict[str, tuple[str, str]]:
    """variable -> (flag, default) from the table under '## Options' (`x` is read
    as x); a variable listed twice fails at once."""
    section = text.split("\n## Options\n", 1)
    assert len(section) == 2, f"{DOC} has no '## Options' section"
    body = section[1].split("\n## ", 1)[0]
    options: dict[str, tuple[str, str]] = {}
    for line in body.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) < 3 or not cells[0].startswith("`MAESTRA_"):
            continue
        env, flag, default = (cell.strip("`") for cell in cells[:3])
        assert env not in options, f"{DOC} lists {env} twice"
        options[env] = (flag, default)
    return options


def differences(documented: dict[str, tuple[str, str]], helped: dict[str, tuple[str, str]]) -> list[str]:
    problems = []
    for env in helped.keys() - documented.keys():
        problems.append(f"{env} is in --help but not in docs/configuration.md")
    for env in documented.keys() - helped.keys():
        problems.append(f"{env} is in docs/configuration.md but not in --help")
    for env in helped.keys() & documented.keys():
        (doc_flag, doc_default), (help_flag, help_default) = documented[env], helped[env]
        if doc_flag != help_flag:
            problems.append(f"{env}: flag {doc_flag!r} in the doc, {help_flag!r} in --help")
        if doc_default != help_default:
            problems.append(f"{env}: default {doc_default!r} in the doc, {help_default!r} in --help")
    return sorted(problems)


def test_doc_and_help_list_the_same_options_flags_and_defaults():
    problems = differences(doc_options(DOC.read_text()), help_options())
    assert not problems, "docs/configuration.md differs from fleet-manager --help:\n" + "\n".join(problems)


def test_the_comparison_sees_a_missing_row_a_wrong_default_and_a_wrong_flag():
    """The check above must be able to fail: break a copy of the doc three ways."""
    text = DOC.read_text()
    helped = help_options()

    without_row = "\n".join(line for line in text.splitlines() if not line.startswith("| `MAESTRA_LOG_FORMAT`"))
    assert "MAESTRA_LOG_FORMAT is in --help but not in docs/configuration.md" in differences(
        doc_options(without_row), helped)

    wrong_default = text.replace("| `MAESTRA_HTTP_PORT` | `--http-port` | `8080` |",
                                 "| `MAESTRA_HTTP_PORT` | `--http-port` | `8081` |")
    assert wrong_default != text, "the MAESTRA_HTTP_PORT row is not written as this test expects"
    assert "MAESTRA_HTTP_PORT: default '8081' in the doc, '8080' in --help" in differences(
        doc_options(wrong_default), helped)

    wrong_flag = text.replace("| `MAESTRA_OFFLINE_AFTER` | `--offline-after` |",
                              "| `MAESTRA_OFFLINE_AFTER` | `--offline_after` |")
    assert wrong_flag != text, "the MAESTRA_OFFLINE_AFTER row is not written as this test expects"
    assert any(p.startswith("MAESTRA_OFFLINE_AFTER: flag") for p in differences(doc_options(wrong_flag), helped))

    extra_row = text.replace("| `MAESTRA_HTTP_PORT` |", "| `MAESTRA_HTTP_PORTS` | `--http-ports` | `1` | x |\n"
                             "| `MAESTRA_HTTP_PORT` |", 1)
    assert "MAESTRA_HTTP_PORTS is in docs/configuration.md but not in --help" in differences(
        doc_options(extra_row), helped)
