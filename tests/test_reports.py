"""Reports people look at: the document's schema, failures first with their real causes in every format,
the study's comparison, the terminal matrix, GitHub's step summary, and reports from stored baselines."""

from __future__ import annotations

import itertools
import json
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, ClassVar

import pytest
from conftest import CELL_TEST, TINY_CONFTEST

from pytest_advprune.reports.document import ATTENTION, load_schema
from pytest_advprune.reports.study import robustness_gaps

jsonschema = pytest.importorskip("jsonschema")

BROKEN_PRUNING = """

BREAK_RECIPE = {broken}


@pytest_advprune.register_pruning("recipe", fine_tune=False)
def recipe(model, amount, context):
    if BREAK_RECIPE:  # a change that costs clean and robust accuracy
        with torch.no_grad():
            keep = torch.rand(model[1].weight.shape, generator=torch.Generator().manual_seed(1)) > 0.6
            model[1].weight.mul_(keep)
    return model
"""
INI = (
    "[pytest]\nadvprune_prunings =\n    recipe:0.5\n    l1_unstructured:0.5\nadvprune_attacks =\n    fgsm:0.1\n"
    "    pgd_linf:eps=0.1,steps=3,restarts=1\nadvprune_finetune_epochs = 1\nadvprune_max_clean_drop = 100\n"
    "advprune_max_robustness_gap = 100\n"
)
FAILED_CELL = "tiny-linear-recipe_0.5-fgsm_0.1"


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeconftest(TINY_CONFTEST + BROKEN_PRUNING.format(broken=False))
    pytester.makeini(INI)
    pytester.makepyfile(test_cells=CELL_TEST)
    pytester.runpytest("--update-baselines", "-p", "no:cacheprovider").assert_outcomes(passed=4)
    return pytester


def break_recipe(project: pytest.Pytester) -> None:
    project.makeconftest(TINY_CONFTEST + BROKEN_PRUNING.format(broken=True))


def test_a_broken_cell_comes_first_with_its_real_causes_in_json(project: pytest.Pytester) -> None:
    break_recipe(project)
    result = project.runpytest("-p", "no:cacheprovider", "--advprune-report=report.json")
    result.assert_outcomes(failed=2, passed=2)
    document = json.loads((project.path / "report.json").read_text())
    jsonschema.validate(document, load_schema())
    ids = list(document["cells"])
    assert ids[:2] == [FAILED_CELL, "tiny-linear-recipe_0.5-pgd_linf_0.1_restarts1_steps3"]
    assert document["summary"]["attention"] == ids[:2]
    failed = document["cells"][FAILED_CELL]
    assert failed["status"] == "failed" and failed["file"] == "tiny-linear/recipe_0.5/fgsm_0.1.json"
    failing = {row["metric"]: row for row in failed["failing"]}
    assert "pruned_clean_accuracy" in failing
    clean = failing["pruned_clean_accuracy"]
    assert clean["difference"] == pytest.approx(clean["observed"] - clean["baseline"], abs=1e-3)
    assert clean["ci_low"] <= clean["difference"] <= clean["ci_high"] and clean["p_value"] < 0.05
    assert clean["allowed"]


def test_a_broken_cell_comes_first_in_markdown_html_and_the_step_summary(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    break_recipe(project)
    summary = project.path / "step_summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    project.runpytest("-p", "no:cacheprovider", "--advprune-report=report.md")
    project.runpytest("-p", "no:cacheprovider", "--advprune-report=report.html")
    markdown = (project.path / "report.md").read_text()
    attention = markdown.split("## Cells", 1)[0]
    assert "## Needs attention (2)" in attention
    assert f"### `{FAILED_CELL}`: failed" in attention
    assert (
        "| pruned_clean_accuracy |" in attention
        and "baseline file: `tiny-linear/recipe_0.5/fgsm_0.1.json`" in attention
    )
    assert attention.index(FAILED_CELL) < attention.index("pruned_clean_accuracy")
    assert summary.read_text().count("# pytest-advprune report") == 2  # appended by both runs
    page = (project.path / "report.html").read_text()
    assert page.index("Needs attention") < page.index(FAILED_CELL) < page.index("<h2>Cells</h2>")
    assert "pruned_clean_accuracy" in page.split("<h2>Cells</h2>")[0]
    parser = _TagBalance()
    parser.feed(page)
    assert parser.stack == [] and "table" in parser.seen and "svg" in parser.seen  # tables and figures
    assert not re.search(r"(src|href)=\"(https?:)?//|url\(https?:|<link|<script", page)  # nothing to fetch


class _TagBalance(HTMLParser):
    """Checks that every opened element is closed (a well-formed page), and records the tags used."""

    VOID: ClassVar[set[str]] = {
        "meta",
        "br",
        "img",
        "hr",
        "link",
        "input",
        "path",
        "rect",
        "line",
        "circle",
        "use",
        "stop",
    }

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.seen: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.seen.add(tag)
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.seen.add(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in self.VOID:
            return
        assert self.stack and self.stack[-1] == tag, (self.stack[-5:], tag)
        self.stack.pop()


def test_the_terminal_matrix_honours_quiet(project: pytest.Pytester) -> None:
    normal = project.runpytest("-p", "no:cacheprovider")
    normal.stdout.fnmatch_lines(
        [
            "robust accuracy % (white-box / transfer, status)*",
            "tiny-linear*fgsm_0.1*pgd_linf_0.1_restarts1_steps3",
            "  base*",
            "  l1_unstructured_0.5 * / * ok*",
            "  recipe_0.5 * / * ok*",
        ]
    )
    quiet = project.runpytest("-p", "no:cacheprovider", "-q")
    assert "robust accuracy % (white-box" not in quiet.stdout.str()
    quiet.stdout.fnmatch_lines(["4 cells: 4 passed"])


def test_verbose_runs_show_progress_and_quiet_ones_do_not(project: pytest.Pytester) -> None:
    verbose = project.runpytest("-p", "no:cacheprovider", "-v")
    verbose.stdout.fnmatch_lines(
        ["advprune: pruned tiny-linear with recipe_0.5 in * s", "advprune: crafted fgsm_0.1 on *"]
    )
    assert "advprune: pruned" not in project.runpytest("-p", "no:cacheprovider").stdout.str()


def test_stale_cells_carry_their_comparison(project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TINY_SEED", "1")  # other weights: every cell is stale (or regressed)
    project.runpytest("-p", "no:cacheprovider", "--advprune-report=report.json")
    document = json.loads((project.path / "report.json").read_text())
    for cell in document["cells"].values():
        assert cell["status"] in ("stale", "regressed")
        assert cell["comparisons"] and cell["stale_fields"]
        assert any(field.startswith("model.weights_fingerprint") for field in cell["stale_fields"])


def test_the_study_gaps_match_an_independent_computation() -> None:
    from scipy.stats import binomtest

    base = [True] * 30 + [False] * 20 + [True] * 10
    pruned = [True] * 20 + [False] * 30 + [True] * 10
    gaps = robustness_gaps({"base_adversarial": base, "pruned_adversarial": pruned, "transfer_adversarial": base})
    gap = gaps["pruned_vs_base"]
    assert gap["difference"] == pytest.approx(100 * (sum(pruned) - sum(base)) / len(base), abs=1e-4)
    assert (gap["regressions"], gap["improvements"]) == (10, 0)
    assert gap["p_value"] == pytest.approx(binomtest(0, 10, 0.5).pvalue, rel=1e-5)
    assert gap["ci_low"] < gap["difference"] < gap["ci_high"]
    assert gaps["transfer_vs_base"]["difference"] == 0 and gaps["transfer_vs_base"]["p_value"] == 1


def report_from_baselines(project: pytest.Pytester, output: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "pytest_advprune", "report", "baselines", "-o", output]
    return subprocess.run(command, cwd=project.path, capture_output=True, text=True, check=False)


def comparable(document: dict[str, Any]) -> dict[str, Any]:
    """What a report from stored baselines shares with the run that wrote them: every cell's numbers and
    the study (statuses, test ids and gate comparisons exist only in a run)."""
    keys = ("model", "pruning", "attack", "attack_id", "pruning_method", "amount", "params", "file", "metrics", "gaps")
    return {
        "cells": {cid: {k: cell[k] for k in keys} for cid, cell in document["cells"].items()},
        "study": document["study"],
    }


def test_a_report_from_stored_baselines_equals_the_runs(project: pytest.Pytester) -> None:
    project.runpytest("-p", "no:cacheprovider", "--update-baselines", "--advprune-report=run.json")
    done = report_from_baselines(project, "stored.json")
    assert done.returncode == 0, done.stderr
    assert "wrote the report of 4 stored cells to stored.json" in done.stdout
    run = json.loads((project.path / "run.json").read_text())
    stored = json.loads((project.path / "stored.json").read_text())
    jsonschema.validate(stored, load_schema())
    assert stored["source"] == "baselines" and {c["status"] for c in stored["cells"].values()} == {"stored"}
    assert comparable(stored) == comparable(run)
    for output in ("stored.md", "stored.html"):
        assert report_from_baselines(project, output).returncode == 0
    assert "## Pruned vs base" in (project.path / "stored.md").read_text()


def test_a_report_from_a_folder_without_baselines_fails_naming_it(pytester: pytest.Pytester) -> None:
    (pytester.path / "empty").mkdir()
    command = [sys.executable, "-m", "pytest_advprune", "report", "empty", "-o", "x.md"]
    done = subprocess.run(command, cwd=pytester.path, capture_output=True, text=True, check=False)
    assert done.returncode == 2 and "empty" in done.stderr and "holds no baseline files" in done.stderr


def test_the_report_is_the_same_under_xdist(project: pytest.Pytester) -> None:
    project.runpytest("-p", "no:cacheprovider", "--advprune-report=serial.json")
    project.runpytest_subprocess("-p", "no:cacheprovider", "-n", "2", "--advprune-report=parallel.json")
    serial = json.loads((project.path / "serial.json").read_text())
    parallel = json.loads((project.path / "parallel.json").read_text())
    assert list(serial["cells"]) == list(parallel["cells"])
    assert serial == parallel


def test_every_status_a_report_can_carry_is_in_the_schema() -> None:
    schema_statuses = set(load_schema()["$defs"]["status"]["enum"])
    assert set(ATTENTION) <= schema_statuses
    from pytest_advprune.reports.document import STATUSES

    assert set(STATUSES) == schema_statuses


def test_report_paths_must_name_a_format(project: pytest.Pytester) -> None:
    result = project.runpytest("-p", "no:cacheprovider", "--advprune-report=report.txt")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--advprune-report='report.txt' must end in .json, .md (Markdown) or .html*"])


def test_the_docs_study_table_is_generated_from_the_committed_baselines() -> None:
    from pytest_advprune.reports.markdown import study_tables
    from pytest_advprune.reports.stored import stored_document

    root = Path(__file__).resolve().parent.parent
    page = (root / "docs" / "results" / "study.md").read_text()  # the study table moved there from the README
    shown = page.split("<!-- study:begin -->\n", 1)[1].split("<!-- study:end -->", 1)[0].strip()
    generated = "\n".join(study_tables(stored_document(root / "baselines")["study"])).strip()
    assert shown == generated, (
        "regenerate it: python -m pytest_advprune report baselines/ -o study.md --study-only, "
        "and paste it between the markers of docs/results/study.md"
    )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["report", "baselines", "-o", "report.txt"], "must end in .json, .md or .html"),
        (["report", "baselines", "-o", "study.html", "--study-only"], "--study-only writes Markdown"),
        (["report", "baselines", "-o", "r.md", "--alpha", "1"], "--alpha=1.0 must be between 0 and 1"),
        (["merge-reports", "merged.txt", "a.json"], "must end in .json, .md or .html"),
    ],
)
def test_the_command_refuses_bad_arguments_naming_them(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from pytest_advprune.__main__ import main

    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_merging_reports_of_different_runs_is_refused(project: pytest.Pytester) -> None:
    from pytest_advprune.__main__ import main

    project.runpytest("-p", "no:cacheprovider", "--advprune-report=a.json")
    document = json.loads((project.path / "a.json").read_text())
    document["gate"] = "tolerance"
    (project.path / "b.json").write_text(json.dumps(document))
    assert (
        main(
            ["merge-reports", str(project.path / "m.json"), str(project.path / "a.json"), str(project.path / "b.json")]
        )
        == 2
    )
    broken = {**document, "gate": "both", "cells": {"x": {"no": "id"}}}
    (project.path / "c.json").write_text(json.dumps(broken))
    assert main(["merge-reports", str(project.path / "m.json"), str(project.path / "c.json")]) == 2
    assert not (project.path / "m.json").exists()


# --- malformed and hostile stored data ------------------------------------------------------------------

STORED = Path(__file__).resolve().parent.parent / "baselines" / "lenet"
TARGET = "lenet/channel_0.5/fgsm_0.1.json"


@pytest.fixture
def stored_folder(tmp_path: Path) -> Path:
    """A copy of one committed model's baselines (12 cells): a valid folder to break one field of."""
    import shutil

    shutil.copytree(STORED, tmp_path / "baselines" / "lenet")
    return tmp_path / "baselines"


def _edited(edit: Any) -> Any:
    def apply(data: dict[str, Any]) -> str:
        edit(data)
        return json.dumps(data)

    return apply


MALFORMED = [
    pytest.param(_edited(lambda d: d.update(cell=5)), "'cell' is an int, not an object", id="cell-int"),
    pytest.param(_edited(lambda d: d["cell"].update(model=[1])), "cell.model is [1], not", id="cell-model-list"),
    pytest.param(_edited(lambda d: d["cell"].pop("attack")), "cell.attack is None, not", id="cell-attack-missing"),
    pytest.param(_edited(lambda d: d.update(provenance="x")), "'provenance' is a str, not an object", id="prov-str"),
    pytest.param(
        _edited(lambda d: d["provenance"].update(attack="x")),
        "provenance.attack is 'x', not an object",
        id="attack-str",
    ),
    pytest.param(
        _edited(lambda d: d["provenance"].update(pruning=[1])), "provenance.pruning is [1], not", id="pruning-list"
    ),
    pytest.param(
        _edited(lambda d: d["provenance"]["attack"].update(name={"a": [None]})),
        "provenance.attack.name is {'a': [None]}, not",
        id="attack-name-nested",
    ),
    pytest.param(
        _edited(lambda d: d["provenance"]["pruning"].update(amount="half")),
        "provenance.pruning.amount is 'half', not a number",
        id="amount-str",
    ),
    pytest.param(
        lambda d: json.dumps(d).replace('"eps": 0.1', '"eps": NaN'),
        "provenance.attack.eps is nan, not a finite number",
        id="eps-nan",
    ),
    pytest.param(
        lambda d: json.dumps(d).replace('"seed": 0', '"seed": 1e400'),
        "provenance.seed is inf, not a finite number",
        id="seed-overflows",
    ),
    pytest.param(
        _edited(lambda d: d["metrics"].update(base_macs=10**400)),
        "metric 'base_macs' is 1000000000",
        id="macs-too-large",
    ),
    pytest.param(
        _edited(lambda d: d["cell"].update(attack="fgsm_0.2")),
        "its 'cell' ('lenet', 'channel_0.5', 'fgsm_0.2') belongs in 'lenet/channel_0.5/fgsm_0.2.json'",
        id="cell-of-another-file",
    ),
]


@pytest.mark.parametrize(("corrupt", "problem"), MALFORMED)
@pytest.mark.parametrize("output", ["report.json", "report.md", "report.html", "study.md"])
def test_a_malformed_stored_baseline_ends_the_report_with_its_file_and_field(
    stored_folder: Path, corrupt: Any, problem: str, output: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from pytest_advprune.__main__ import main

    path = stored_folder / TARGET
    path.write_text(corrupt(json.loads(path.read_text())))
    out = stored_folder.parent / output
    argv = ["report", str(stored_folder), "-o", str(out), *(["--study-only"] if output == "study.md" else [])]
    assert main(argv) == 2  # no exception: the message below is all the user sees
    error = capsys.readouterr().err
    assert f"Baseline file {str(path)!r} is unusable: " in error and problem in error, error
    assert not out.exists()


def test_the_report_command_prints_no_traceback_for_a_malformed_cell(stored_folder: Path) -> None:
    path = stored_folder / TARGET
    path.write_text(path.read_text().replace('"cell": {', '"cell": 5, "x": {', 1))
    command = [sys.executable, "-m", "pytest_advprune", "report", str(stored_folder), "-o", "r.html"]
    done = subprocess.run(command, cwd=stored_folder.parent, capture_output=True, text=True, check=False)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.startswith(f"error: Baseline file {str(path)!r} is unusable: 'cell' is an int, not an object")


def test_a_text_eps_of_a_custom_attack_is_reported_off_the_eps_axis(stored_folder: Path) -> None:
    from pytest_advprune.__main__ import main

    path = stored_folder / TARGET
    path.write_text(path.read_text().replace('"eps": 0.1', '"eps": "8/255"'))
    assert main(["report", str(stored_folder), "-o", str(stored_folder.parent / "r.html")]) == 0
    document = json.loads(_report(stored_folder, "r.json"))
    assert document["cells"]["lenet-channel_0.5-fgsm_0.1"]["params"] == {"eps": "8/255"}


def _report(folder: Path, name: str) -> str:
    from pytest_advprune.__main__ import main

    assert main(["report", str(folder), "-o", str(folder.parent / name)]) == 0
    return (folder.parent / name).read_text(encoding="utf-8")


HOSTILE = "<script>alert(1)</script> <img src=x onerror=alert(1)> a|b `c` **d** [e](f) $\\x{$ \\| &amp;\n## injected"


def _hostile_document() -> dict[str, Any]:
    """A report whose every text field (names, ids, parameters, messages, metric names, the gate) is HOSTILE."""
    from pytest_advprune.reports.document import build_document, cell_record

    gap = {"difference": 2.0, "ci_low": -1.0, "ci_high": 5.0, "confidence": 0.95, "p_value": 0.5}
    gap |= {"regressions": 1, "improvements": 2}
    change = {"metric": HOSTILE, "baseline": 50.0, "observed": 40.0, "difference": -10.0, "allowed": HOSTILE}
    metrics = {"base_robust_accuracy": 50.0, "pruned_robust_accuracy": 40.0, "transfer_robust_accuracy": 60.0}
    metrics |= {"sparsity": 50.0, HOSTILE: 1.0}
    common = {
        "model": HOSTILE,
        "attack": HOSTILE,
        "pruning_method": HOSTILE,
        "amount": 0.5,
        "params": {"eps": 0.1, "mode": HOSTILE},
        "file": HOSTILE,
        "nodeid": HOSTILE,
        "metrics": metrics,
        "gaps": {"pruned_vs_base": gap, "transfer_vs_base": gap},
    }
    cells = [
        cell_record(
            id=f"{HOSTILE} {status}",
            status=status,
            pruning=f"{HOSTILE} {status}",
            attack_id=f"{HOSTILE} {status}",
            failing=[change] if status != "stale" else [],
            comparisons=[{**change, **gap}],
            violations=[{"invariant": HOSTILE, "metric": HOSTILE, "observed": 1.0, "allowed": HOSTILE}],
            flags=[HOSTILE],
            stale_fields=[HOSTILE],
            error=HOSTILE,
            accepted=status == "accepted",
            worst={"metric": HOSTILE, "baseline": 50.0, "observed": 40.0, "difference": -10.0, "p_value": 0.01},
            **common,
        )
        for status in ("failed", "stale", "accepted")
    ]
    latency = [{"model": HOSTILE, "pruning": HOSTILE, "batch_size": 1, "median_seconds": 0.01, "speedup": 1.5}]
    return build_document(cells, source="run", gate=HOSTILE, plugin_version=HOSTILE, latency=latency)


def _unescaped(line: str, character: str) -> int:
    """How often ``character`` occurs in a Markdown line outside backslash escapes."""
    count, index = 0, 0
    while index < len(line):
        if line[index] == "\\":
            index += 2
            continue
        count += line[index] == character
        index += 1
    return count


def assert_inert_markdown(markdown: str) -> None:
    """No HTML element but <code>, no table row with a cell too many, no code span left open, and no line
    that a value's line break started."""
    assert set(re.findall(r"<\s*/?\s*([A-Za-z][\w-]*)", markdown)) <= {"code"}
    assert "## injected" not in markdown.replace("\\#\\# injected", "")
    lines = markdown.splitlines()
    for index, line in enumerate(lines):
        assert _unescaped(line, "`") % 2 == 0, line
        if line.startswith("|") and index and not lines[index - 1].startswith("|"):
            columns = _unescaped(line, "|")
            for row in itertools.takewhile(lambda row: row.startswith("|"), lines[index:]):
                assert _unescaped(row, "|") == columns, (line, row)


class _Elements(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: set[str] = set()
        self.attributes: set[str] = set()
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        self.attributes |= {name for name, _ in attrs}

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def assert_inert_html(page: str, literal: str) -> None:
    balance = _TagBalance()
    balance.feed(page)
    assert balance.stack == []
    elements = _Elements()
    elements.feed(page)
    assert not elements.tags & {"script", "img", "a", "iframe"}, elements.tags
    assert not [name for name in elements.attributes if name.startswith("on")]
    assert literal in "".join(elements.text)  # shown as typed


def test_every_value_of_a_report_is_escaped_in_markdown_and_html(pytester: pytest.Pytester) -> None:
    from pytest_advprune.reports.html import render_html
    from pytest_advprune.reports.markdown import render_markdown

    document = _hostile_document()
    markdown = render_markdown(document)
    assert_inert_markdown(markdown)
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &lt;img src=x onerror=alert(1)&gt; a\\|b \\`c\\`" in markdown
    assert "## Needs attention (2)" in markdown and "## Accepted regressions" in markdown
    page = render_html(document)
    assert_inert_html(page, HOSTILE.split("\n")[0])
    assert "<h2>Figures</h2>" in page and page.count("<svg") == 1  # the heatmap, of the hostile names too


def test_stored_names_and_parameters_are_escaped_in_every_report(stored_folder: Path) -> None:
    from pytest_advprune.baselines import BaselineStore

    source = stored_folder / TARGET
    data = json.loads(source.read_text())
    data["cell"].update(model=HOSTILE, attack=f"fgsm_0.1_{HOSTILE}")
    data["provenance"]["attack"].update(name=HOSTILE, mode=HOSTILE)
    data["provenance"]["pruning"]["method"] = HOSTILE
    moved = BaselineStore(stored_folder).path_of(HOSTILE, "channel_0.5", f"fgsm_0.1_{HOSTILE}")
    moved.parent.mkdir(parents=True)
    moved.write_text(json.dumps(data))
    source.unlink()
    markdown = _report(stored_folder, "r.md")
    assert_inert_markdown(markdown)
    assert "### &lt;script&gt;alert(1)&lt;/script&gt;" in markdown  # the model's study table
    assert_inert_html(_report(stored_folder, "r.html"), HOSTILE.split("\n")[0])
    document = json.loads(_report(stored_folder, "r.json"))
    assert document["cells"][f"{HOSTILE}-channel_0.5-fgsm_0.1_{HOSTILE}"]["params"]["mode"] == HOSTILE
