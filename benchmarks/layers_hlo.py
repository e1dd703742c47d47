"""Whether two source trees compile the default paths of the layers to the same program: the hash of the
optimized HLO of forward + gradient (source locations stripped) for each layer on its default options, and for
Kim's CNN. Same hashes: the same machine code, so the same speed, without a noisy timing.

    PYTHONPATH=OLD_TREE python benchmarks/layers_hlo.py > old.txt
    PYTHONPATH=NEW_TREE python benchmarks/layers_hlo.py > new.txt && diff old.txt new.txt
"""
import hashlib, sys
import jax, jax.numpy as jnp
from jaxcnn import layers as L
from jaxcnn.models.text_cnn import TextCNN

def h(f, *args):
    import re
    txt = jax.jit(f).lower(*args).compile().as_text()
    txt = re.sub(r", metadata=\{[^}]*\}", "", txt)
    txt = re.sub(r"HloModule \S+", "HloModule m", txt)
    txt = "\n".join(l for l in txt.splitlines() if not re.match(r"^(\d+ |FileNames|FunctionNames|FileLocations|StackFrames)", l))
    return hashlib.sha256(txt.encode()).hexdigest()[:12]

def mod_case(m, x):
    v = m.init(jax.random.PRNGKey(0), x)
    def loss(v, x):
        return jnp.sum(m.apply(v, x) ** 2)
    return h(jax.grad(loss, argnums=(0, 1)), v, x)

x1 = jnp.ones((4, 20, 8)); x2 = jnp.ones((2, 12, 12, 3))
cases = {
  "conv1d_same": (L.Conv(16, (3,)), x1),
  "conv1d_valid_dil": (L.Conv(16, (3,), padding="VALID", kernel_dilation=2), x1),
  "conv1d_pad2": (L.Conv(16, (3,), padding=2), x1),
  "conv2d_stride_groups": (L.Conv(8, (3, 3), strides=2, feature_group_count=1), x2),
  "convT": (L.ConvTranspose(4, (3, 3), strides=2), x2),
  "dsconv": (L.DepthwiseSeparableConv(8, (3, 3)), x2),
  "bank_xla": (L.MultiScaleConv(impl="xla", features=8, pool=L.global_max_pool), x1),
}
for name, (m, x) in cases.items():
    print(name, mod_case(m, x))
print("max_pool", h(jax.grad(lambda x: jnp.sum(L.max_pool(x, (2, 2)) ** 2)), x2))
print("avg_pool", h(jax.grad(lambda x: jnp.sum(L.avg_pool(x, (3, 3), 2, padding=1) ** 2)), x2))
print("adaptive", h(jax.grad(lambda x: jnp.sum(L.adaptive_avg_pool(x, (3, 5)) ** 2)), x2))
ids = jnp.ones((50, 64), jnp.int32)
m = TextCNN(vocab_size=1000, num_classes=2)
v = m.init(jax.random.PRNGKey(0), ids, train=False)
print("kim", h(jax.grad(lambda v: jnp.sum(m.apply(v, ids, train=False) ** 2)), v))
