"""CI: does the plain install of this checkout resolve next to what a model repository pins?

pip's resolver is asked, in dry-run mode and ignoring what is installed, to install the checkout (no
extra) with the README's torch pins together with ``requests>=2.32``, and separately with Hugging Face
``datasets==3.6.0``. Both must resolve, without torchattacks (an extra: its 3.5.1 pins
``requests~=2.25.1``) and with requests 2.32 or newer. Nothing is installed: pip reads metadata (from
the index where it offers it, PEP 658; otherwise from the wheel, kept in pip's cache), so the step
takes seconds. tests/test_project_setup.py checks the
same offline, on the installed metadata.

Usage: python .ci/check_resolution.py   (with the pip of the environment CI builds)
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TORCH_PINS = ("torch==2.14.1", "torchvision==0.29.1")  # as the README's quick start installs them
NEIGHBOURS = ("requests>=2.32", "datasets==3.6.0")
ABSENT = "torchattacks"
OLDEST_REQUESTS = (2, 32)


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def resolve(neighbour: str, report: Path) -> list[str]:
    """The problems with resolving the checkout next to ``neighbour`` (pip's report goes to ``report``);
    empty when there are none."""
    command = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--dry-run",
        "--ignore-installed",
        "--report",
        str(report),
        *TORCH_PINS,
        str(ROOT),
        neighbour,
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return [f"pip cannot install the checkout next to {neighbour!r} (exit {done.returncode}):\n{why(done)}"]
    versions = {
        canonical(item["metadata"]["name"]): item["metadata"]["version"]
        for item in json.loads(report.read_text())["install"]
    }
    problems = []
    if "pytest-advprune" not in versions:
        problems.append(f"next to {neighbour!r}: the resolution does not hold pytest-advprune itself")
    if ABSENT in versions:
        problems.append(f"next to {neighbour!r}: the plain install pulls in {ABSENT} {versions[ABSENT]}")
    requests = versions.get("requests")
    if requests is None or tuple(int(part) for part in requests.split(".")[:2]) < OLDEST_REQUESTS:
        problems.append(f"next to {neighbour!r}: requests resolves to {requests}, not 2.32 or newer")
    return problems


def why(done: subprocess.CompletedProcess[str]) -> str:
    """pip's errors and, for a conflict, its explanation (which requirement pins what); not the progress
    lines before them."""
    output = done.stdout.splitlines()
    marker = "The conflict is caused by:"
    explanation = output[output.index(marker) :] if marker in output else output[-20:]
    errors = [line for line in done.stderr.splitlines() if line.startswith("ERROR")]
    return "\n".join(("    " + line).rstrip() for line in [*errors, *explanation])


def main() -> int:
    start = time.monotonic()
    with tempfile.TemporaryDirectory() as workdir, ThreadPoolExecutor(len(NEIGHBOURS)) as pool:
        # The two resolutions wait on the network most of the time: run them side by side.
        reports = [Path(workdir) / f"report-{index}.json" for index in range(len(NEIGHBOURS))]
        results = list(pool.map(resolve, NEIGHBOURS, reports))
    problems = [problem for result in results for problem in result]
    for problem in problems:
        print(f"check_resolution: {problem}", file=sys.stderr)
    if not problems:
        print(
            f"check_resolution: the plain install resolves next to {' and, apart, '.join(NEIGHBOURS)} without "
            f"{ABSENT}, with requests >= 2.32 ({time.monotonic() - start:.0f} s)"
        )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
