"""jaxcnn: convolutional neural networks in JAX/Flax, Kim (2014) first.

Importing `jaxcnn` is cheap: submodules (`jaxcnn.layers`, `jaxcnn.data`, `jaxcnn.models`, `jaxcnn.train`) are
imported on first use.
"""

__version__ = "0.1.0"


def load(workdir):
    """Loads a trained model from a workdir for prediction: `jaxcnn.load(workdir).predict(["..."])`."""
    from jaxcnn.predict import Predictor

    return Predictor.from_workdir(workdir)
