"""Training recipes and the shared machinery they use.

Importing the package registers with Keras every custom object a recipe can save: the layers
(`layers`), the backbones' preprocessing layer (`zoo`), and the optimizers, optimizer wrappers,
learning-rate schedules and losses (`recipes.optim`). So one line makes any `.keras` file a recipe
wrote (`model.keras`, `checkpoints/last.keras`, `checkpoints/best.keras`) load in plain Keras:

    import recipes  # registers the custom objects
    model = keras.models.load_model("runs/lenet5/model.keras")

Without it, Keras stops with "Could not locate class 'TFTrainMomentum'" or "<class 'Functional'>
could not be deserialized properly". Beyond Keras, it imports only those three packages (a few
tenths of a second once Keras is loaded): the application (`recipes.train`) and the search
(`recipes.search`, KerasTuner) load when used.
"""

import zoo  # noqa: F401  (registers `layers` and `zoo`)
from recipes import optim  # noqa: F401  (registers optimizers, schedules, losses)
