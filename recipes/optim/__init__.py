"""Keras 3 optimizers that reproduce tf.compat.v1.train's, and the three Keras lacks.

`AdagradDA`, `ProximalGradientDescent` and `ProximalAdagrad` have no Keras counterpart. The
`TFTrain*` classes are the algorithms Keras does have, computed the way tf.train computes them (see
each class for the difference). Most code should go through `recipes.optimizers.get_optimizer`.
"""

from recipes.optim.adadelta import TFTrainAdadelta
from recipes.optim.adagrad import TFTrainAdagrad
from recipes.optim.adagrad_da import AdagradDA
from recipes.optim.adam import TFTrainAdam
from recipes.optim.elementwise import ElementwiseOptimizer
from recipes.optim.ftrl import TFTrainFtrl
from recipes.optim.momentum import TFTrainMomentum
from recipes.optim.proximal_adagrad import ProximalAdagrad
from recipes.optim.proximal_gradient_descent import ProximalGradientDescent
from recipes.optim.rmsprop import TFTrainRMSProp

__all__ = [
    "AdagradDA",
    "ElementwiseOptimizer",
    "ProximalAdagrad",
    "ProximalGradientDescent",
    "TFTrainAdadelta",
    "TFTrainAdagrad",
    "TFTrainAdam",
    "TFTrainFtrl",
    "TFTrainMomentum",
    "TFTrainRMSProp",
]
