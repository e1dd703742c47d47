"""Your own Flax model, trained by jaxcnn's engine: a dilated CNN (not Kim's) on TREC questions.

    python examples/custom_model.py --workdir runs/trec-dilated --epochs 10     # data from JAXCNN_DATA_DIR

jaxcnn brings the data (TREC, Kim's protocol: 10% of train as dev), the engine (jit-compiled steps, Orbax
checkpoints, exact resume, Kim's model selection, metrics.jsonl, summary.json) and the predictor; the model is a
plain Linen module, plugged in through the Task API (`TextTask(model=...)`). Run the command again with more
--epochs and it resumes where it stopped.
"""

import argparse
import json
import logging

import flax.linen as nn
import jax.numpy as jnp

import jaxcnn
from jaxcnn import configs
from jaxcnn.tasks import TextTask
from jaxcnn.train import train_and_evaluate


class DilatedCNN(nn.Module):
    """<int32>[batch, length] word ids (0 = padding) -> three dilated convolutions (receptive field 15 words)
    -> max over time -> dropout -> <float32>[batch, classes] logits."""

    vocab_size: int
    num_classes: int
    features: int = 64
    embed_dim: int = 64

    @nn.compact
    def __call__(self, ids, *, train=False):
        mask = (ids != 0)[..., None]
        x = nn.Embed(self.vocab_size, self.embed_dim)(ids)
        for dilation in (1, 2, 4):
            x = nn.relu(nn.Conv(self.features, (3,), kernel_dilation=dilation, padding="SAME")(x))
        x = jnp.max(jnp.where(mask, x, -1e9), axis=1)  # padding never wins the max
        x = nn.Dropout(0.5, deterministic=not train)(x)
        return nn.Dense(self.num_classes)(x)


def dilated_task(features: int = 64, embed_dim: int = 64) -> TextTask:
    """Kim's text pipeline with this model; its name is saved with the checkpoints."""
    return TextTask(name="trec-dilated", model=lambda cfg, data: DilatedCNN(len(data.vocab), data.num_classes,
                                                                            features, embed_dim))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--data-dir", default=None, help="the data folder (default: JAXCNN_DATA_DIR)")
    parser.add_argument("--features", type=int, default=64, help="feature maps per convolution (default: 64)")
    parser.add_argument("--embed-dim", type=int, default=64, help="the word embeddings' size (default: 64)")
    ns = parser.parse_args()
    logging.getLogger("jaxcnn").setLevel(logging.INFO)  # the engine's epoch lines
    cfg = configs.kim2014("trec").replace(epochs=ns.epochs, optimizer="adam", lr=2e-3, max_norm=None,
                                          data_dir=ns.data_dir, progress=False)
    task = dilated_task(ns.features, ns.embed_dim)  # a resumed or loaded run needs the same sizes
    summary = train_and_evaluate(cfg, ns.workdir, task=task)
    print(json.dumps({k: summary[k] for k in ("epochs", "best_epoch", "dev_accuracy", "test_accuracy")}))
    model = jaxcnn.load(ns.workdir, task=task)
    for record in model.predict(["How far is it from Denver to Aspen ?", "Who wrote Hamlet ?"]):
        print(json.dumps({"text": record["text"], "label": record["label"]}))


if __name__ == "__main__":
    main()
