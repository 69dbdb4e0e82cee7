"""MODEL_CARD.md: written by the runner, rewritten by the export command, readable for old runs."""

import json
import shutil

import pytest

from recipes import lenet5_fashion_mnist as recipe
from recipes.export.__main__ import main as export_main
from recipes.train.config import CONFIG_FILE
from recipes.train.model_card import MODEL_CARD_FILE, render_model_card
from recipes.train.runner import recipe_main
from tests.conftest import REPO_ROOT

OLD_RUN = REPO_ROOT / "docs" / "runs" / "resnet20_cifar10-cos30-s0"


def test_runner_writes_the_card(trained_run):
    card = (trained_run / MODEL_CARD_FILE).read_text()
    metrics = json.loads((trained_run / "metrics.json").read_text())
    for section in ("Model", "Data", "Preprocessing", "Training", "Test metrics", "Reproduce"):
        assert f"\n## {section}\n" in card
    assert f"| test accuracy | {metrics['test_accuracy']:.4f} |" in card
    assert f"- Parameters: {metrics['parameters']:,}" in card
    assert "`per_channel`" in card and "`Ankle boot`" in card
    assert "None yet: `python -m recipes.export" in card
    xla = "on" if metrics["jit_compile"] else "off"
    assert f"- Execution: {metrics['precision']}, XLA {xla}, " in card


def test_reproduce_command_trains_the_same_configuration(trained_run, tmp_path, capsys):
    card = (trained_run / MODEL_CARD_FILE).read_text()
    command = card.split("## Reproduce\n\n```\n")[1].split("\n```")[0].split()
    assert command[:3] == ["python", "-m", "recipes.lenet5_fashion_mnist"]
    flags = [tmp_path / "again" if flag == "NEW_RUN_DIR" else flag for flag in command[3:]]
    assert (
        recipe_main(
            recipe.__name__.split(".")[-1],
            recipe.__doc__,
            recipe.DEFAULTS,
            [*map(str, flags), "--dry-run"],
        )
        == {}
    )
    printed = capsys.readouterr().out
    saved = json.loads((trained_run / CONFIG_FILE).read_text())
    resolved = json.loads(printed[: printed.index("\n}\n") + 2])
    assert resolved["run"]["out_dir"] == str(tmp_path / "again")
    resolved["run"].update(out_dir=saved["run"]["out_dir"], dry_run=False)
    assert resolved == saved


def test_old_run_with_metrics_only_gets_a_card(tmp_path, capsys):
    old = shutil.copytree(OLD_RUN, tmp_path / "old")
    export_main([str(old), "--card-only"])
    card = (old / MODEL_CARD_FILE).read_text()
    assert "| test accuracy, TTA flip | 0.9471 |" in card
    assert "keeps no config.json" in card and "`resnet20`" in card
    assert "- Execution:" not in card  # trained before the speed flags were recorded
    assert str(old / MODEL_CARD_FILE) in capsys.readouterr().out


def test_card_needs_the_configuration(tmp_path):
    with pytest.raises(ValueError, match="no `config` or `dataset` entry"):
        render_model_card(tmp_path, {"test_accuracy": 0.5})
