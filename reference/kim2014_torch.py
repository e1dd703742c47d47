"""An independent check of jaxcnn's Kim (2014) numbers: Kim's Theano training loop, re-written in eager PyTorch.

Not part of the library (PyTorch is never a jaxcnn dependency): it exists so that a figure jaxcnn cannot reach
can be told apart from a bug in jaxcnn. It follows yoonkim/CNN_sentence (conv_net_sentence.py,
conv_net_classes.py, process_data.py) decision by decision, including the ones jaxcnn deliberately does
differently, so a gap between the two is the sum of those choices and the seeds, not of a shared mistake:

- vocabulary: every word of every sentence of the set (train, dev and test), min count 1, no <unk>;
- embeddings U(-0.25, 0.25), padding row 0 reset to zero after every update;
- every sentence padded with 4 zeros on the left and to one fixed length (longest + 8), and max-pooled over
  every window, the all-padding ones included;
- filters U(-0.01, 0.01) (ReLU), biases 0, softmax layer W = 0, b = 0;
- dropout 0.5 on the pooled features without rescaling in training, the softmax W scaled by 0.5 at test time;
- Adadelta (rho 0.95, eps 1e-6, no learning rate) on every parameter, the embedding table densely;
  after each step every column of the softmax W (one class's weights) is rescaled to L2 norm <= 3;
- the training set shuffled once, topped up with copies of random examples to a multiple of 50, cut into fixed
  batches of 50, the batches' order shuffled every epoch; 25 epochs;
- the test score reported is the one at the last epoch whose dev accuracy is >= every earlier one.

Kim's code holds out 10% of the training batches as its dev set because MR has none; SST has an official dev
set, which is used here (as in jaxcnn and in the paper).

`--jaxcnn vocab,pooling,dropout,batches` swaps in jaxcnn's choice for each one named (the training sentences'
vocabulary plus <unk>; max-pooling only over windows that touch a word; inverted dropout; a fresh permutation
every epoch with a short last batch), to measure what they are worth. tests/train/test_torch_parity.py uses
`KimCNN` and `train_step` to check jaxcnn's training steps against this code.

Usage: python reference/kim2014_torch.py --data ../shared/data --dataset sst2 --seeds 0 1 2 3 4
Prints one JSON line per seed (with each epoch's dev and test accuracy) and a last line with the mean.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import re
import statistics
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

_DROP = re.compile(r"[^A-Za-z0-9(),!?'`]")
_SPACES = re.compile(r"\s{2,}")
FILES = {"sst2": "stsa.binary", "sst1": "stsa.fine"}


def clean_str_sst(s: str) -> str:
    return _SPACES.sub(" ", _DROP.sub(" ", s)).strip().lower()


def read_split(path: pathlib.Path) -> tuple[list[list[str]], list[int]]:
    texts, labels = [], []
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            label, _, text = line.rstrip("\n").partition(" ")
            if not label.isdigit():
                sys.exit(f"{path}:{n}: expected '<label> <sentence>'")
            labels.append(int(label))
            texts.append(clean_str_sst(text).split())
    return texts, labels


def encode(splits: dict, pad: int = 4, train_vocab: bool = False) -> tuple[dict, int]:
    vocab: dict[str, int] = {"<unk>": 1} if train_vocab else {}
    for name, (texts, _) in splits.items():
        if train_vocab and name != "train":
            continue
        for words in texts:
            for w in words:
                vocab.setdefault(w, len(vocab) + 1)  # 0 is padding
    length = max(len(w) for texts, _ in splits.values() for w in texts) + 2 * pad
    out = {}
    for name, (texts, labels) in splits.items():
        x = np.zeros((len(texts), length), np.int64)
        for i, words in enumerate(texts):
            x[i, pad:pad + len(words)] = [vocab.get(w, 1) for w in words]
        out[name] = (torch.from_numpy(x), torch.tensor(labels))
    return out, len(vocab) + 1


class KimCNN(torch.nn.Module):
    def __init__(self, vocab: int, classes: int, dim: int = 300, maps: int = 100, windows=(3, 4, 5), p: float = 0.5,
                 inverted_dropout: bool = False, masked_pooling: bool = False):
        super().__init__()
        self.p, self.inverted, self.masked = p, inverted_dropout, masked_pooling
        self.words = torch.nn.Parameter(torch.empty(vocab, dim).uniform_(-0.25, 0.25))
        with torch.no_grad():
            self.words[0].zero_()
        self.filters = torch.nn.ParameterList(
            [torch.nn.Parameter(torch.empty(maps, dim, h).uniform_(-0.01, 0.01)) for h in windows])
        self.biases = torch.nn.ParameterList([torch.nn.Parameter(torch.zeros(maps)) for _ in windows])
        self.W = torch.nn.Parameter(torch.zeros(maps * len(windows), classes))  # Kim's (n_in, n_out) layout
        self.b = torch.nn.Parameter(torch.zeros(classes))

    def forward(self, ids: torch.Tensor, train: bool) -> torch.Tensor:
        e = self.words[ids].transpose(1, 2)  # [batch, dim, length]
        real = (ids != 0).float().unsqueeze(1)
        pooled = []
        for w, b in zip(self.filters, self.biases):
            h = F.relu(F.conv1d(e, w, b))
            if self.masked:  # jaxcnn: a window counts only if it touches a real token
                touches = F.max_pool1d(real, w.shape[2], stride=1) > 0
                h = h.masked_fill(~touches, float("-inf"))
            pooled.append(h.amax(dim=2))
        h = torch.cat(pooled, 1)
        if self.inverted:  # jaxcnn (and Flax): rescale by 1 / (1 - p) in training, nothing at test time
            return (F.dropout(h, self.p) if train else h) @ self.W + self.b
        if train:
            return (h * torch.bernoulli(torch.full_like(h, 1 - self.p))) @ self.W + self.b
        return h @ (self.W * (1 - self.p)) + self.b


def accuracy(model: KimCNN, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return sum((model(x[i:i + 500], False).argmax(1) == y[i:i + 500]).sum().item()
                   for i in range(0, len(x), 500)) / len(x)


def train_step(model: KimCNN, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
               max_norm: float = 3.0) -> float:
    """One Adadelta step on the mean loss, then Kim's max-norm on the softmax columns and the padding row reset."""
    loss = F.cross_entropy(model(x, True), y)
    opt.zero_grad()
    loss.backward()
    opt.step()
    with torch.no_grad():
        norms = model.W.norm(dim=0)
        model.W.mul_(norms.clamp(max=max_norm) / (1e-7 + norms))
        model.words[0].zero_()
    return loss.item()


def run(data: dict, vocab: int, classes: int, seed: int, epochs: int = 25, batch: int = 50,
        jaxcnn: frozenset = frozenset()) -> dict:
    torch.manual_seed(seed)
    rng = np.random.RandomState(seed)
    model = KimCNN(vocab, classes, inverted_dropout="dropout" in jaxcnn, masked_pooling="pooling" in jaxcnn)
    opt = torch.optim.Adadelta(model.parameters(), lr=1.0, rho=0.95, eps=1e-6)
    x, y = data["train"]
    n = len(x)
    order = rng.permutation(n)
    extra = (-n) % batch
    order = rng.permutation(np.concatenate([np.arange(n), order[:extra]]))
    batches = order.reshape(-1, batch)
    best_dev, test_at_best, best_epoch, curve = 0.0, 0.0, 0, []
    start = time.perf_counter()
    for epoch in range(1, epochs + 1):
        if "batches" in jaxcnn:  # jaxcnn: a fresh permutation every epoch, the last batch short
            perm = rng.permutation(n)
            epoch_batches = [perm[i:i + batch] for i in range(0, n, batch)]
        else:
            epoch_batches = [batches[b] for b in rng.permutation(len(batches))]
        for rows in epoch_batches:
            idx = torch.from_numpy(rows)
            train_step(model, opt, x[idx], y[idx])
        dev = accuracy(model, *data["dev"])
        test = accuracy(model, *data["test"])
        curve.append((round(dev, 4), round(test, 4)))
        if dev >= best_dev:
            best_dev, test_at_best, best_epoch = dev, test, epoch
    return {"seed": seed, "best_epoch": best_epoch, "dev_accuracy": best_dev, "test_accuracy": test_at_best,
            "curve_dev_test": curve, "wall_seconds": round(time.perf_counter() - start, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", required=True, help="the data folder (holds kim/stsa.*)")
    ap.add_argument("--dataset", choices=sorted(FILES), default="sst2")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--epochs", type=int, default=25)
    ap.add_argument("--jaxcnn", default="", help="comma-separated jaxcnn choices to use instead of Kim's: "
                    "vocab (training words + <unk>), pooling (masked), dropout (inverted), batches (reshuffled)")
    a = ap.parse_args()
    choices = frozenset(c for c in a.jaxcnn.split(",") if c)
    if choices - {"vocab", "pooling", "dropout", "batches"}:
        sys.exit(f"--jaxcnn: unknown choice(s) {sorted(choices - {'vocab', 'pooling', 'dropout', 'batches'})}")
    folder = pathlib.Path(a.data) / "kim"
    paths = {s: folder / f"{FILES[a.dataset]}.{s}" for s in ("train", "dev", "test")}
    for p in paths.values():
        if not p.is_file():
            sys.exit(f"--data: {p} not found")
    splits = {s: read_split(p) for s, p in paths.items()}
    data, vocab = encode(splits, train_vocab="vocab" in choices)
    classes = int(max(max(labels) for _, labels in splits.values())) + 1
    scores = []
    for seed in a.seeds:
        r = run(data, vocab, classes, seed, a.epochs, jaxcnn=choices)
        scores.append(r["test_accuracy"])
        print(json.dumps({"dataset": a.dataset, "jaxcnn": sorted(choices), "vocab": vocab - 1, **r}), flush=True)
    print(json.dumps({"dataset": a.dataset, "jaxcnn": sorted(choices), "seeds": a.seeds,
                      "test_mean": statistics.mean(scores), "test_std": statistics.stdev(scores) if len(scores) > 1 else 0.0,
                      "min": min(scores), "max": max(scores)}), flush=True)


if __name__ == "__main__":
    main()
