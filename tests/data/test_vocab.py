import json

import pytest

from jaxcnn.data.vocab import Vocabulary
from jaxcnn.errors import ConfigError, DataError

CORPUS = [["b", "a", "c"], ["a", "d", "b"], ["a", "e"]]  # a:3, b:2, c:1, d:1, e:1


def test_order_is_frequency_then_first_occurrence():
    v = Vocabulary.build(CORPUS)
    assert v.itos == ["<pad>", "<unk>", "a", "b", "c", "d", "e"]
    assert (v.pad_id, v.unk_id, v.bos_id, v.eos_id) == (0, 1, None, None)
    assert v.lookup(["a", "e", "zzz"]) == [2, 6, 1]
    assert "c" in v and "zzz" not in v and len(v) == 7


def test_min_freq_max_size_and_bos_eos():
    assert Vocabulary.build(CORPUS, min_freq=2).itos == ["<pad>", "<unk>", "a", "b"]
    assert Vocabulary.build(CORPUS, max_size=3).itos == ["<pad>", "<unk>", "a", "b", "c"]
    v = Vocabulary.build(CORPUS, bos_eos=True, max_size=1)
    assert v.itos == ["<pad>", "<unk>", "<s>", "</s>", "a"]
    assert (v.bos_id, v.eos_id, v.num_special) == (2, 3, 4)
    with pytest.raises(ConfigError, match="--min-freq"):
        Vocabulary.build(CORPUS, min_freq=0)


def test_reserved_strings_in_text_are_unknown_not_padding():
    v = Vocabulary.build([["<pad>", "<unk>", "<s>", "x"]], bos_eos=True)
    assert v.itos == ["<pad>", "<unk>", "<s>", "</s>", "x"]
    assert v.lookup(["<pad>", "<s>", "x"]) == [1, 1, 4]
    assert "<pad>" not in v


@pytest.mark.parametrize("bos_eos", [False, True])
def test_save_load_round_trip(tmp_path, bos_eos):
    v = Vocabulary.build(CORPUS + [["naïve", "日本", '"quoted"']], bos_eos=bos_eos)
    v.save(tmp_path / "vocab.json")
    again = Vocabulary.load(tmp_path / "vocab.json")
    assert again == v and again.itos == v.itos and again.bos_eos == bos_eos
    assert Vocabulary.from_dict(json.loads(json.dumps(v.to_dict()))) == v


@pytest.mark.parametrize("content, message", [
    ('{"format": "jaxcnn.vocabulary", "version": 1,\n "itos": [', r"vocab.json:2: vocabulary is not valid JSON"),
    ('[1, 2]', r"vocab.json: not a jaxcnn vocabulary"),
    ('{"format": "jaxcnn.vocabulary", "version": 9, "itos": []}', r"vocab.json: vocabulary format version 9"),
    ('{"format": "jaxcnn.vocabulary", "version": 1, "bos_eos": false, "itos": ["<pad>", "x"]}',
     r"vocab.json: bad vocabulary: a vocabulary must start with"),
    ('{"format": "jaxcnn.vocabulary", "version": 1, "bos_eos": false, "itos": ["<pad>", "<unk>", "a", "a"]}',
     r"vocab.json: bad vocabulary: .* same token twice"),
    ('{"format": "jaxcnn.vocabulary", "version": 1, "bos_eos": false, "itos": ["<pad>", "<unk>", 3]}',
     r"vocab.json: vocabulary \"itos\" must be a list of strings"),
])
def test_load_errors_name_the_file(tmp_path, content, message):
    path = tmp_path / "vocab.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DataError, match=message) as err:
        Vocabulary.load(path)
    assert "\n" not in str(err.value)


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="nope.json: vocabulary file not found"):
        Vocabulary.load(tmp_path / "nope.json")
