"""RFC 6962 §2.1 Merkle Tree Hash and audit paths, and their verification (RFC 9162 §2.1.3.2).

    >>> leaves = [b"a", b"b", b"c"]
    >>> root, paths = tree_root_and_paths(leaves)
    >>> root == merkle_tree_hash(leaves)
    True
    >>> verify_inclusion(leaves[2], 2, 3, paths[2], root)
    True

Leaves are the raw inputs; this module applies the 0x00 leaf prefix and the
0x01 node prefix. An odd node is never paired with itself: the tree splits at
the largest power of two below n, as the RFC says.
"""

from __future__ import annotations

import hashlib
from typing import Sequence

__all__ = [
    "EMPTY_ROOT",
    "leaf_hash",
    "node_hash",
    "merkle_tree_hash",
    "audit_path",
    "tree_root_and_paths",
    "verify_inclusion",
    "root_from_path",
]

_sha256 = hashlib.sha256
EMPTY_ROOT = _sha256(b"").digest()


def leaf_hash(data: bytes) -> bytes:
    return _sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return _sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two strictly below n (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def _root_of_hashes(hashes: Sequence[bytes]) -> bytes:
    n = len(hashes)
    if n == 1:
        return hashes[0]
    k = _split(n)
    return node_hash(_root_of_hashes(hashes[:k]), _root_of_hashes(hashes[k:]))


def merkle_tree_hash(leaves: Sequence[bytes]) -> bytes:
    """MTH(D[n]); MTH of no leaves is SHA-256 of the empty string."""
    if not leaves:
        return EMPTY_ROOT
    return _root_of_hashes([leaf_hash(d) for d in leaves])


def audit_path(index: int, leaves: Sequence[bytes]) -> list[bytes]:
    """PATH(m, D[n]) for one leaf. For every leaf of a tree use :func:`tree_root_and_paths`."""
    if not 0 <= index < len(leaves):
        raise IndexError(f"leaf index {index} is outside a tree of {len(leaves)} leaves")
    hashes = [leaf_hash(d) for d in leaves]
    path: list[bytes] = []
    lo, hi = 0, len(hashes)
    # Walk down from the root, collecting the sibling subtree roots, then reverse (leaf first).
    while hi - lo > 1:
        k = _split(hi - lo)
        if index - lo < k:
            path.append(_root_of_hashes(hashes[lo + k : hi]))
            hi = lo + k
        else:
            path.append(_root_of_hashes(hashes[lo : lo + k]))
            lo = lo + k
    path.reverse()
    return path


def tree_root_and_paths(leaves: Sequence[bytes], *, hashed: bool = False) -> tuple[bytes, list[list[bytes]]]:
    """The root and every leaf's audit path in O(n log n). ``hashed``: leaves are already leaf hashes."""
    if not leaves:
        return EMPTY_ROOT, []
    hashes = list(leaves) if hashed else [leaf_hash(d) for d in leaves]
    paths: list[list[bytes]] = [[] for _ in hashes]
    root = _build(hashes, 0, len(hashes), paths)
    return root, paths


def _build(hashes: list[bytes], lo: int, hi: int, paths: list[list[bytes]]) -> bytes:
    if hi - lo == 1:
        return hashes[lo]
    k = lo + _split(hi - lo)
    left = _build(hashes, lo, k, paths)
    right = _build(hashes, k, hi, paths)
    # Children are built first, so each path grows from the leaf upwards.
    for i in range(lo, k):
        paths[i].append(right)
    for i in range(k, hi):
        paths[i].append(left)
    return node_hash(left, right)


def root_from_path(leaf: bytes, index: int, size: int, path: Sequence[bytes], *, hashed: bool = False) -> bytes | None:
    """The root a path leads to from a leaf, or None when the path's shape cannot fit the tree."""
    if not 0 <= index < size:
        return None
    fn, sn = index, size - 1
    r = leaf if hashed else leaf_hash(leaf)
    for p in path:
        if sn == 0 or len(p) != 32:
            return None
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        return None
    return r


def verify_inclusion(
    leaf: bytes, index: int, size: int, path: Sequence[bytes], root: bytes, *, hashed: bool = False
) -> bool:
    """True when ``path`` proves ``leaf`` at ``index`` of a tree of ``size`` leaves with ``root``."""
    return root_from_path(leaf, index, size, path, hashed=hashed) == root
