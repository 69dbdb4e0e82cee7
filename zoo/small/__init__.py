"""Small CNNs and MLPs for 28x28..64x64 gray or RGB images, all driven by the shared knobs.

Importing this package registers every model family module below.
"""

from zoo.small import (
    alexnet,
    allcnn,
    lenet,
    locally_connected_net,
    maxout_nets,
    mlp,
    mobilenet_tiny,
    nin,
    resnet_cifar,
    vgg,
    wide_resnet,
)

__all__ = [
    "alexnet",
    "allcnn",
    "lenet",
    "locally_connected_net",
    "maxout_nets",
    "mlp",
    "mobilenet_tiny",
    "nin",
    "resnet_cifar",
    "vgg",
    "wide_resnet",
]
