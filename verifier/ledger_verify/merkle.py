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
import importlib
from collections.abc import Callable, Sequence
from typing import Protocol, cast

from ledger_verify.errors import InclusionError

__all__ = [
    "EMPTY_ROOT",
    "audit_path",
    "check_inclusion",
    "inclusion_path_length",
    "leaf_hash",
    "merkle_tree_hash",
    "node_hash",
    "root_from_path",
    "tree_levels",
    "tree_root_and_paths",
    "verify_inclusion",
]


class _Hash(Protocol):
    def digest(self) -> bytes: ...


def _short_input_sha256() -> Callable[[bytes], _Hash]:
    """SHA-256 for the short inputs of a tree (a 33-byte leaf, a 65-byte node): the interpreter's own
    (``_sha2`` from CPython 3.12, ``_sha256`` before), else hashlib's. ``hashlib.sha256`` of CPython 3.11
    fetches the digest from OpenSSL 3 on every call, which costs more than hashing a node."""
    for name in ("_sha2", "_sha256"):
        try:
            return cast(Callable[[bytes], _Hash], importlib.import_module(name).sha256)
        except (ImportError, AttributeError):
            continue
    return hashlib.sha256


_sha256 = _short_input_sha256()
EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(data: bytes) -> bytes:
    return _sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return _sha256(b"\x01" + left + right).digest()


def _levels(hashes: list[bytes]) -> list[list[bytes]]:
    """Every level of the tree, leaves first. An unpaired last node moves up unchanged: bottom-up, that is
    exactly RFC 6962's split at the largest power of two below n (never a node paired with itself)."""
    levels = [hashes]
    sha256 = _sha256
    while len(hashes) > 1:
        nxt = [sha256(b"\x01" + a + b).digest() for a, b in zip(hashes[0::2], hashes[1::2])]
        if len(hashes) & 1:
            nxt.append(hashes[-1])
        levels.append(nxt)
        hashes = nxt
    return levels


def merkle_tree_hash(leaves: Sequence[bytes]) -> bytes:
    """MTH(D[n]); MTH of no leaves is SHA-256 of the empty string."""
    if not leaves:
        return EMPTY_ROOT
    sha256 = _sha256
    return _levels([sha256(b"\x00" + d).digest() for d in leaves])[-1][0]


def _path(levels: list[list[bytes]], index: int) -> list[bytes]:
    path = []
    for level in levels[:-1]:
        sibling = index ^ 1
        if sibling < len(level):
            path.append(level[sibling])
        index >>= 1
    return path


def audit_path(index: int, leaves: Sequence[bytes]) -> list[bytes]:
    """PATH(m, D[n]) for one leaf, leaf end first."""
    if not 0 <= index < len(leaves):
        raise IndexError(f"leaf index {index} is outside a tree of {len(leaves)} leaves")
    return _path(_levels([leaf_hash(d) for d in leaves]), index)


def tree_root_and_paths(leaves: Sequence[bytes], *, hashed: bool = False) -> tuple[bytes, list[list[bytes]]]:
    """The root and every leaf's audit path, in O(n log n). ``hashed``: leaves are already leaf hashes."""
    if not leaves:
        return EMPTY_ROOT, []
    levels = tree_levels(leaves, hashed=hashed)
    return levels[-1][0], [_path(levels, i) for i in range(len(leaves))]


def tree_levels(leaves: Sequence[bytes], *, hashed: bool = False) -> list[list[bytes]]:
    """All levels of the tree (leaf hashes first, the root last), for taking paths one at a time."""
    sha256 = _sha256
    return _levels(list(leaves) if hashed else [sha256(b"\x00" + d).digest() for d in leaves])


def inclusion_path_length(index: int, size: int) -> int:
    """How many elements the audit path of leaf ``index`` in a tree of ``size`` leaves has."""
    fn, sn, n = index, size - 1, 0
    while sn:
        if not fn & 1 and fn == sn:
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        fn >>= 1
        sn >>= 1
        n += 1
    return n


def _climb(
    leaf: bytes, index: int, size: int, path: Sequence[bytes], proven: dict[tuple[int, int], bytes] | None
) -> tuple[bytes, list[tuple[tuple[int, int], bytes]]]:
    """RFC 9162 §2.1.3.2: the root ``path`` leads to from the leaf hash ``leaf`` at ``index``, and the nodes
    passed on the way as ((level, position), hash). With ``proven`` (nodes already proven to reach the same
    root), a step whose sibling and own node equal proven ones takes their proven parent instead of hashing
    it again; every path element is still compared, none is skipped. Raises :class:`InclusionError` when
    the path cannot have this shape."""
    if not 0 <= index < size:
        raise InclusionError(f"leaf index {index} is outside a tree of {size} leaves")
    if len(path) != inclusion_path_length(index, size):
        raise InclusionError(
            "wrong path length", path_length=len(path), expected_length=inclusion_path_length(index, size)
        )
    fn, sn = index, size - 1
    level, pos = 0, index
    r = leaf
    trail = [((0, index), r)]
    sha256 = _sha256
    memo: dict[tuple[int, int], bytes] = proven if proven is not None else {}
    for p in path:
        if len(p) != 32:
            raise InclusionError(f"path element {len(trail)} is {len(p)} bytes, not 32")
        if fn & 1 or fn == sn:
            known = memo.get((level + 1, pos >> 1)) if fn & 1 else None
            if known is not None and memo.get((level, pos - 1)) == p and memo.get((level, pos)) == r:
                r = known
            else:
                r = sha256(b"\x01" + p + r).digest()
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
                    level += 1
                    pos >>= 1
        else:
            known = memo.get((level + 1, pos >> 1))
            if known is not None and memo.get((level, pos + 1)) == p and memo.get((level, pos)) == r:
                r = known
            else:
                r = sha256(b"\x01" + r + p).digest()
        fn >>= 1
        sn >>= 1
        level += 1
        pos >>= 1
        trail.append(((level, pos), r))
    return r, trail


def check_inclusion(
    leaf: bytes,
    index: int,
    size: int,
    path: Sequence[bytes],
    root: bytes,
    *,
    hashed: bool = False,
    proven: dict[tuple[int, int], bytes] | None = None,
) -> None:
    """The one inclusion verifier: returns when ``path`` proves ``leaf`` at ``index`` of a tree of ``size``
    leaves with ``root``, else raises :class:`InclusionError` (computed against expected root, or the wrong
    path length). ``proven``: a dict kept across calls for the same root, so that rows sharing the upper
    levels of their paths hash each distinct node once."""
    computed, trail = _climb(leaf if hashed else leaf_hash(leaf), index, size, path, proven)
    if computed != root:
        raise InclusionError("the path does not reach the root", computed=computed, expected=root)
    if proven is not None:
        proven.update(trail)


def root_from_path(leaf: bytes, index: int, size: int, path: Sequence[bytes], *, hashed: bool = False) -> bytes | None:
    """The root a path leads to from a leaf, or None when the path's shape cannot fit the tree."""
    try:
        return _climb(leaf if hashed else leaf_hash(leaf), index, size, path, None)[0]
    except InclusionError:
        return None


def verify_inclusion(
    leaf: bytes, index: int, size: int, path: Sequence[bytes], root: bytes, *, hashed: bool = False
) -> bool:
    """True when ``path`` proves ``leaf`` at ``index`` of a tree of ``size`` leaves with ``root``."""
    try:
        check_inclusion(leaf, index, size, path, root, hashed=hashed)
    except InclusionError:
        return False
    return True
