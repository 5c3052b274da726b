"""The README is the front door and the documentation lives in docs/ (issue 16 part 1): the README stays
short and keeps the quick start, and every option pytest --help lists is documented in docs/."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
QUICK_START = "".join(  # the README's two quick-start commands, byte for byte
    [
        "```bash\n",
        "# 1. install, then run the embedded default suite (offline, CPU, about four and a half minutes)\n",
        "python3.11 -m venv .venv && .venv/bin/pip install torch==2.14.1 torchvision==0.29.1 -e . "
        "&& .venv/bin/pytest suites/\n",
        "\n",
        "# 2. install with the test extra, then run the plugin's own tests\n",
        'python3.11 -m venv .venv && .venv/bin/pip install torch==2.14.1 torchvision==0.29.1 -e ".[test]" '
        "&& .venv/bin/pytest tests/\n",
        "```\n",
    ]
)


def docs_text() -> str:
    return "\n".join(path.read_text() for path in sorted((ROOT / "docs").rglob("*.md")))


def test_the_readme_is_a_short_front_door_with_the_quick_start() -> None:
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 250
    assert QUICK_START in readme
    for link in re.findall(r"\]\((docs/[^)#]+)", readme):
        assert (ROOT / link).is_file(), link


def test_every_option_pytest_help_lists_is_in_the_docs() -> None:
    help_text = subprocess.run(
        [sys.executable, "-m", "pytest", "--help", "-p", "no:cacheprovider"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    names = set(re.findall(r"--advprune-[a-z-]*[a-z]|\badvprune_[a-z_]*[a-z]", help_text))
    assert len(names) > 30, sorted(names)  # the options are there to check
    docs = docs_text()
    missing = sorted(name for name in names if not re.search(re.escape(name) + r"(?![a-z_-])", docs))
    assert not missing, f"options pytest --help lists that docs/ does not mention: {missing}"
