"""Stanford Sentiment Treebank trees: `(3 (2 (2 The) (2 Rock)) (4 ...))`, one sentence a line.

Parsed with an explicit stack, so nesting depth is limited by memory, not by Python's recursion limit. Memory is
bounded too: the phrases of one tree may total at most `MAX_PHRASE_CHARS` characters (each phrase repeats the words
below it, so a deep tree of many words would otherwise grow quadratically; SST's largest tree has 4588).
"""

from __future__ import annotations

import os
import re

from jaxcnn.data.readers import read_lines
from jaxcnn.errors import DataError

_TOKEN = re.compile(r"\(|\)|[^\s()]+")
NUM_LABELS = 5
MAX_PHRASE_CHARS = 1 << 24


def parse_tree(line: str, path: str | os.PathLike | None = None, line_no: int | None = None
               ) -> list[tuple[str, int]]:
    """All labelled phrases of one tree, as (space-joined leaf words, label), children before their parents;
    the last entry is the whole sentence."""
    tokens = _TOKEN.findall(line)

    def fail(message: str) -> DataError:
        return DataError(f"bad tree: {message}", path=path, line=line_no)

    if not tokens or tokens[0] != "(":
        raise fail("expected '(' at the start")
    stack: list[tuple[int, int]] = []  # (label, index of the node's first leaf)
    leaves: list[str] = []
    ends = [0]  # ends[k]: characters of the first k leaves joined by spaces, plus one
    phrases: list[tuple[str, int]] = []
    total = 0
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if tok == "(":
            if i > 0 and not stack:
                raise fail("text after the end of the tree")
            label = tokens[i + 1] if i + 1 < len(tokens) else ""
            if not (label.isascii() and label.isdigit()) or int(label) >= NUM_LABELS:
                raise fail(f"expected a label 0..{NUM_LABELS - 1} after '(', found {label[:20]!r}")
            stack.append((int(label), len(leaves)))
            i += 2
            continue
        if tok == ")":
            if not stack:
                raise fail("unbalanced ')'")
            label, start = stack.pop()
            if start == len(leaves):
                raise fail("a node without words")
            total += ends[-1] - ends[start]
            if total > MAX_PHRASE_CHARS:
                raise fail(f"its phrases exceed {MAX_PHRASE_CHARS} characters")
            phrases.append((" ".join(leaves[start:]), label))
        else:
            if not stack:
                raise fail("text after the end of the tree")
            leaves.append(tok)
            ends.append(ends[-1] + len(tok) + 1)
        i += 1
    if stack:
        raise fail(f"{len(stack)} unclosed '('")
    return phrases


def read_trees(path: str | os.PathLike, phrases: bool) -> tuple[list[str], list[int]]:
    """Reads a tree file (UTF-8). With `phrases`, every labelled phrase, deduplicated on its lowercased text
    (the first occurrence is kept), else the whole sentences with their root labels."""
    texts, labels = [], []
    seen: set[str] = set()
    for i, line in enumerate(read_lines(path, encoding="utf-8"), 1):
        if not line.strip():
            raise DataError("blank line (every line must hold a tree)", path=path, line=i)
        nodes = parse_tree(line, path, i)
        for text, label in nodes if phrases else nodes[-1:]:
            key = text.lower()
            if phrases and key in seen:
                continue
            seen.add(key)
            texts.append(text)
            labels.append(label)
    return texts, labels
