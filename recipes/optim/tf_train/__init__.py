"""Keras 3 optimizers that reproduce tf.compat.v1.train's, and the three Keras lacks.

`AdagradDA`, `ProximalGradientDescent` and `ProximalAdagrad` have no Keras counterpart. The
`TFTrain*` classes are the algorithms Keras does have, computed the way tf.train computes them (see
each class for the difference). Most code should go through `recipes.optim.optimizers.get_optimizer`.
"""

from recipes.optim.tf_train.adadelta import TFTrainAdadelta
from recipes.optim.tf_train.adagrad import TFTrainAdagrad
from recipes.optim.tf_train.adagrad_da import AdagradDA
from recipes.optim.tf_train.adam import TFTrainAdam
from recipes.optim.tf_train.elementwise import ElementwiseOptimizer
from recipes.optim.tf_train.ftrl import TFTrainFtrl
from recipes.optim.tf_train.momentum import TFTrainMomentum
from recipes.optim.tf_train.proximal_adagrad import ProximalAdagrad
from recipes.optim.tf_train.proximal_gradient_descent import ProximalGradientDescent
from recipes.optim.tf_train.rmsprop import TFTrainRMSProp

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
