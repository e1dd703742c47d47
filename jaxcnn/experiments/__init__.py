"""Experiments made of many models trained as programs of K members (`jaxcnn.train.trainer.train_members`).

- `programs`: members from a protocol, the `--seeds` flag.
- `cv`: `jaxcnn cv`, every fold and seed at once. `search`: `jaxcnn search`, grid and random search.
- `ensemble`: `jaxcnn ensemble` (average, vote, stacking, bagging, boosting); `jaxcnn.predict` predicts with it.
- `reproduce`: `jaxcnn reproduce`, Kim (2014) Table 2 with the spread over seeds.
- `report`: aggregates, markdown tables, the per-seed plot, the paper's numbers.
"""
