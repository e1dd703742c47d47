"""Text data for jaxcnn: tokenizers, vocabularies, fixed-length encoding, word vectors, the benchmark registry,
splits and protocols.

Names are imported on first use, so `import jaxcnn.data` stays cheap (the `datasets` library is only loaded by
the functions that build DatasetDicts).
"""

import importlib

_EXPORTS = {
    "clean_str": "tokenize", "clean_str_sst": "tokenize", "Tokenizer": "tokenize", "get_tokenizer": "tokenize",
    "Vocabulary": "vocab",
    "Encoded": "encode", "TextEncoder": "encode", "encode_dataset": "encode",
    "VectorReport": "embeddings", "load_word_vectors": "embeddings",
    "DATASETS": "registry", "DatasetSpec": "registry", "load_splits": "registry", "locate": "registry", "find": "registry", "default_phrases": "registry",
    "load_files": "registry", "load_hub": "registry", "resolve_protocol": "registry", "get_spec": "registry",
    "kfold_indices": "splits", "dev_split": "splits", "protocol_rows": "splits",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"jaxcnn.data.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'jaxcnn.data' has no attribute {name!r}")
