"""Feature extraction from any zoo model, the way timm and `keras.applications` offer it.

`zoo.create` takes three requests on top of a model's own arguments:

- `include_top=False`: the model up to its last feature map, without the classifier (and without
  the dense layers a small CNN puts between the map and the classifier, as `keras.applications`
  drops VGG's fully connected layers); `pooling=None` keeps the map (batch, height, width,
  channels), `"avg"` or `"max"` pools it globally to (batch, channels).
- `num_classes=0`: the classifier's input, pooled: the vector the model's last layer reads, before
  its dropout (timm's pre-logits features). For a model whose classifier is a 1x1 convolution and
  a global average (nin, allcnn), the average of that convolution's input map.
- `features_only=True`: a model with one output per resolution level: the last feature map the
  network computes at each stride (timm's `features_only`). `feature_info(model)` names each
  output's layer, channels and stride.

The stages are found from the model's graph, so that every registered model and every backbone
gets them by one rule: the candidate layers are the network's layers (inside the nested
`keras.applications` model for a backbone) whose output is a 4-D map, leaving out inputs,
dropout, padding, rescaling and normalization of the input, and the classifier's own layers (named
"predictions..."); each candidate's stride is the product of the strides along its path from the
input; the last candidate at each stride is that level's feature map. The networks' stride-2
layers start a new level, so the levels are the maps at strides 1, 2, 4, ... that each network
reaches.

A stride is reported relative to the image the network sees: for a backbone, after the model's own
resize to `image_size`. `feature_info` reads everything from the graph again, so it works on a
model reloaded from a `.keras` file as well as on the model `zoo.create` returned.
"""

from __future__ import annotations

from typing import Any

import keras

from layers.validation import check_bool, check_choice

FEATURE_POOLINGS = ("avg", "max")
CLASSIFIER_PREFIX = "predictions"
# Layers that only pass, pad or rescale the input: never a feature map of their own.
_NOT_FEATURES = (
    keras.layers.InputLayer,
    keras.layers.Dropout,
    keras.layers.SpatialDropout2D,
    keras.layers.GaussianDropout,
    keras.layers.ZeroPadding2D,
    keras.layers.Rescaling,
    keras.layers.Normalization,
)
_GLOBAL_POOLINGS = {
    "avg": keras.layers.GlobalAveragePooling2D,
    "max": keras.layers.GlobalMaxPooling2D,
}


def check_feature_request(
    include_top: bool | None, pooling: str | None, features_only: bool, num_classes: int | None
) -> bool:
    """Validates a feature request's arguments together; returns whether the model keeps its top.

    Args:
        include_top: None (the default: True unless `features_only`), True or False.
        pooling: None, "avg" or "max"; only with `include_top=False`.
        features_only: whether to return the feature maps of every level.
        num_classes: the requested class count (0: pooled features); must be unset for a model
            without a classifier.

    Raises:
        ValueError: for a bad value or a combination that asks for two different models.
    """
    check_bool("features_only", features_only)
    if include_top is not None:
        check_bool("include_top", include_top)
    check_choice("pooling", pooling, FEATURE_POOLINGS, optional=True)
    if features_only and include_top:
        raise ValueError(
            "`features_only=True` returns the feature maps of every level, without the "
            "classifier: leave `include_top` unset. Received: include_top=True"
        )
    if pooling is not None and (features_only or include_top is not False):
        raise ValueError(
            "`pooling` pools the last feature map of a model built with include_top=False "
            "(features_only=True returns the maps unpooled). "
            f"Received: pooling={pooling!r} with include_top={include_top!r}, "
            f"features_only={features_only!r}"
        )
    headless = features_only or include_top is False
    if headless and num_classes is not None:
        raise ValueError(
            "`num_classes` must be left unset for a model without a classifier "
            "(include_top=False or features_only=True; num_classes=0 asks for the pooled "
            f"features of the classifier's input instead). Received: num_classes={num_classes!r}"
        )
    return not headless


def _layer_stride(layer: Any) -> int:
    strides = getattr(layer, "strides", 1)
    return int(strides[0] if isinstance(strides, tuple | list) else strides)


def _stride(tensor: Any, cache: dict[int, int]) -> int:
    """The product of the strides on the path from the graph's input to `tensor` (the largest,
    where paths join; in these networks every path to a tensor has the same stride)."""
    key = id(tensor)
    if key not in cache:
        # Keras' functional graph: every symbolic tensor records the layer call that made it.
        operation, node_index, tensor_index = tensor._keras_history
        parents = operation._inbound_nodes[node_index].input_tensors
        below = max((_stride(parent, cache) for parent in parents), default=1)
        if isinstance(operation, keras.Model):
            own = _stride(operation.outputs[tensor_index], cache)
        else:
            own = _layer_stride(operation)
        cache[key] = below * own
    return cache[key]


def _is_map(tensor: Any) -> bool:
    return len(tensor.shape) == 4


def feature_info(model: keras.Model) -> list[dict[str, Any]]:
    """What each output of a feature model holds, read from its graph.

    Works on the models `zoo.create` returns with `features_only=True`, `include_top=False` or
    `num_classes=0`, before and after a `.keras` round trip (and on any functional model).

    Args:
        model: a functional Keras model.

    Returns:
        One dict per output, in output order: `layer` (the layer that computes it), `channels`
        (its last axis) and `reduction` (the stride of a (batch, height, width, channels) map
        relative to the network's input image; None for a vector).
    """
    cache: dict[int, int] = {}
    info = []
    for output in model.outputs:
        info.append(
            {
                "layer": output._keras_history[0].name,
                "channels": int(output.shape[-1]),
                "reduction": _stride(output, cache) if _is_map(output) else None,
            }
        )
    return info


def _network(model: keras.Model) -> keras.Model:
    """The model whose layers are the feature network: a nested functional model (a backbone's
    `keras.applications` network) if the model holds one, else the model itself."""
    nested = [layer for layer in model.layers if isinstance(layer, keras.Model)]
    if len(nested) > 1:
        raise ValueError(
            f"Model {model.name!r} nests {len(nested)} models; feature extraction follows one."
        )
    return nested[0] if nested else model


def feature_levels(model: keras.Model) -> list[keras.layers.Layer]:
    """The last feature-map layer at each stride of the model's network, by increasing stride.

    Raises:
        ValueError: for a model without feature maps (an MLP).
    """
    network = _network(model)
    cache: dict[int, int] = {}
    last_at: dict[int, keras.layers.Layer] = {}
    for layer in network.layers:
        if isinstance(layer, _NOT_FEATURES) or layer.name.startswith(CLASSIFIER_PREFIX):
            continue
        output = layer.output
        if not isinstance(output, keras.KerasTensor) or not _is_map(output):
            continue
        last_at[_stride(output, cache)] = layer
    if not last_at:
        raise ValueError(
            f"Model {model.name!r} has no feature maps (it flattens its input): "
            "include_top=False and features_only=True need a convolutional network. Use "
            "num_classes=0 for the activations its classifier reads."
        )
    return [last_at[stride] for stride in sorted(last_at)]


def _network_outputs(model: keras.Model, layers: list[keras.layers.Layer]) -> list[Any]:
    """The outputs of `layers` as tensors of `model`'s own graph.

    Layers inside a nested network become the outputs of a new nested model, named like the
    network and sharing its layers, called on what the network was called on; each output then
    passes an Identity layer named after its layer, so that the outputs keep distinct names.
    """
    network = _network(model)
    if network is model:
        return [layer.output for layer in layers]
    trunk = keras.Model(network.inputs, [layer.output for layer in layers], name=network.name)
    outer_inputs = network._inbound_nodes[0].input_tensors
    outputs = trunk(outer_inputs[0] if len(outer_inputs) == 1 else outer_inputs)
    outputs = outputs if isinstance(outputs, list | tuple) else [outputs]
    return [
        keras.layers.Identity(name=layer.name)(output)
        for layer, output in zip(layers, outputs, strict=True)
    ]


def classifier_input(model: keras.Model) -> Any:
    """The tensor the model's classifier reads, before the dropout in front of it."""
    head = [layer for layer in model.layers if layer.name.startswith(CLASSIFIER_PREFIX)]
    if not head:
        raise ValueError(
            f"Model {model.name!r} has no classifier (no layer named {CLASSIFIER_PREFIX!r}...)."
        )
    tensor = head[0].input
    while isinstance(tensor._keras_history[0], keras.layers.Dropout):
        tensor = tensor._keras_history[0].input
    return tensor


def feature_model(
    model: keras.Model,
    *,
    features_only: bool = False,
    pooling: str | None = None,
    pooled_classifier_input: bool = False,
) -> keras.Model:
    """A feature model sharing `model`'s layers (and weights); see the module docstring.

    Args:
        model: a classifier built by `zoo.create`.
        features_only: one output per stride level (`feature_levels`).
        pooling: None, "avg" or "max": global pooling of the last feature map.
        pooled_classifier_input: the classifier's input instead (num_classes=0), averaged if it
            is a map.

    Returns:
        A functional model named `<model name>_features`.
    """
    if pooled_classifier_input:
        outputs = classifier_input(model)
        if _is_map(outputs):
            outputs = keras.layers.GlobalAveragePooling2D(name="avg_pool")(outputs)
    else:
        levels = feature_levels(model)
        outputs = _network_outputs(model, levels if features_only else levels[-1:])
        if not features_only:
            outputs = outputs[0]
            if pooling is not None:
                outputs = _GLOBAL_POOLINGS[pooling](name=f"{pooling}_pool")(outputs)
    return keras.Model(model.input, outputs, name=f"{model.name}_features")
