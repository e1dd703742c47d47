"""Small synthetic text sets for engine tests: learnable in a few epochs, written in Kim's format."""

from __future__ import annotations

import pathlib

import numpy as np

POSITIVE = ["good", "great", "fine", "superb", "lovely"]
NEGATIVE = ["bad", "awful", "poor", "dull", "boring"]
FILLER = ["the", "movie", "was", "a", "plot", "and", "acting", "really", "quite", "film", "story", "it"]


def synthetic_sentences(n: int, seed: int) -> tuple[list[str], list[int]]:
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for _ in range(n):
        label = int(rng.integers(2))
        words = list(rng.choice(FILLER, size=int(rng.integers(2, 9))))
        cue = POSITIVE if label else NEGATIVE
        words.insert(int(rng.integers(len(words) + 1)), str(rng.choice(cue)))
        texts.append(" ".join(words))
        labels.append(label)
    return texts, labels


def write_kim(path: pathlib.Path, texts: list[str], labels: list[int]) -> pathlib.Path:
    path.write_text("".join(f"{y} {t}\n" for t, y in zip(texts, labels)), encoding="utf-8")
    return path


def write_splits(folder: pathlib.Path, n_train: int = 160, n_dev: int = 40, n_test: int = 40) -> dict[str, str]:
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, n, seed in (("train", n_train, 0), ("dev", n_dev, 1), ("test", n_test, 2)):
        out[f"{name}_file"] = str(write_kim(folder / f"{name}.txt", *synthetic_sentences(n, seed)))
    return out


def write_word2vec_text(path: pathlib.Path, dim: int = 16, seed: int = 0) -> pathlib.Path:
    """A word2vec text file covering the synthetic vocabulary (minus one word, to exercise unknown init)."""
    rng = np.random.default_rng(seed)
    words = POSITIVE + NEGATIVE + FILLER[:-1]
    lines = [f"{len(words)} {dim}"]
    for w in words:
        lines.append(w + " " + " ".join(f"{v:.6f}" for v in rng.normal(0, 0.3, dim)))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def single_program(cfg, task=None):
    """The one-member `Program` that `jaxcnn train` builds for `cfg` (no workdir)."""
    from jaxcnn import tasks
    from jaxcnn.train.program import Program
    from jaxcnn.train.trainer import member_for

    task = task or tasks.get(cfg.data.task)
    examples = task.load(cfg)
    member = member_for(cfg, examples)
    data = task.prepare(cfg, examples, [member.rows()], [member.seed])
    return Program(cfg, task, data, [member])


def run_steps(program, steps: int):
    """Runs `steps` optimizer steps of epoch 1 of a one-member program in one block; its summed metrics."""
    from jaxcnn.train.parallel import to_host
    from jaxcnn.train.program import epoch_indices

    m = program.members[0]
    idx = epoch_indices(len(m.train), program.batch_size, program.batch, m.seed, 1, steps)[0]
    sums, bad = to_host(program.train_block(idx[None]))
    assert int(bad[0]) == -1
    return {k: v[0] for k, v in sums.items()}


def params_of(program):
    """Member 0's parameters, on the host."""
    import jax

    return jax.tree.map(lambda x: np.asarray(x[0]), jax.device_get(program.state.params))


def train_rows(program, name: str = "ids"):
    """Member 0's training examples' `name` array (in its training-list order) and labels."""
    m = program.members[0]
    return program.data.arrays[name][m.train], program.data.arrays["label"][m.train]


def small_text_cnn(variant="rand", pooling="max", dtype=None, hidden=()):
    """A small Kim CNN (vocab 40, 3 classes, 16-d, widths 2 and 3, 8 maps), its parameters with a non-zero head
    (Kim's starts at zero: the features would not reach the logits) and a batch of ids ending in padding."""
    import jax

    from jaxcnn.models.text_cnn import TextCNN

    model = TextCNN(vocab_size=40, num_classes=3, variant=variant, embed_dim=16, windows=(2, 3), maps=8,
                    pooling=pooling, k=2, hidden=hidden, dtype=dtype)
    ids = jax.random.randint(jax.random.key(1), (6, 14), 0, 40).at[:, -3:].set(0)
    params = jax.jit(model.init)(jax.random.key(0), ids)["params"]  # one compile, not one per op
    rng = np.random.default_rng(2)
    params = jax.tree.map(lambda a: a + 0.3 * rng.standard_normal(a.shape, np.float32), params)
    return model, params, ids


def jaxpr_eqns(fn, *args) -> list:
    """Every equation of fn's jaxpr, those of nested jaxprs (custom_vjp, scan, pjit...) included."""
    import jax
    import jax.extend

    found = []

    def walk(jaxpr):
        for eqn in jaxpr.eqns:
            found.append(eqn)
            for sub in jax.extend.core.jaxprs_in_params(eqn.params):
                walk(sub)

    walk(jax.make_jaxpr(fn)(*args).jaxpr)
    return found
