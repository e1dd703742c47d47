import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jaxcnn.data.tokenize import clean_str, clean_str_sst, get_tokenizer
from jaxcnn.errors import ConfigError, DataError


@pytest.mark.parametrize("raw, cleaned", [
    ("It's a don't-miss film (really)!", "it 's a do n't miss film ( really ) !"),
    ("We'll see, they've said; you'd know?", "we 'll see , they 've said you 'd know ?"),
    ("crème brûlée", "cr me br l e"),  # Kim keeps ASCII letters only
    ("  ``Quoted''   text\t", "``quoted'' text"),
    ("", ""),
])
def test_clean_str_known_answers(raw, cleaned):
    assert clean_str(raw) == cleaned


def test_clean_str_sst_only_drops_odd_characters_and_lowercases():
    assert clean_str_sst("-LRB- Sci-fi -RRB- rehash , is n't it ?") == "lrb sci fi rrb rehash , is n't it ?"


@pytest.mark.parametrize("config, text, tokens", [
    ("kim", "Don't stop!", ["do", "n't", "stop", "!"]),
    ("kim_sst", "Wo n't STOP .", ["wo", "n't", "stop"]),
    ("whitespace", "Hello  World\tagain", ["Hello", "World", "again"]),
    ({"type": "whitespace", "lowercase": True}, "Hello World", ["hello", "world"]),
    ("regex", "Hi, it's 3.5km!", ["hi", ",", "it", "'", "s", "3", ".", "5km", "!"]),
    ({"type": "regex", "lowercase": False}, "Hi there", ["Hi", "there"]),
    ("char", "我 爱 北京", ["我", "爱", "北", "京"]),
])
def test_tokenizers(config, text, tokens):
    tok = get_tokenizer(config)
    assert tok(text) == tokens
    assert tok.batch([text, ""]) == [tokens, []]


@pytest.mark.parametrize("name", ["kim", "kim_sst", "whitespace", "regex", "char"])
def test_config_round_trip_is_json(name):
    tok = get_tokenizer(name)
    config = json.loads(json.dumps(tok.to_config()))
    assert config["type"] == tok.name == name
    assert get_tokenizer(config) == tok


def test_unknown_tokenizer_and_option_are_config_errors():
    with pytest.raises(ConfigError, match="unknown tokenizer 'spacy'"):
        get_tokenizer("spacy")
    with pytest.raises(ConfigError, match="has no option"):
        get_tokenizer({"type": "kim", "lowercase": True})


def _write_hf_tokenizer(path):
    import tokenizers  # the optional extra; the test environment must have it

    model = tokenizers.models.WordLevel({"[UNK]": 0, "hello": 1, "world": 2}, unk_token="[UNK]")
    tok = tokenizers.Tokenizer(model)
    tok.normalizer = tokenizers.normalizers.Lowercase()
    tok.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    tok.save(str(path))


def test_hf_tokenizer_file_is_embedded_in_its_config(tmp_path):
    path = tmp_path / "tokenizer.json"
    _write_hf_tokenizer(path)
    tok = get_tokenizer({"type": "hf", "path": str(path)})
    assert tok("Hello WORLD!") == ["hello", "world", "[UNK]"]
    config = json.loads(json.dumps(tok.to_config()))
    path.unlink()  # prediction must not need the original file
    again = get_tokenizer(config)
    assert again.batch(["hello", "world hello"]) == [["hello"], ["world", "hello"]]


def test_hf_tokenizer_bad_file(tmp_path):
    missing = tmp_path / "missing.json"
    with pytest.raises(DataError, match="missing.json: cannot read tokenizer file"):
        get_tokenizer({"type": "hf", "path": str(missing)})
    bad = tmp_path / "bad.json"
    bad.write_text("{\n  nope", encoding="utf-8")
    with pytest.raises(DataError, match=r"bad.json:2: not JSON"):
        get_tokenizer({"type": "hf", "path": str(bad)})


@given(st.text())
def test_tokenizers_never_crash_and_give_clean_tokens(text):
    for name in ("kim", "kim_sst", "whitespace", "regex", "char"):
        tokens = get_tokenizer(name)(text)
        assert all(t and not any(c.isspace() for c in t) for t in tokens), (name, tokens)


@given(st.text(alphabet=st.characters(codec="ascii")))
def test_kim_tokens_use_only_kims_alphabet(text):
    allowed = set("abcdefghijklmnopqrstuvwxyz0123456789(),!?'`")
    assert all(set(t) <= allowed for t in get_tokenizer("kim")(text))


def test_kim_cased_keeps_case_for_trec():
    assert get_tokenizer("kim_cased")("What's the capital of France?") == ["What", "'s", "the", "capital", "of",
                                                                            "France", "?"]
    assert get_tokenizer("kim")("What's France?") == ["what", "'s", "france", "?"]
    assert get_tokenizer(get_tokenizer("kim_cased").to_config()).name == "kim_cased"
