"""Augmentation pipelines: what each op does, seeding, grayscale safety, spec parsing, presets."""

import dataclasses
import re
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

from recipes.data import augment_ops
from recipes.data.augment import OPS, PRESETS, build_augmentation, parse_augment_spec

RNG = np.random.default_rng(3)
SHAPE = (12, 12, 3)
IMAGES = RNG.random((16, *SHAPE)).astype("float32")
LABELS = np.arange(16, dtype="int64") % 4
# Mid-grey images keep brightness/contrast/noise away from the [0, 1] clip.
MID_IMAGES = (0.4 + 0.2 * RNG.random((16, *SHAPE))).astype("float32")
LABEL_PRESERVING = [name for name, op in OPS.items() if not op.changes_labels]


def run(spec, images=IMAGES, labels=LABELS, seed=0, **kwargs):
    kwargs.setdefault("adapt_data", IMAGES)
    aug = build_augmentation(spec, images.shape[1:], seed=seed, **kwargs)
    out_images, out_labels = aug(tf.constant(images), tf.constant(labels))
    return out_images.numpy(), out_labels.numpy()


def batch_dataset(images=IMAGES, labels=LABELS, batch=4):
    return tf.data.Dataset.from_tensor_slices((images, labels)).batch(batch)


@pytest.mark.parametrize("name", LABEL_PRESERVING)
def test_every_label_preserving_op_changes_images_but_not_labels(name):
    spec = {"blur": "blur:prob=1", "erase": "erase:prob=1"}.get(name, name)
    out, labels = run(spec)
    assert out.shape == IMAGES.shape and out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 1.0
    assert not np.allclose(out, IMAGES, atol=1e-3)
    np.testing.assert_array_equal(labels, LABELS)


@pytest.mark.parametrize(("spec", "axis"), [("flip_h", 2), ("flip_v", 1)])
def test_flips_mirror_some_images_and_keep_the_rest(spec, axis):
    out, _ = run(spec)
    flipped = [np.array_equal(o, np.flip(x, axis - 1)) for o, x in zip(out, IMAGES, strict=True)]
    kept = [np.array_equal(o, x) for o, x in zip(out, IMAGES, strict=True)]
    assert all(f or k for f, k in zip(flipped, kept, strict=True))
    assert any(flipped) and any(kept)


@pytest.mark.parametrize(("spec", "mode"), [("flip_h", "horizontal"), ("flip_v", "vertical")])
@pytest.mark.parametrize("shape", [(16, 12, 12, 3), (5, 7, 4, 1)])
def test_flips_give_what_the_keras_layer_gives_for_the_same_seed(spec, mode, shape):
    images = RNG.random(shape).astype("float32")
    layer = augment_ops.KerasLayerOp(keras.layers.RandomFlip(mode))
    for seed in range(3):
        batch_seed = tf.constant([seed, 1], tf.int64)
        ours = build_augmentation(spec, shape[1:]).augment(images, LABELS[: shape[0]], batch_seed)
        keras_images, _ = layer(tf.constant(images), None, augment_ops.SeedStream(batch_seed))
        np.testing.assert_array_equal(ours[0], keras_images)


@pytest.mark.parametrize("mode", ["constant", "reflect"])
def test_one_channel_crop_takes_the_windows_of_the_several_channel_crop(mode):
    """Single-channel images are cropped through transposes: same offsets, same windows."""
    batch_seed = tf.constant([4, 5], tf.int64)
    grey = build_augmentation(f"crop:3:{mode}", (12, 12, 1)).augment(
        IMAGES[..., :1], LABELS, batch_seed
    )
    rgb = build_augmentation(f"crop:3:{mode}", SHAPE).augment(IMAGES, LABELS, batch_seed)
    np.testing.assert_array_equal(grey[0].numpy(), rgb[0].numpy()[..., :1])


@pytest.mark.parametrize(("flip", "mode"), [("flip_h", "horizontal"), ("flip_v", "vertical")])
def test_fast_flip_and_grey_crop_in_tf_data_match_the_keras_flip_and_rgb_crop(flip, mode):
    """In a real tf.data pipeline (graph mode, unknown batch size, a short last batch, two
    epochs), the flip and the one-channel crop give what the Keras `RandomFlip` layer followed by
    the several-channel crop gives for the same seeds: same draws per image, same outputs."""
    grey = RNG.random((22, 12, 12, 1)).astype("float32")
    labels = np.arange(22, dtype="int64")
    spec = f"{flip},crop:3"
    ours = build_augmentation(spec, grey.shape[1:], seed=7)
    reference = build_augmentation(spec, (12, 12, 3), seed=7)
    reference.ops = (augment_ops.KerasLayerOp(keras.layers.RandomFlip(mode)), reference.ops[1])
    ours_ds = ours.apply_to(tf.data.Dataset.from_tensor_slices((grey, labels)).batch(8))
    rgb = np.repeat(grey, 3, axis=-1)
    reference_ds = reference.apply_to(tf.data.Dataset.from_tensor_slices((rgb, labels)).batch(8))
    epochs = [collect(ours_ds) for _ in range(2)]
    for epoch in epochs:
        np.testing.assert_array_equal(epoch, collect(reference_ds)[..., :1])
    assert not np.array_equal(epochs[0], epochs[1])
    # Each image its own draw: some images of the first batch mirrored, others not.
    axis = 2 if flip == "flip_h" else 1
    first = build_augmentation(flip, grey.shape[1:], seed=7).apply_to(
        tf.data.Dataset.from_tensor_slices((grey, labels)).batch(8)
    )
    batch = next(iter(first))[0].numpy()
    mirrored = [
        np.array_equal(out, np.flip(x, axis - 1)) for out, x in zip(batch, grey[:8], strict=True)
    ]
    kept = [np.array_equal(out, x) for out, x in zip(batch, grey[:8], strict=True)]
    assert all(m or k for m, k in zip(mirrored, kept, strict=True)) and any(mirrored) and any(kept)


@pytest.mark.parametrize("mode", ["constant", "reflect"])
def test_padded_crop_is_an_integer_shift_within_the_padding(mode):
    pad = 2
    out, _ = run(f"crop:{pad}:{mode}")
    np_mode = "constant" if mode == "constant" else "reflect"
    offsets = set()
    for o, x in zip(out, IMAGES, strict=True):
        padded = np.pad(x, [(pad, pad), (pad, pad), (0, 0)], mode=np_mode)
        matches = [
            (dy, dx)
            for dy in range(2 * pad + 1)
            for dx in range(2 * pad + 1)
            if np.array_equal(o, padded[dy : dy + SHAPE[0], dx : dx + SHAPE[1]])
        ]
        assert matches, "every output must be a window of the padded image"
        offsets.add(matches[0])
    assert len(offsets) > 1, "offsets are drawn per image"


def test_resized_crop_without_scale_or_ratio_jitter_is_the_identity():
    out, _ = run("resized_crop:min_scale=1:max_ratio=1")
    np.testing.assert_allclose(out, IMAGES, atol=1e-5)


def test_affine_keeps_the_centre_pixel_when_not_translating():
    images = np.zeros((8, 13, 13, 1), "float32")
    images[:, 6, 6, 0] = 1.0
    out, _ = run("affine:degrees=40:scale=0.3:shear=0.3:translate=0", images, LABELS[:8])
    np.testing.assert_allclose(out[:, 6, 6, 0], 1.0, atol=1e-5)
    assert not np.allclose(out, images)


def test_affine_without_jitter_is_the_identity():
    out, _ = run("affine:0:0:0:0")
    np.testing.assert_allclose(out, IMAGES, atol=1e-5)


def test_brightness_adds_one_offset_per_image_within_delta():
    out, _ = run("brightness:0.1", MID_IMAGES)
    shifts = (out - MID_IMAGES).reshape(len(out), -1)
    np.testing.assert_allclose(shifts, shifts[:, :1].repeat(shifts.shape[1], 1), atol=1e-5)
    assert np.all(np.abs(shifts[:, 0]) <= 0.1 + 1e-5)
    assert np.ptp(shifts[:, 0]) > 0


def test_contrast_keeps_each_channel_mean():
    out, _ = run("contrast:0.3", MID_IMAGES)
    np.testing.assert_allclose(out.mean(axis=(1, 2)), MID_IMAGES.mean(axis=(1, 2)), atol=1e-5)


@pytest.mark.parametrize("spec", ["saturation:0.5", "hue:0.3"])
def test_colour_ops_leave_grey_pixels_alone_and_change_coloured_ones(spec):
    grey = np.repeat(MID_IMAGES[..., :1], 3, axis=-1)
    out_grey, _ = run(spec, grey)
    np.testing.assert_allclose(out_grey, grey, atol=1e-5)
    out_colour, _ = run(spec)
    assert not np.allclose(out_colour, IMAGES, atol=1e-3)


def test_gaussian_noise_has_the_requested_spread():
    out, _ = run("noise:0.05", MID_IMAGES)
    noise = out - MID_IMAGES
    assert abs(noise.mean()) < 0.005
    assert noise.std() == pytest.approx(0.05, rel=0.1)


def test_blur_with_probability_one_smooths_every_image():
    out, _ = run("blur:sigma=1:prob=1")
    variation = np.abs(np.diff(out, axis=2)).mean(axis=(1, 2, 3))
    original = np.abs(np.diff(IMAGES, axis=2)).mean(axis=(1, 2, 3))
    assert np.all(variation < original)


def test_erase_replaces_one_box_no_larger_than_max_area():
    out, _ = run("erase:prob=1:max_area=0.25")
    changed = np.any(out != IMAGES, axis=-1)
    fractions = changed.mean(axis=(1, 2))
    assert np.all(fractions > 0) and np.all(fractions <= 0.25 + 1e-6)
    for mask in changed:
        rows, cols = np.nonzero(mask)
        box = mask[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
        assert box.mean() > 0.9, "the erased pixels form a box"


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("adapt", ["array", "labelled batches", "single images"])
def test_erase_with_fill_mean_fills_the_box_with_the_training_images_mean_colour(channels, adapt):
    training = RNG.random((10, 12, 12, channels)).astype("float32")
    adapt_data = {
        "array": training,
        "labelled batches": batch_dataset(training, LABELS[:10], batch=3),
        "single images": tf.data.Dataset.from_tensor_slices(training),
    }[adapt]
    images = IMAGES[..., :channels]
    out, _ = run("erase:prob=1:fill=mean", images, adapt_data=adapt_data)
    changed = np.any(out != images, axis=-1)
    assert changed.any(axis=(1, 2)).all()
    erased = out[changed]  # (pixels, channels)
    expected = training.reshape(-1, channels).mean(axis=0)
    np.testing.assert_allclose(erased, np.broadcast_to(expected, erased.shape), atol=1e-6)


def test_erase_with_fill_mean_needs_adapt_data_and_one_or_three_channels():
    with pytest.raises(ValueError, match=r"erase.*fill='mean'.*adapt_data"):
        build_augmentation("erase:fill=mean", SHAPE, adapt_data=None)
    two_channels = RNG.random((4, 12, 12, 2)).astype("float32")
    with pytest.raises(ValueError, match=r"1 or 3 channels.*\(12, 12, 2\)"):
        build_augmentation("erase:fill=mean", (12, 12, 2), adapt_data=two_channels)
    with pytest.raises(ValueError, match=r"fill.*'noise', 'mean'.*fill='zero'"):
        build_augmentation("erase:fill=zero", SHAPE)


def test_pca_jitter_shifts_every_pixel_of_an_image_by_one_colour():
    out, _ = run("pca_jitter:0.5", MID_IMAGES, adapt_data=IMAGES)
    shifts = (out - MID_IMAGES).reshape(len(out), -1, 3)
    np.testing.assert_allclose(shifts, shifts[:, :1, :].repeat(shifts.shape[1], 1), atol=1e-5)
    assert np.abs(shifts).max() > 0


def test_pca_jitter_needs_adapt_data_and_accepts_a_labelled_dataset():
    with pytest.raises(ValueError, match=r"pca_jitter.*adapt_data"):
        build_augmentation("pca_jitter", SHAPE, adapt_data=None)
    aug = build_augmentation("pca_jitter", SHAPE, adapt_data=batch_dataset())
    assert aug.spec == "pca_jitter:sigma=0.1"


def test_mixup_blends_images_and_labels_into_soft_one_hot():
    out, labels = run("mixup:0.4", num_classes=4)
    assert labels.shape == (16, 4) and labels.dtype == np.float32
    np.testing.assert_allclose(labels.sum(axis=-1), 1.0, atol=1e-6)
    assert np.any((labels > 0.01) & (labels < 0.99))
    assert not np.allclose(out, IMAGES)


def test_cutmix_pastes_pixels_from_other_images_of_the_batch():
    out, labels = run("cutmix", num_classes=4)
    np.testing.assert_allclose(labels.sum(axis=-1), 1.0, atol=1e-6)
    for o in out:
        from_batch = np.any(np.all(o[None] == IMAGES, axis=-1), axis=0)
        assert from_batch.all(), "every pixel comes from some image of the batch"
    assert not np.allclose(out, IMAGES)


def test_label_mixing_pipelines_report_it_and_need_num_classes():
    assert build_augmentation("mixup", SHAPE, num_classes=4).changes_labels
    assert not build_augmentation("standard", SHAPE).changes_labels
    with pytest.raises(ValueError, match=r"'cutmix' mixes labels.*num_classes"):
        build_augmentation("cutmix", SHAPE)


def test_label_mixing_needs_a_batch():
    aug = build_augmentation("mixup", SHAPE, num_classes=4, seed=0)
    with pytest.raises(ValueError, match="batch the data"):
        aug(tf.constant(IMAGES[0]), tf.constant(LABELS[0]))


def test_unbatched_elements_are_augmented_too():
    aug = build_augmentation("flip_h,crop:2,color_jitter:0.3", SHAPE, seed=1)
    dataset = tf.data.Dataset.from_tensor_slices((IMAGES, LABELS)).map(aug)
    images, labels = zip(*dataset.as_numpy_iterator(), strict=True)
    assert np.stack(images).shape == IMAGES.shape
    np.testing.assert_array_equal(labels, LABELS)
    assert not np.allclose(np.stack(images), IMAGES)


def collect(dataset):
    return np.concatenate([images for images, _ in dataset.as_numpy_iterator()])


@pytest.mark.parametrize("form", ["map", "apply_to"])
def test_same_seed_same_output_other_seed_different(form):
    spec = "flip_h,crop:2,affine,color_jitter:0.3,noise:0.02,erase,mixup"

    def pipeline(seed):
        aug = build_augmentation(spec, SHAPE, seed=seed, num_classes=4)
        if form == "map":
            return batch_dataset().map(aug, num_parallel_calls=tf.data.AUTOTUNE)
        return aug.apply_to(batch_dataset())

    first, again, other = collect(pipeline(5)), collect(pipeline(5)), collect(pipeline(6))
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, other)


def test_parallel_map_matches_sequential_map():
    aug = build_augmentation("light,affine,noise:0.05", SHAPE, seed=2)
    parallel = batch_dataset(batch=2).map(aug, num_parallel_calls=tf.data.AUTOTUNE)
    np.testing.assert_array_equal(collect(parallel), collect(batch_dataset(batch=2).map(aug)))


def test_apply_to_draws_afresh_each_epoch_reproducibly():
    def epochs(seed):
        dataset = build_augmentation("crop:2,noise:0.05", SHAPE, seed=seed).apply_to(
            batch_dataset()
        )
        return collect(dataset), collect(dataset)

    first_epoch, second_epoch = epochs(4)
    assert not np.allclose(first_epoch, second_epoch)
    again = epochs(4)
    np.testing.assert_array_equal(first_epoch, again[0])
    np.testing.assert_array_equal(second_epoch, again[1])


def test_apply_to_runs_before_and_after_in_the_same_map_call():
    aug = build_augmentation("light,noise:0.05", SHAPE, seed=3)
    uint8 = batch_dataset(images=(IMAGES * 255).astype("uint8"))

    def to_float(images, labels):
        return tf.cast(images, tf.float32) / 255.0, labels

    def centred(images, labels):
        return images - 0.5, labels + 1

    fused = list(aug.apply_to(uint8, before=to_float, after=centred).as_numpy_iterator())
    staged = aug.apply_to(uint8.map(to_float)).map(centred)
    sequential = aug.apply_to(uint8, num_parallel_calls=None, before=to_float, after=centred)
    images = np.concatenate([x for x, _ in fused])
    np.testing.assert_array_equal(images, collect(staged))
    np.testing.assert_array_equal(images, collect(sequential))
    np.testing.assert_array_equal(np.concatenate([y for _, y in fused]), LABELS + 1)


def test_unseeded_pipelines_draw_and_expose_a_seed():
    first, second = build_augmentation("light", SHAPE), build_augmentation("light", SHAPE)
    assert isinstance(first.seed, int) and first.seed != second.seed


@pytest.mark.parametrize("name", ["saturation", "hue", "color_jitter:0.1", "pca_jitter"])
def test_colour_ops_named_for_grayscale_images_are_refused(name):
    with pytest.raises(ValueError, match=r"colour operation and needs RGB.*1 channel"):
        build_augmentation(f"flip_h,{name}", (12, 12, 1), adapt_data=IMAGES[..., :1])


def test_presets_skip_colour_ops_on_grayscale_with_a_warning():
    with pytest.warns(
        UserWarning, match=r"Skipping colour augmentation 'color_jitter'.*'standard'"
    ):
        aug = build_augmentation("standard", (12, 12, 1), seed=0)
    assert aug.spec == "flip_h,crop:mode=constant"
    with pytest.warns(UserWarning, match="Skipping"):
        out, labels = run("standard,brightness:0.2,contrast:0.2", IMAGES[..., :1])
    assert out.shape == (16, 12, 12, 1)
    np.testing.assert_array_equal(labels, LABELS)


@pytest.mark.parametrize("preset", list(PRESETS))
@pytest.mark.parametrize("channels", [1, 3])
def test_every_preset_runs_on_rgb_and_grayscale(preset, channels):
    images = IMAGES[..., :channels]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        out, labels = run(preset, images)
    np.testing.assert_array_equal(labels, LABELS)
    if preset == "none":
        np.testing.assert_array_equal(out, images)
    else:
        assert not np.allclose(out, images)


def test_presets_expand_to_their_ops_and_combine_with_more():
    configs = parse_augment_spec("light,mixup:0.3")
    assert [c.name for c in configs] == ["flip_h", "crop", "mixup"]
    assert [c.preset for c in configs] == ["light", "light", None]
    assert parse_augment_spec("none") == parse_augment_spec(None) == parse_augment_spec("") == ()


def test_spec_parsing_fills_defaults_keywords_and_aliases():
    crop, cutout, jitter = parse_augment_spec(
        ["crop:4:reflect", "cutout:max_area=0.2", "color_jitter"]
    )
    assert crop.params == {"pad": 4, "mode": "reflect"}
    assert cutout.name == "erase"
    assert cutout.params == {"prob": 0.5, "max_area": 0.2, "fill": "noise"}
    assert jitter.params == {"strength": 0.2}


def test_canonical_spec_parses_back_to_the_same_pipeline():
    aug = build_augmentation("heavy,noise:0.01,mixup", SHAPE, num_classes=4)
    assert parse_augment_spec(aug.spec) == tuple(
        dataclasses.replace(config, preset=None) for config in aug.configs
    )


def test_unknown_op_names_the_valid_ones():
    with pytest.raises(ValueError, match="Unknown augmentation 'flip'") as error:
        parse_augment_spec("flip,crop")
    for name in [*OPS, *PRESETS, "cutout"]:
        assert name in str(error.value)


@pytest.mark.parametrize(
    ("spec", "canonical"),
    [
        ("Flip-H", "flip_h"),
        ("FLIP_H", "flip_h"),
        ("HFlip", "flip_h"),
        ("Color Jitter:0.3", "color_jitter"),
        ("ColorJitter", "color_jitter"),
        ("Random-Erasing", "erase"),
        ("Resized_Crop:0.5", "resized_crop"),
    ],
)
def test_op_spellings(spec, canonical):
    (config,) = parse_augment_spec(spec)
    assert config.name == canonical


def test_preset_spellings_and_presets_take_no_parameters():
    assert parse_augment_spec("Standard") == parse_augment_spec("standard")
    assert [config.preset for config in parse_augment_spec("LIGHT")] == ["light", "light"]
    with pytest.raises(ValueError, match="preset 'light' takes no parameters"):
        parse_augment_spec("light:3")


@pytest.mark.parametrize(
    ("typo", "suggestion"),
    [
        ("cropp", "crop"),
        ("colour_jitter", "color_jitter"),
        ("mixupp", "mixup"),
        ("stanard", "standard"),
    ],
)
def test_unknown_names_suggest_the_closest(typo, suggestion):
    with pytest.raises(
        ValueError, match=f"Unknown augmentation '{typo}'. Did you mean '{suggestion}'"
    ):
        parse_augment_spec(f"flip_h,{typo}")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("crop:-1", "Augmentation 'crop': `pad` must be an integer >= 0. Received: pad=-1"),
        ("crop:2.5", "`pad` must be an integer >= 0. Received: pad='2.5'"),
        ("crop:two", "`pad` must be an integer >= 0. Received: pad='two'"),
        ("crop:2:wrap", "`mode` must be one of 'constant', 'reflect'. Received: mode='wrap'"),
        ("noise:-0.1", "`stddev` must be a number in [0, 1]. Received: stddev=-0.1"),
        ("rotate:nan", "`degrees` must be a number in [0, 180]. Received: degrees=nan"),
        ("mixup:0", "`alpha` must be a number > 0. Received: alpha=0.0"),
        ("color_jitter:0.2:0.3", "takes at most 1 parameter"),
        ("flip_h:1", "takes at most 0 parameter"),
        ("blur:radius=2", "has no parameter 'radius'; its parameters: sigma, prob"),
        ("flip_h,,crop", "Empty item"),
    ],
)
def test_bad_specs_are_rejected_with_the_reason(spec, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_augment_spec(spec)


def test_crop_padding_must_fit_the_image():
    with pytest.raises(ValueError, match="pad=12 must be smaller than the image"):
        build_augmentation("crop:12", SHAPE)


def test_bad_build_arguments_are_rejected():
    with pytest.raises(ValueError, match="`image_shape` must be a tuple of length 3"):
        build_augmentation("light", (12, 12))
    with pytest.raises(ValueError, match="`seed` must be None or an integer >= 0"):
        build_augmentation("light", SHAPE, seed=-3)
    with pytest.raises(ValueError, match="Received: seed=True"):
        build_augmentation("light", SHAPE, seed=True)
    aug = build_augmentation("light", SHAPE, seed=0)
    with pytest.raises(TypeError, match="float images"):
        aug(tf.constant((IMAGES * 255).astype("uint8")), tf.constant(LABELS))
    with pytest.raises(ValueError, match="built for image_shape"):
        aug(tf.constant(IMAGES[:, :8]), tf.constant(LABELS))
