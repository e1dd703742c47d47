"""jaxcnn: convolutional neural networks in JAX/Flax, Kim (2014) first.

Importing `jaxcnn` is cheap: submodules (`jaxcnn.layers`, `jaxcnn.data`, `jaxcnn.models`, `jaxcnn.train`) are
imported on first use.
"""

__version__ = "0.1.0"


def load(workdir, *, checkpoint: str = "best", task=None):
    """Loads a trained model (or an ensemble) from a workdir for prediction: `jaxcnn.load(workdir).predict([...])`.

    Args:
      checkpoint: "best" (the variables of the best dev epoch) or "latest".
      task: the `jaxcnn.tasks.Task` of a model of your own (the registered text and image tasks are found by name).
    """
    from jaxcnn.predict import Predictor

    return Predictor.from_workdir(workdir, checkpoint=checkpoint, task=task)
