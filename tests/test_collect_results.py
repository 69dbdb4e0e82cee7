"""scripts/collect_results.py on real run directories written by a recipe."""

import json
import shutil

import pytest

from scripts import collect_results, evaluate_run
from tests.conftest import REPO_ROOT, run_recipe


@pytest.fixture(scope="module")
def run_dirs(tmp_path_factory):
    """Three one-epoch LeNet-5 runs on the sample: seeds 0 and 1 of the defaults (evaluated again
    with flip TTA afterwards), one with tanh."""
    root = tmp_path_factory.mktemp("runs")
    for name, flags in (
        ("s0", ("--seed", "0")),
        ("s1", ("--seed", "1")),
        ("tanh", ("--activation", "tanh")),
    ):
        run_recipe(
            "lenet5_fashion_mnist",
            "--dataset",
            "sample",
            "--epochs",
            "1",
            "--out-dir",
            str(root / name),
            "--verbose",
            "0",
            *flags,
        )
    for name in ("s0", "s1"):
        evaluate_run.evaluate_run(root / name, "flip", {})
    return root


def trained_in(run_dir):
    """What the changes column says of the precision a default (`auto`) run trained in here."""
    used = json.loads((run_dir / "metrics.json").read_text())["precision"]
    return "defaults" if used == "float32" else f"trained in {used}"


def test_seeds_pool_into_one_row_and_changes_are_named(run_dirs):
    groups = collect_results.load_runs(sorted(run_dirs.iterdir()))
    lines = collect_results.markdown_table(groups).splitlines()
    header, rows = lines[0], lines[2:]
    columns = [cell.strip() for cell in header.strip("|").split("|")]
    table = [
        dict(zip(columns, (c.strip() for c in row.strip("|").split("|")), strict=True))
        for row in rows
    ]
    by_seeds = {row["seeds"]: row for row in table}
    assert len(table) == 2 and set(by_seeds) == {"1", "2"}

    pooled, single = by_seeds["2"], by_seeds["1"]
    assert pooled["recipe"] == "lenet5_fashion_mnist" and pooled["dataset"] == "sample"
    assert pooled["changed from the recipe's defaults"] == trained_in(run_dirs / "s0")
    seed_accuracies = [
        run["test_accuracy"] for runs in groups.values() if len(runs) == 2 for run in runs
    ]
    mean, spread = (float(x) for x in pooled["test accuracy"].split(" ± "))
    assert mean == pytest.approx(sum(seed_accuracies) / 2, abs=6e-5)
    assert spread == pytest.approx(abs(seed_accuracies[0] - seed_accuracies[1]) / 2, abs=6e-5)
    tta_accuracies = [
        run["test_accuracy_tta"] for runs in groups.values() if len(runs) == 2 for run in runs
    ]
    tta_mean, tta_spread = (
        pooled["with test-time augmentation"].removesuffix(" (flip)").split(" ± ")
    )
    assert float(tta_mean) == pytest.approx(sum(tta_accuracies) / 2, abs=6e-5)
    assert float(tta_spread) == pytest.approx(
        abs(tta_accuracies[0] - tta_accuracies[1]) / 2, abs=6e-5
    )
    assert single["with test-time augmentation"] == "-"
    precision = trained_in(run_dirs / "tanh")
    assert single["changed from the recipe's defaults"] == (
        "activation=tanh" if precision == "defaults" else f"activation=tanh, {precision}"
    )
    assert single["epochs"] == "1" and single["parameters"] == "61,706"


def test_unfinished_runs_are_skipped_and_nothing_finished_is_an_error(run_dirs, tmp_path, capsys):
    empty = tmp_path / "unfinished"
    empty.mkdir()
    groups = collect_results.load_runs([empty, run_dirs / "s0"])
    assert len(groups) == 1
    assert "skipping" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        collect_results.main([str(empty)])
    assert "none of the given directories" in capsys.readouterr().err


def test_results_doc_table_is_what_the_script_prints_from_the_kept_runs():
    """docs/RESULTS.md says its table is exactly collect_results' output over docs/runs/*."""
    docs = REPO_ROOT / "docs"
    groups = collect_results.load_runs(sorted((docs / "runs").iterdir()))
    table = collect_results.markdown_table(groups)
    assert table in (docs / "RESULTS.md").read_text()


def test_a_seed_run_again_counts_as_a_run_not_as_another_seed(run_dirs, tmp_path):
    again = tmp_path / "s0-again"
    shutil.copytree(run_dirs / "s0", again)
    groups = collect_results.load_runs([run_dirs / "s0", run_dirs / "s1", again])
    (row,) = collect_results.markdown_table(groups).splitlines()[2:]
    assert "| 2 (3 runs) |" in row


def test_runs_in_another_precision_get_a_row_of_their_own(run_dirs, tmp_path):
    """`--precision auto` trains in mixed_bfloat16 on a CPU with native bfloat16 and in float32
    on one without: the same command on the other machine is another experiment."""
    other = tmp_path / "s1-other-machine"
    shutil.copytree(run_dirs / "s1", other)
    metrics_path = other / "metrics.json"
    metrics = json.loads(metrics_path.read_text())
    assert metrics["config"]["run"]["precision"] == "auto"
    here = metrics["precision"]
    metrics["precision"] = "float32" if here == "mixed_bfloat16" else "mixed_bfloat16"
    metrics_path.write_text(json.dumps(metrics))
    groups = collect_results.load_runs([run_dirs / "s0", other])
    rows = collect_results.markdown_table(groups).splitlines()[2:]
    assert len(rows) == 2
    assert sorted(row.rsplit("|", 2)[1].strip() for row in rows) == [
        "defaults",
        "trained in mixed_bfloat16",
    ]
