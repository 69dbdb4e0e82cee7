"""The run configuration: sections, layering, validation, flags and the flat format before sections."""

import json

import pytest

import zoo
from recipes.optim.schedules import TIMING_ARGUMENTS
from recipes.train.config import (
    CONFIG_FILE,
    RunConfig,
    build_parser,
    convert_flat_config,
    flat_items,
    option_key,
    resolve_config,
    saved_run_config,
)
from tests.conftest import REPO_ROOT

LEGACY_FLAT_CONFIG = REPO_ROOT / "tests" / "data" / "legacy_flat_config.json"


def test_layers_defaults_recipe_file_and_flags(tmp_path):
    config_file = tmp_path / "c.yaml"
    config_file.write_text(
        "optim:\n  lr: 1e-3\n  options: {beta: 2}\nrun:\n  epochs: 7\n"
        "model:\n  knobs: {activation: tanh}\n"
    )
    recipe = {
        "model": {"name": "mlp", "knobs": {"init": "xavier"}},
        "optim": {"lr": 0.1, "options": {"momentum": 0.5}},
        "run": {"epochs": 3},
    }
    argv = ["--config", str(config_file), "--epochs", "2", "--opt", "momentum=0.8"]
    config = resolve_config(recipe, argv, prog="test", description="")

    assert config.model.name == "mlp"  # recipe over defaults
    assert config.optim.lr == 0.001  # file over recipe; YAML's "1e-3" string is a number
    assert config.run.epochs == 2  # flag over file
    assert config.model.knobs == {"init": "xavier", "activation": "tanh"}  # merged key by key
    assert config.optim.options == {"momentum": 0.8, "beta": 2}
    assert config.run.batch_size == RunConfig().run.batch_size  # untouched default


def test_flags_key_values_aliases_and_negations():
    argv = [
        "--weight-decay", "1e-4", "--model-option", "depth=3", "--image-size", "32x24",
        "--backbone", "mobilenet", "--model-option", "alpha=0.25", "--negative-slope", "0.2",
        "--no-balance-classes", "--sync-bn",
    ]  # fmt: skip
    config = resolve_config({"data": {"balance_classes": True}}, argv, "test", "")
    assert config.model.knobs == {"l2": 1e-4, "negative_slope": 0.2}
    assert config.model.options == {"depth": 3, "alpha": 0.25}
    assert config.model.name == "mobilenet"
    assert config.data.image_size == (32, 24)
    assert config.data.balance_classes is False and config.distribute.sync_bn is True


def test_no_flag_means_two_things(capsys):
    # The leaky-ReLU slope is a knob (--negative-slope); MobileNet's width is a model option.
    with pytest.raises(SystemExit):
        resolve_config({}, ["--alpha", "0.25"], "test", "")
    assert "unrecognized arguments: --alpha" in capsys.readouterr().err
    flags = [f for action in build_parser("t", "")._actions for f in action.option_strings]
    assert len(flags) == len(set(flags))


def test_every_flag_says_what_it_is_and_its_recipe_default():
    recipe = RunConfig.from_dict({"model": {"knobs": {"activation": "tanh"}}, "optim": {"lr": 0.3}})
    parser = build_parser("test", "", recipe)
    helps = {
        action.option_strings[0]: action.help
        for action in parser._actions
        if action.option_strings
        and action.option_strings[0] not in ("-h", "--config", "--traceback")
    }
    for flag, text in helps.items():
        assert "(default: " in text, flag
        assert len(text) > len("(default: x)") + 10, flag  # says what it is, not only the default
    assert helps["--lr"].endswith("(default: 0.3)")
    assert helps["--activation"].endswith("(default: tanh)")
    assert "negative inputs" in helps["--negative-slope"]
    assert "the model's own (library: 0.01)" in helps["--negative-slope"]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"optim": {"lr": -1}}, r"`optim.lr` must be a number > 0. Received: optim.lr=-1"),
        ({"optim": {"lr": True}}, r"Received: optim.lr=True"),
        ({"run": {"epochs": 2.5}}, r"`run.epochs` must be an integer >= 1"),
        ({"run": {"verbose": 3}}, r"`run.verbose` must be one of 0, 1, 2"),
        ({"data": {"preprocessing": "zca"}}, r"one of 'scale', 'mean_image'.*preprocessing='zca'"),
        ({"data": {"image_size": [32]}}, r"`data.image_size` must be a tuple of length 2"),
        ({"model": {"fine_tune": "partial"}}, r"'predict', 'head', 'full'"),
        ({"model": {"knobs": {"activaton": "relu"}}}, r"'activaton'.*Did you mean activation"),
        ({"model": {"knobs": {"dropout": 1.5}}}, r"model.knobs: .*dropout"),
        ({"optim": {"lrr": 0.1}}, r"Unknown option 'lrr' in section `optim`.*Did you mean lr"),
        ({"batch_szie": 3}, r"Unknown option 'batch_szie' in config. Did you mean batch_size"),
        ({"run": "fast"}, r"section `run` in .* must be a mapping"),
        ({"distribute": {"sync_bn": "yes"}}, r"`distribute.sync_bn` must be True or False"),
        (
            {
                "model": {"fine_tune": "full", "head_epochs": 5},
                "data": {"preprocessing": "none"},
                "run": {"epochs": 5},
            },
            r"head_epochs must be below run.epochs",
        ),
        ({"model": {"name": "mobilenet", "fine_tune": "head"}}, r"preprocessing must be 'none'"),
        ({"model": {"fine_tune": "head"}}, r"`fine_tune` starts from trained weights"),
        ({"run": {"precision": "float16"}}, r"'auto', 'float32', .*run.precision='float16'"),
        ({"run": {"jit_compile": "yes"}}, r"'auto', 'on', 'off'. Received: run.jit_compile='yes'"),
        (
            {"run": {"steps_per_execution": 0}},
            r"`run.steps_per_execution` must be an integer >= 1 or 'auto'. Received: .*=0",
        ),
        ({"run": {"steps_per_execution": 2.5}}, r"run.steps_per_execution=2.5"),
        ({"run": {"steps_per_execution": "many"}}, r"run.steps_per_execution='many'"),
    ],
)
def test_bad_values_name_the_key_the_value_and_what_is_accepted(values, message):
    with pytest.raises(ValueError, match=message):
        RunConfig.from_dict(values)


@pytest.mark.parametrize("timing_argument", TIMING_ARGUMENTS)
def test_schedule_options_refuse_each_timing_argument_naming_its_setting(timing_argument):
    optim = {"schedule": "cosine", "schedule_options": {timing_argument: 3}}
    with pytest.raises(
        ValueError, match=rf"cannot set '{timing_argument}': the run sets it from \w"
    ):
        RunConfig.from_dict({"optim": optim})


def test_unknown_keys_in_files_and_flags(tmp_path, capsys):
    config_file = tmp_path / "c.json"
    config_file.write_text(json.dumps({"optim": {"learning_rate": 0.1}}))
    with pytest.raises(ValueError, match="'learning_rate'"):
        resolve_config({}, ["--config", str(config_file)], "test", "")
    with pytest.raises(SystemExit):
        resolve_config({}, ["--batch-szie", "3"], "test", "")
    assert "did you mean --batch-size" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        resolve_config({}, ["--opt", "momentum"], "test", "")


def test_saved_form_round_trips():
    config = resolve_config(
        {}, ["--image-size", "32", "--opt", "momentum=0.9", "--l2", "1e-4"], "test", ""
    )
    saved = json.loads(json.dumps(config.to_dict()))
    assert list(saved) == ["data", "model", "optim", "run", "distribute"]
    assert saved["data"]["image_size"] == [32, 32]
    assert RunConfig.from_dict(saved) == config


def test_flat_config_files_from_before_the_sections_still_load():
    flat = json.loads(LEGACY_FLAT_CONFIG.read_text())
    config = RunConfig.from_dict(flat, str(LEGACY_FLAT_CONFIG))

    assert config.model.name == "lenet5"
    # The flat format's top-level `alpha` was the leaky-ReLU slope.
    assert config.model.knobs == {"activation": "leaky_relu", "negative_slope": 0.2, "init": "he"}
    assert config.optim.options == {"momentum": 0.9, "use_nesterov": True}
    assert (config.optim.schedule, config.optim.lr) == ("cosine", 0.05)
    assert (config.run.batch_size, config.run.epochs, config.data.dataset) == (64, 1, "sample")
    # Every flat option survives the conversion, and converts back unchanged.
    converted = flat_items(config)
    for key, value in flat.items():
        assert converted["negative_slope" if key == "alpha" else key] == value, key


def test_flat_model_options_keep_mobilenet_width_apart_from_the_knob():
    sectioned = convert_flat_config({"model": "mobilenet", "model_options": {"alpha": 0.25}})
    assert sectioned == {"model": {"name": "mobilenet", "options": {"alpha": 0.25}}}


def test_flat_lenet5_pooling_is_its_subsampling_and_still_builds():
    flat = {"model": "lenet5", "model_options": {"pooling": "max"}}
    sectioned = convert_flat_config(flat)
    assert sectioned == {"model": {"name": "lenet5", "options": {"subsampling": "max"}}}
    config = resolve_config(sectioned, [], "t", "")
    model = zoo.create("lenet5", input_shape=(28, 28, 1), num_classes=10, **config.model.options)
    assert model.output_shape == (None, 10)


def test_resume_reads_a_run_directory_written_in_the_flat_format(tmp_path):
    (tmp_path / CONFIG_FILE).write_text(LEGACY_FLAT_CONFIG.read_text())
    saved = saved_run_config(tmp_path)
    assert saved.model.knobs["negative_slope"] == 0.2

    resumed = resolve_config({}, ["--out-dir", str(tmp_path), "--resume"], "t", "")
    assert resumed.model == saved.model and resumed.optim == saved.optim
    assert resumed.run.out_dir == str(tmp_path) and resumed.run.resume
    with pytest.raises(ValueError, match=r"model.knobs \(saved"):
        resolve_config({}, ["--out-dir", str(tmp_path), "--resume", "--l2", "0.1"], "t", "")


def test_resume_takes_the_saved_config_and_refuses_changes(tmp_path):
    started = resolve_config(
        {"model": {"name": "mlp"}},
        ["--epochs", "7", "--image-size", "32", "--out-dir", str(tmp_path)],
        "test",
        "",
    )
    (tmp_path / CONFIG_FILE).write_text(json.dumps(started.to_dict()))

    resumed = resolve_config(
        {}, ["--out-dir", str(tmp_path), "--resume", "--verbose", "0"], "t", ""
    )
    assert resumed.model.name == "mlp" and resumed.run.epochs == 7
    assert resumed.data.image_size == (32, 32) and resumed.run.verbose == 0 and resumed.run.resume
    # How the final model is evaluated is not part of training, so it may change.
    flip = resolve_config({}, ["--out-dir", str(tmp_path), "--resume", "--tta", "flip"], "t", "")
    assert flip.run.tta == "flip" and flip.run.epochs == 7
    # Repeating the original command is fine: nothing changes.
    again = ["--epochs", "7", "--image-size", "32", "--out-dir", str(tmp_path), "--resume"]
    assert resolve_config({"model": {"name": "mlp"}}, again, "t", "").run.epochs == 7

    with pytest.raises(ValueError, match=r"differ: run.epochs \(saved 7, given 9\)") as error:
        resolve_config({}, ["--out-dir", str(tmp_path), "--resume", "--epochs", "9"], "t", "")
    assert "another --out-dir" in str(error.value)
    with pytest.raises(ValueError, match="optim.options"):
        resolve_config({}, ["--out-dir", str(tmp_path), "--resume", "--opt", "beta=1"], "t", "")


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("lr", "optim.lr"),
        ("batch-size", "run.batch_size"),
        ("l2", "model.knobs.l2"),
        ("model", "model.name"),
        ("lr_schedule", "optim.schedule"),
        ("optimizer_options.momentum", "optim.options.momentum"),
        ("model_options.alpha", "model.options.alpha"),
        ("loss_options.label_smoothing", "optim.loss_options.label_smoothing"),
        ("optim.options.momentum", "optim.options.momentum"),
        ("model.knobs.dropout", "model.knobs.dropout"),
    ],
)
def test_option_key_accepts_flat_dotted_and_flag_spellings(name, key):
    assert option_key(name) == key


def test_option_key_refuses_unknown_names_with_a_suggestion():
    with pytest.raises(ValueError, match=r"'model.knobs.l3'.*Accepted: data.dataset"):
        option_key("model.knobs.l3")
    with pytest.raises(ValueError, match="Did you mean batch_size"):
        option_key("batch_szie")


def test_updated_returns_a_checked_copy():
    config = RunConfig()
    changed = config.updated({"optim.lr": 0.5, "model.knobs.l2": 1e-3, "epochs": 4})
    assert (changed.optim.lr, changed.model.knobs, changed.run.epochs) == (0.5, {"l2": 1e-3}, 4)
    assert config.optim.lr == 0.01 and config.model.knobs == {}
    assert changed.updated({"model.knobs.l2": None}).model.knobs == {}
    with pytest.raises(ValueError, match="optim.lr"):
        config.updated({"lr": 0})


def test_execution_settings_from_flags_and_files(tmp_path):
    config = resolve_config({}, [], "t", "")
    assert (config.run.precision, config.run.jit_compile) == ("auto", "auto")
    assert config.run.steps_per_execution == "auto"
    argv = ["--precision", "mixed_float16", "--jit-compile", "on", "--steps-per-execution", "8"]
    config = resolve_config({}, argv, "t", "")
    assert (config.run.precision, config.run.jit_compile) == ("mixed_float16", "on")
    assert config.run.steps_per_execution == 8
    assert (
        resolve_config({}, ["--steps-per-execution", "AUTO"], "t", "").run.steps_per_execution
        == "auto"
    )
    # YAML reads on/off as booleans: they mean the same.
    config_file = tmp_path / "c.yaml"
    config_file.write_text("run: {jit_compile: off, steps_per_execution: 4}\n")
    config = resolve_config({}, ["--config", str(config_file)], "t", "")
    assert (config.run.jit_compile, config.run.steps_per_execution) == ("off", 4)


def test_a_run_directory_from_before_the_execution_settings_resumes_as_it_trained(tmp_path):
    """Without them in config.json a run trained in float32, without XLA, one step per call:
    it resumes so, not with today's auto defaults. XLA and steps per call may change on resume;
    the precision may not."""
    saved = RunConfig().to_dict()
    for key in ("precision", "jit_compile", "steps_per_execution"):
        del saved["run"][key]
    (tmp_path / CONFIG_FILE).write_text(json.dumps(saved))
    resumed = resolve_config({}, ["--out-dir", str(tmp_path), "--resume"], "t", "")
    assert (resumed.run.precision, resumed.run.jit_compile) == ("float32", "off")
    assert resumed.run.steps_per_execution == 1
    argv = [
        "--out-dir",
        str(tmp_path),
        "--resume",
        "--jit-compile",
        "on",
        "--steps-per-execution",
        "auto",
    ]
    changed = resolve_config({}, argv, "t", "")
    assert (changed.run.jit_compile, changed.run.steps_per_execution) == ("on", "auto")
    with pytest.raises(
        ValueError, match=r"run.precision \(saved 'float32', given 'mixed_bfloat16'\)"
    ):
        resolve_config(
            {}, ["--out-dir", str(tmp_path), "--resume", "--precision", "mixed_bfloat16"], "t", ""
        )

    # The flat format before sections had none of them either.
    (tmp_path / CONFIG_FILE).write_text(LEGACY_FLAT_CONFIG.read_text())
    flat = saved_run_config(tmp_path)
    assert (flat.run.precision, flat.run.jit_compile, flat.run.steps_per_execution) == (
        "float32",
        "off",
        1,
    )
