"""Experiments made of many models trained as one program (`jaxcnn.train.multi`).

- `pool`: one encoded pool of examples and each member's train/dev/test rows into it (Kim's protocols).
- `programs`: members from a protocol; one program run in a workdir.
- `cv`: `jaxcnn cv`, every fold and seed at once. `search`: `jaxcnn search`, grid and random search.
- `ensemble`: `jaxcnn ensemble` (average, vote, stacking, bagging, boosting) and prediction from its workdir.
- `reproduce`: `jaxcnn reproduce`, Kim (2014) Table 2 with the spread over seeds.
- `report`: aggregates, markdown tables, the per-seed plot, the paper's numbers. `commands`: the CLI parsers.
"""
