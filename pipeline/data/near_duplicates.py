"""Near-duplicate clusters in bounded memory: MinHash signatures of word 3-grams computed with numpy in
chunks, LSH banding (the bands and rows datasketch's MinHashLSH picks for the threshold), candidates
confirmed by the signature estimate of Jaccard similarity, and clusters as connected components (scipy).

Memory grows linearly with the number of texts (NUM_PERM 32-bit values plus one 64-bit key per band per
text); no list of all similar pairs is ever built: each LSH bucket contributes at most two confirmed edges
per member (to the bucket's first member and to its neighbour in the bucket), so a cluster of k similar texts
costs O(k) edges, not O(k^2).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import xxhash

if TYPE_CHECKING:
    from collections.abc import Sequence

NUM_PERM = 128  # MinHash permutations: the Jaccard estimate's standard error is ~1/sqrt(128) = 0.09 at most
# Signatures are kept as their low 16 bits once the band keys are made from all 32: half the memory, and
# unequal values collide with probability 1/65536, which moves a Jaccard estimate by < 0.00002.
KEPT_DTYPE = np.uint16
CHUNK = 512  # texts hashed per numpy step: 512 x ~60 shingles x 128 x 8 bytes ~ 32 MB
SEED = 1


def _permutations(seed: int = SEED) -> tuple[np.ndarray, np.ndarray]:
    """Multiply-shift hash parameters: odd 64-bit multipliers and 64-bit offsets, one pair per permutation."""
    rng = np.random.default_rng(seed)
    a = rng.integers(1, 2**63, size=NUM_PERM, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
    b = rng.integers(0, 2**63, size=NUM_PERM, dtype=np.uint64)
    return a, b


def word_hashes(normalized: str) -> list[int]:
    """Stable 32-bit hashes of the words of a normalised text (one empty word when it has none)."""
    return [xxhash.xxh32_intdigest(w) for w in (normalized.encode("utf-8").split() or [b""])]


def _shingles(words: np.ndarray) -> np.ndarray:
    """64-bit hashes of the word 3-grams of one text (the words themselves when fewer than three)."""
    if len(words) < 3:
        return words.astype(np.uint64)
    w = words.astype(np.uint64)
    return w[:-2] * np.uint64(0x9E3779B97F4A7C15) ^ w[1:-1] * np.uint64(0xC2B2AE3D27D4EB4F) ^ w[2:]


def signatures(texts: Sequence[list[int]]) -> np.ndarray:
    """(len(texts), NUM_PERM) uint32 MinHash signatures of the word 3-grams, from each text's word hashes."""
    a, b = _permutations()
    out = np.empty((len(texts), NUM_PERM), dtype=np.uint32)
    for start in range(0, len(texts), CHUNK):
        if not texts[start : start + CHUNK]:
            break
        shingles = [_shingles(np.asarray(t, dtype=np.uint32)) for t in texts[start : start + CHUNK]]
        sizes = np.fromiter((len(s) for s in shingles), dtype=np.int64, count=len(shingles))
        flat = np.concatenate(shingles)
        with np.errstate(over="ignore"):  # multiply-shift hashing wraps around 2^64 by design
            hashed = np.multiply(flat[:, None], a[None, :])
            hashed += b[None, :]
            hashed >>= np.uint64(32)
        starts = np.concatenate(([0], np.cumsum(sizes)[:-1]))
        out[start : start + len(shingles)] = np.minimum.reduceat(hashed, starts, axis=0)
    return out


def lsh_shape(threshold: float) -> tuple[int, int]:
    """(bands, rows per band) that datasketch's MinHashLSH chooses for this threshold and NUM_PERM."""
    from datasketch import MinHashLSH

    lsh = MinHashLSH(threshold=threshold, num_perm=NUM_PERM)
    return lsh.b, lsh.r


def band_keys(sigs: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """(n, bands) uint64 keys: one hash of each band's rows of every signature."""
    rng = np.random.default_rng(SEED + 1)
    weights = rng.integers(1, 2**63, size=rows, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
    keys = np.empty((len(sigs), bands), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for band in range(bands):
            part = sigs[:, band * rows : (band + 1) * rows].astype(np.uint64)
            keys[:, band] = (part * weights).sum(axis=1) + np.uint64(band)
    return keys


def estimate(sigs: np.ndarray, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Estimated Jaccard similarity of the pairs (left[k], right[k]): the share of equal signature values."""
    out = np.empty(len(left), dtype=np.float32)
    for start in range(0, len(left), 65536):
        stop = start + 65536
        out[start:stop] = (sigs[left[start:stop]] == sigs[right[start:stop]]).mean(axis=1)
    return out


def candidate_edges(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (first, other) of texts sharing a bucket in some band: each member with the bucket's first member
    and with its predecessor, so a bucket of k texts gives fewer than 2k pairs."""
    lefts, rights = [], []
    for band in range(keys.shape[1]):
        order = np.argsort(keys[:, band], kind="stable")
        sorted_keys = keys[order, band]
        same = sorted_keys[1:] == sorted_keys[:-1]
        if not same.any():
            continue
        run_start = np.concatenate(([True], ~same))  # True where a new bucket begins
        first = order[np.maximum.accumulate(np.where(run_start, np.arange(len(order)), 0))]
        later = ~run_start
        lefts += [first[later], order[:-1][same]]
        rights += [order[later], order[1:][same]]
    if not lefts:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty
    pairs = np.unique(np.stack([np.concatenate(lefts), np.concatenate(rights)], axis=1), axis=0)
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    return pairs[:, 0], pairs[:, 1]


@dataclass
class Clusters:
    """Near-duplicate clusters of a set of texts: `label[i]` is the cluster of text i (-1 = no near duplicate);
    `members` lists each cluster's text indices in order, the first one being the one dedup keeps."""

    label: np.ndarray
    members: list[np.ndarray]
    similarity: dict[tuple[int, int], float]

    @property
    def examples(self) -> int:
        """Texts that belong to a cluster of two or more."""
        return int(sum(len(m) for m in self.members))


def clusters(sigs: np.ndarray, keys: np.ndarray, threshold: float) -> Clusters:
    """Connected components of the confirmed near-duplicate edges (estimated Jaccard >= threshold), from the
    signatures and their band keys."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    count = len(sigs)
    left, right = candidate_edges(keys)
    scores = estimate(sigs, left, right)
    keep = scores >= threshold
    left, right, scores = left[keep], right[keep], scores[keep]
    graph = coo_matrix((np.ones(len(left), dtype=np.int8), (left, right)), shape=(count, count))
    _, component = connected_components(graph, directed=False)
    sizes = np.bincount(component, minlength=count)
    label = np.where(sizes[component] > 1, component, -1)
    grouped = np.flatnonzero(label >= 0)
    order = grouped[np.argsort(label[grouped], kind="stable")]
    bounds = np.flatnonzero(np.diff(label[order])) + 1
    members = sorted(np.split(order, bounds) if len(order) else [], key=lambda m: int(m[0]))
    similarity = {
        (int(i), int(j)): float(s)
        for i, j, s in zip(left[:10000], right[:10000], scores[:10000], strict=True)
    }
    return Clusters(label=label, members=members, similarity=similarity)


def matches(
    train: np.ndarray, train_keys: np.ndarray, other: np.ndarray, other_keys: np.ndarray, threshold: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(other index, train index, similarity) for each text of `other` that near-duplicates a train text (the
    most similar of the train texts it shares an LSH bucket with), in order of `other`."""
    found_o, found_t = [], []
    for band in range(train_keys.shape[1] if len(train) and len(other) else 0):
        order = np.argsort(train_keys[:, band], kind="stable")
        sorted_keys = train_keys[order, band]
        pos = np.minimum(np.searchsorted(sorted_keys, other_keys[:, band]), len(order) - 1)
        hit = sorted_keys[pos] == other_keys[:, band]
        found_o.append(np.flatnonzero(hit))
        found_t.append(order[pos[hit]])
    if not found_o:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty, np.empty(0, dtype=np.float32)
    o, t = np.concatenate(found_o), np.concatenate(found_t)
    scores = (other[o] == train[t]).mean(axis=1) if len(o) else np.empty(0, dtype=np.float32)
    keep = scores >= threshold
    o, t, scores = o[keep], t[keep], scores[keep]
    best = np.lexsort((t, -scores, o))
    o, t, scores = o[best], t[best], scores[best]
    first = np.concatenate(([True], o[1:] != o[:-1])) if len(o) else np.empty(0, dtype=bool)
    return o[first], t[first], scores[first]
