import json
import logging

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxcnn.data.encode import TextEncoder, encode_dataset
from jaxcnn.data.registry import load_files
from jaxcnn.data.vocab import Vocabulary
from jaxcnn.errors import ConfigError

TRAIN = ["the film is good", "the film is bad !", "good"]


@pytest.fixture(scope="module")
def encoder():
    return TextEncoder.fit(TRAIN, "whitespace", pad_width=2)


def test_fit_takes_the_longest_sentence(encoder):
    assert encoder.max_len == 5 and encoder.length == 5 + 2 * 2
    assert encoder.vocab.itos[:6] == ["<pad>", "<unk>", "the", "film", "is", "good"]


def test_kim_layout_known_answer(encoder):
    enc = encoder.encode(["the film is good", "", "bad", "unseen words"])
    the, film, is_, good, bad = encoder.vocab.lookup(["the", "film", "is", "good", "bad"])
    np.testing.assert_array_equal(enc.ids, [
        [0, 0, the, film, is_, good, 0, 0, 0],
        [0, 0, 0, 0, 0, 0, 0, 0, 0],           # an empty sentence still has the full length
        [0, 0, bad, 0, 0, 0, 0, 0, 0],
        [0, 0, 1, 1, 0, 0, 0, 0, 0],           # unknown words are unk (1), never padding
    ])
    np.testing.assert_array_equal(enc.lengths, [4, 0, 1, 2])
    np.testing.assert_array_equal(enc.mask, enc.ids != 0)
    assert enc.ids.dtype == np.int32 and enc.lengths.dtype == np.int32 and enc.mask.dtype == bool
    assert enc.truncated == 0


def test_truncation_is_counted(encoder):
    enc = encoder.encode(["good " * 5, "good " * 6, "good " * 20])
    assert enc.truncated == 2
    np.testing.assert_array_equal(enc.lengths, [5, 5, 5])
    assert enc.ids.shape == (3, 9) and (enc.ids[:, 2:7] == encoder.vocab.get("good")).all()


def test_cap_and_explicit_max_len():
    assert TextEncoder.fit(TRAIN, "whitespace", pad_width=4, cap=3).max_len == 3
    assert TextEncoder.fit(TRAIN, "whitespace", pad_width=4, max_len=50, cap=60).length == 58
    with pytest.raises(ConfigError, match="--max-len"):
        TextEncoder.fit(TRAIN, "whitespace", pad_width=4, max_len=0)


def test_bos_eos_wrap_the_sentence_and_count_towards_max_len():
    enc_ = TextEncoder.fit(TRAIN, "whitespace", pad_width=1, bos_eos=True)
    assert enc_.max_len == 5 + 2
    v = enc_.vocab
    enc = enc_.encode(["good", "", "the film is bad ! extra words"])
    np.testing.assert_array_equal(enc.ids[0], [0, 2, v.get("good"), 3, 0, 0, 0, 0, 0])
    np.testing.assert_array_equal(enc.ids[1], [0, 2, 3, 0, 0, 0, 0, 0, 0])
    np.testing.assert_array_equal(enc.ids[2, 1:8], [2] + v.lookup("the film is bad !".split()) + [3])
    np.testing.assert_array_equal(enc.lengths, [3, 2, 7])
    assert enc.truncated == 1


def test_config_round_trip(encoder, tmp_path):
    encoder.vocab.save(tmp_path / "vocab.json")
    config = json.loads(json.dumps(encoder.to_config()))
    again = TextEncoder.from_config(config, Vocabulary.load(tmp_path / "vocab.json"))
    assert again == encoder
    inline = TextEncoder.from_config(json.loads(json.dumps(encoder.to_config(include_vocab=True))))
    np.testing.assert_array_equal(inline.encode(TRAIN).ids, encoder.encode(TRAIN).ids)
    with pytest.raises(ConfigError, match="no vocabulary"):
        TextEncoder.from_config(config)


def test_encode_dataset_matches_encode_and_honours_select(tmp_path, caplog):
    path = tmp_path / "train.txt"
    path.write_text("1 the film is good\n0 the film is bad !\n1 good good good good good good\n", encoding="utf-8")
    ds = load_files(path)["train"]
    encoder = TextEncoder.fit(["the film is good"], "whitespace", pad_width=1)
    with caplog.at_level(logging.INFO, logger="jaxcnn.data.encode"):
        out = encode_dataset(ds.select([2, 0]), encoder)
    assert "1 of 2 sentences were longer than max_len=4" in caplog.text
    expected = encoder.encode(["good good good good good good", "the film is good"])
    np.testing.assert_array_equal(out["ids"], expected.ids)
    np.testing.assert_array_equal(out["labels"], [1, 1])
    assert out["labels"].dtype == np.int32 and set(out) == {"ids", "labels", "lengths"}


@settings(max_examples=60, deadline=None)
@given(train=st.lists(st.text(max_size=30), min_size=1, max_size=6), texts=st.lists(st.text(max_size=60), max_size=6),
       pad_width=st.integers(0, 4), cap=st.one_of(st.none(), st.integers(1, 8)), bos_eos=st.booleans(),
       tokenizer=st.sampled_from(["kim", "regex", "whitespace", "char"]))
def test_encoder_properties(train, texts, pad_width, cap, bos_eos, tokenizer):
    if bos_eos and cap == 1:
        cap = 2
    encoder = TextEncoder.fit(train, tokenizer, pad_width=pad_width, cap=cap, bos_eos=bos_eos)
    enc = encoder.encode(texts)
    assert enc.ids.shape == enc.mask.shape == (len(texts), encoder.length)
    assert encoder.length == encoder.max_len + 2 * pad_width
    # padding (0) exactly outside the sentence, which sits right after the left padding
    np.testing.assert_array_equal(enc.mask, enc.ids != 0)
    positions = np.arange(encoder.length) - pad_width
    np.testing.assert_array_equal(enc.mask, (positions >= 0) & (positions < enc.lengths[:, None]))
    assert (enc.lengths <= encoder.max_len).all()
    assert enc.truncated == sum(len(encoder.tokenizer(t)) + 2 * bos_eos > encoder.max_len for t in texts)
