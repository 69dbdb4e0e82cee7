"""The one name resolver: spellings, aliases, suggestions, ambiguity and config dicts."""

import difflib
import re

import pytest

from layers import naming
from recipes.train.distribute import STRATEGY_NAMES, canonical_strategy_name

OPTIMIZERS = naming.Names(
    "optimizer",
    ("GradientDescent", "Momentum", "ProximalAdagrad"),
    aliases={"sgd": "GradientDescent"},
)


@pytest.mark.parametrize(
    ("spelling", "canonical"),
    [
        ("Momentum", "Momentum"),
        ("momentum", "Momentum"),
        ("MOMENTUM", "Momentum"),
        (" Momentum ", "Momentum"),
        ("proximal-adagrad", "ProximalAdagrad"),
        ("proximal_adagrad", "ProximalAdagrad"),
        ("Proximal Adagrad", "ProximalAdagrad"),
        ("ProximalAdagrad", "ProximalAdagrad"),
        ("PROXIMAL--ADAGRAD", "ProximalAdagrad"),
        ("sgd", "GradientDescent"),
        ("SGD", "GradientDescent"),
    ],
)
def test_case_separators_and_aliases_are_ignored(spelling, canonical):
    assert OPTIMIZERS.resolve(spelling) == canonical
    assert spelling in OPTIMIZERS


def test_unknown_name_suggests_the_closest_and_lists_the_valid_ones():
    with pytest.raises(ValueError) as error:
        OPTIMIZERS.resolve("Momentun")
    message = str(error.value)
    assert message.startswith("Unknown optimizer 'Momentun'. Did you mean 'Momentum'?")
    assert "Valid names: GradientDescent, Momentum, ProximalAdagrad (aliases: sgd -> " in message


def test_the_suggestion_is_found_on_normalized_keys():
    typo = "PROXIMAL_ADAGRADD"
    # On the raw spellings the case difference alone puts every name below difflib's cutoff.
    assert difflib.get_close_matches(typo, OPTIMIZERS.names) == []
    assert OPTIMIZERS.closest(typo) == "ProximalAdagrad"
    assert OPTIMIZERS.closest("sgdd") == "sgd"


def test_equally_close_names_prefer_the_longer_shared_start():
    models = naming.Names("model", ("resnet56", "resnet32", "resnet20"))
    assert models.closest("resnet2") == "resnet20"
    assert models.closest("ResNet-5") == "resnet56"


def test_a_name_with_nothing_close_gets_no_suggestion():
    with pytest.raises(ValueError) as error:
        OPTIMIZERS.resolve("horovod")
    assert "Did you mean" not in str(error.value)
    assert OPTIMIZERS.find("horovod") is None


@pytest.mark.parametrize("value", [None, 3, ["Momentum"]])
def test_a_name_must_be_a_string(value):
    with pytest.raises(ValueError, match="Optimizer name must be a string. Received: "):
        OPTIMIZERS.resolve(value)


def test_names_that_collide_once_normalized_are_refused():
    with pytest.raises(ValueError, match="'flip_h' and 'FlipH' are the same name"):
        naming.Names("augmentation", ("flip_h", "FlipH"))
    with pytest.raises(ValueError, match="'crop' and 'Crop' are the same name"):
        naming.Names("augmentation", ("crop", "erase"), aliases={"Crop": "erase"})
    with pytest.raises(ValueError, match="alias 'cutout' names 'erasing', which is not a name"):
        naming.Names("augmentation", ("crop", "erase"), aliases={"cutout": "erasing"})


def test_ambiguous_names_resolve_only_when_spelled_exactly():
    names = naming.Names("dataset", ("movie_lens", "movielens", "mnist"), allow_ambiguous=True)
    assert names.resolve("movie_lens") == "movie_lens"
    assert names.resolve("movielens") == "movielens"
    assert names.resolve("MNIST") == "mnist"
    with pytest.raises(ValueError, match="'Movie-Lens' is ambiguous: .*movie_lens, movielens"):
        names.resolve("Movie-Lens")


def test_spelling_hook_widens_the_notation_but_messages_quote_the_input():
    names = naming.Names(
        "optimizer", ("Momentum",), spelling=lambda name: name.removeprefix("tf.train.")
    )
    assert names.resolve("tf.train.momentum") == "Momentum"
    with pytest.raises(ValueError, match=r"Unknown optimizer 'tf\.train\.Momentun'\. Did you mean"):
        names.resolve("tf.train.Momentun")


def test_valid_text_replaces_the_list_for_large_families():
    names = naming.Names("dataset", ("sample",), valid="Accepted: 'sample' or a folder.")
    with pytest.raises(
        ValueError, match=r"Did you mean 'sample'\? Accepted: 'sample' or a folder\.$"
    ):
        names.resolve("sampel")


def test_split_config_merges_options_given_beside_the_dict():
    name, options = naming.split_config("loss", {"name": "svm_hinge", "margin": 2.0}, {"a": 1})
    assert (name, options) == ("svm_hinge", {"margin": 2.0, "a": 1})
    with pytest.raises(ValueError, match="needs a 'name' entry"):
        naming.split_config("loss", {"margin": 2.0}, {})
    with pytest.raises(ValueError, match="option\\(s\\) margin given both in the config dict"):
        naming.split_config("loss", {"name": "svm_hinge", "margin": 2.0}, {"margin": 1.0})


def test_refuse_options_names_what_could_not_take_them():
    naming.refuse_options("loss", "a built loss", {})
    with pytest.raises(ValueError, match="Loss options margin cannot be applied to a built loss"):
        naming.refuse_options("loss", "a built loss", {"margin": 1.0})


# ------------------------------------------------------------------------------------------------
# Strategies (the other families are tested beside their own code)


@pytest.mark.parametrize(
    ("spelling", "canonical"),
    [
        ("Mirrored", "mirrored"),
        ("MIRRORED", "mirrored"),
        ("multi-worker", "multi_worker"),
        ("Multi Worker", "multi_worker"),
        ("MultiWorkerMirroredStrategy", "multi_worker"),
        ("tf.distribute.MirroredStrategy", "mirrored"),
        ("TPUStrategy", "tpu"),
        ("Default", "default"),
    ],
)
def test_strategy_spellings(spelling, canonical):
    assert canonical_strategy_name(spelling) == canonical


@pytest.mark.parametrize(("typo", "suggestion"), [("mirored", "mirrored"), ("TPUU", "tpu")])
def test_strategy_suggestions(typo, suggestion):
    with pytest.raises(ValueError, match=f"Did you mean '{suggestion}'") as error:
        canonical_strategy_name(typo)
    accepted = re.search(r"Accepted: (.*) \(", str(error.value)).group(1)
    assert accepted.split(", ") == list(STRATEGY_NAMES)


def test_unsupported_strategy_in_any_spelling_gives_the_reason():
    with pytest.raises(ValueError, match="not supported: .*ParameterServerStrategy"):
        canonical_strategy_name("ParameterServerStrategy")
