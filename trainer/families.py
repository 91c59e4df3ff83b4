"""Prompt families: paraphrases of one question, and answers that are the same answer.

Held-out and regression sets are drawn as whole families, so a held-out prompt is
never trained verbatim under a paraphrase. Two items are one family when

- their normalized prompts (the first user message) are equal, or near-duplicates:
  character-trigram Jaccard similarity ≥ ``similarity``; or
- their normalized references (the corrected response) are equal and non-empty.

Families are the connected components of that relation (union-find). An
evaluation prompt passes its family name as ``family_hint``: every item of that
name is one family, a family holding one is an *evaluation family*, and its id
is that name. Any other family's id is ``fam-`` + the first 12 hex digits of the
sha256 of its smallest normalized prompt, so the same members give the same id.

Near-duplicates are found with prefix filtering (AllPairs): with the trigrams of
each prompt ordered rarest first, two prompts at Jaccard ≥ t must share one of
the first ``n - ceil(t·n) + 1`` trigrams of each, so only prompts sharing a rare
trigram are compared exactly. Thousands of prompts cluster in well under a second.
"""

from __future__ import annotations

import hashlib
import logging
import math
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

logger = logging.getLogger(__name__)

FAMILY_PREFIX = "fam-"
FAMILY_ID_HEX = 12
_GRAM = 3
_EPSILON = 1e-9


class _PunctuationToSpace(dict[int, int]):
    """A ``str.translate`` table filled on first sight: punctuation (P*) → space."""

    def __missing__(self, codepoint: int) -> int:
        is_punctuation = unicodedata.category(chr(codepoint)).startswith("P")
        self[codepoint] = _SPACE if is_punctuation else codepoint
        return self[codepoint]


_SPACE = ord(" ")
_PUNCTUATION = _PunctuationToSpace()


def normalize_prompt(text: str) -> str:
    """NFKC, case-folded, punctuation replaced by spaces, whitespace collapsed."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    return " ".join(folded.translate(_PUNCTUATION).split())


@dataclass(frozen=True)
class FamilyItem:
    """One prompt to cluster: a pool sample (key = sample_id) or an evaluation prompt."""

    key: str
    prompt: str
    reference: str = ""
    family_hint: str | None = None


def trigrams(normalized: str) -> frozenset[str]:
    """The character trigrams of a normalized prompt, padded with one space each side."""
    padded = f" {normalized} "
    if len(padded) <= _GRAM:
        return frozenset({padded})
    return frozenset(padded[i : i + _GRAM] for i in range(len(padded) - _GRAM + 1))


def jaccard(left: frozenset[str], right: frozenset[str]) -> float:
    """|A ∩ B| / |A ∪ B| (1.0 for two empty sets)."""
    shared = len(left & right)
    union = len(left) + len(right) - shared
    return shared / union if union else 1.0


class _UnionFind:
    def __init__(self, size: int) -> None:
        self.parent = list(range(size))

    def find(self, node: int) -> int:
        root = node
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[node] != root:
            self.parent[node], node = root, self.parent[node]
        return root

    def union(self, left: int, right: int) -> None:
        a, b = self.find(left), self.find(right)
        if a != b:
            self.parent[max(a, b)] = min(a, b)

    def union_all(self, nodes: Iterable[int]) -> None:
        first: int | None = None
        for node in nodes:
            if first is None:
                first = node
            else:
                self.union(first, node)


def _prefix_length(size: int, similarity: float) -> int:
    return size - math.ceil(similarity * size - _EPSILON) + 1


def near_duplicate_pairs(
    prompts: Sequence[str],
    *,
    similarity: float,
    joined: Callable[[int, int], bool] | None = None,
) -> Iterator[tuple[int, int]]:
    """Index pairs (smaller first) of normalized prompts at trigram Jaccard ≥ ``similarity``.

    ``joined(a, b)`` true means the caller already has a and b in one family:
    the pair is not verified (nor returned). Candidates come from the prefix
    index (prompts sharing one of the rarest trigrams) and pruned by size;
    pairs are yielded as found, so a caller's unions already count for ``joined``.
    """
    grams = [trigrams(p) for p in prompts]
    frequency: Counter[str] = Counter(g for gs in grams for g in gs)
    rank = {g: r for r, g in enumerate(sorted(frequency, key=lambda g: (frequency[g], g)))}
    index: dict[str, list[int]] = {}
    for item in sorted(range(len(prompts)), key=lambda i: (len(grams[i]), i)):
        size = len(grams[item])
        prefix = sorted(grams[item], key=rank.__getitem__)[: _prefix_length(size, similarity)]
        candidates: set[int] = set()
        for gram in prefix:
            candidates.update(index.get(gram, ()))
        smallest = similarity * size - _EPSILON
        for other in sorted(candidates):
            if len(grams[other]) < smallest or (joined is not None and joined(item, other)):
                continue
            if jaccard(grams[item], grams[other]) >= similarity - _EPSILON:
                yield min(item, other), max(item, other)
        for gram in prefix:
            index.setdefault(gram, []).append(item)


def _family_id(members: Sequence[int], items: Sequence[FamilyItem], prompts: Sequence[str]) -> str:
    hints = sorted({h for i in members if (h := items[i].family_hint) is not None})
    if len(hints) > 1:
        logger.warning("evaluation families %s are paraphrases of each other: one family", hints)
    if hints:
        return hints[0]
    named = sorted(p for i in members if (p := prompts[i])) or sorted(
        normalize_prompt(items[i].reference) or items[i].key for i in members
    )
    digest = hashlib.sha256(named[0].encode()).hexdigest()
    return f"{FAMILY_PREFIX}{digest[:FAMILY_ID_HEX]}"


def _union_by(forest: _UnionFind, values: Sequence[str]) -> None:
    """Join every pair of items whose (non-empty) value is equal."""
    groups: dict[str, list[int]] = {}
    for item, value in enumerate(values):
        if value:
            groups.setdefault(value, []).append(item)
    for members in groups.values():
        forest.union_all(members)


def assign_families(items: Sequence[FamilyItem], *, similarity: float) -> dict[str, str]:
    """Item key → family id (see the module docstring); keys must be unique."""
    keys = [item.key for item in items]
    if len(set(keys)) != len(keys):
        msg = "assign_families: an item key appears twice; keys must be unique"
        raise ValueError(msg)
    prompts = [normalize_prompt(item.prompt) for item in items]
    forest = _UnionFind(len(items))
    _union_by(forest, prompts)
    _union_by(forest, [normalize_prompt(item.reference) for item in items])
    _union_by(forest, [item.family_hint or "" for item in items])
    distinct = sorted({p for p in prompts if p})
    first_item = {p: i for i, p in reversed(list(enumerate(prompts)))}
    owner = [first_item[p] for p in distinct]
    for left, right in near_duplicate_pairs(
        distinct,
        similarity=similarity,
        joined=lambda a, b: forest.find(owner[a]) == forest.find(owner[b]),
    ):
        forest.union(owner[left], owner[right])
    components: dict[int, list[int]] = {}
    for item in range(len(items)):
        components.setdefault(forest.find(item), []).append(item)
    families: dict[str, str] = {}
    for members in components.values():
        family = _family_id(members, items, prompts)
        families.update((items[i].key, family) for i in members)
    return families
