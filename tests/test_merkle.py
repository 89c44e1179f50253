"""RFC 6962 Merkle trees: the RFC's published test vectors and properties over every size 1..300."""

from __future__ import annotations

import hashlib

import pytest
from ledger_verify.merkle import (
    EMPTY_ROOT,
    audit_path,
    leaf_hash,
    merkle_tree_hash,
    node_hash,
    root_from_path,
    tree_root_and_paths,
    verify_inclusion,
)

# The RFC 6962 reference test data (certificate-transparency's merkle_tree_test): eight leaves and the roots of
# their first n; and audit paths for some (leaf, size) pairs.
RFC_LEAVES = [
    bytes.fromhex(h)
    for h in ["", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f"]
]
RFC_ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
RFC_PATHS = [
    (0, 1, []),
    (
        0,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        5,
        8,
        [
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (2, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (
        1,
        5,
        [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
]


def reference_mth(leaves: list[bytes]) -> bytes:
    """RFC 6962 §2.1 written as recursively as the RFC writes it."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaf_hash(leaves[0])
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    return node_hash(reference_mth(leaves[:k]), reference_mth(leaves[k:]))


def test_empty_tree() -> None:
    assert merkle_tree_hash([]) == EMPTY_ROOT == hashlib.sha256(b"").digest()


@pytest.mark.parametrize("n", range(1, 9))
def test_rfc6962_roots(n: int) -> None:
    assert merkle_tree_hash(RFC_LEAVES[:n]).hex() == RFC_ROOTS[n - 1]


@pytest.mark.parametrize("index, size, expected", RFC_PATHS)
def test_rfc6962_audit_paths(index: int, size: int, expected: list[str]) -> None:
    assert [p.hex() for p in audit_path(index, RFC_LEAVES[:size])] == expected
    assert verify_inclusion(
        RFC_LEAVES[index], index, size, audit_path(index, RFC_LEAVES[:size]), bytes.fromhex(RFC_ROOTS[size - 1])
    )


# Every size up to 130 (past the boundaries at 64 and 128), and the sizes around the next boundary.
SIZES = [*range(1, 131), 255, 256, 257, 300]


def test_every_leaf_of_every_size_proves_and_every_change_fails() -> None:
    leaves = [f"leaf-{i}".encode() for i in range(301)]
    for n in SIZES:
        tree = leaves[:n]
        root, paths = tree_root_and_paths(tree)
        assert root == reference_mth(tree) == merkle_tree_hash(tree)
        for i in range(n):
            path = paths[i]
            assert root_from_path(tree[i], i, n, path) == root
            assert not verify_inclusion(tree[i] + b"!", i, n, path, root)  # changed leaf
            if n > 1:
                assert not verify_inclusion(tree[i], (i + 1) % n, n, path, root)  # changed index
                # A changed size fails whenever it changes the path's shape. (Where it does not, e.g. leaf 0 of 3 or
                # of 4, the path alone cannot tell: the size is bound by the signed anchor's counts and ranges.)
                for other in (n - 1, n + 1):
                    if i < other and len(audit_path(i, leaves[:other])) != len(path):
                        assert not verify_inclusion(tree[i], i, other, path, root)
                    if other <= i:
                        assert not verify_inclusion(tree[i], i, other, path, root)
                flipped = [bytes([path[0][0] ^ 1]) + path[0][1:], *path[1:]]
                assert not verify_inclusion(tree[i], i, n, flipped, root)  # changed path element
                assert not verify_inclusion(tree[i], i, n, path[:-1], root)  # shortened path
            assert not verify_inclusion(tree[i], i, n, [*path, root], root)  # lengthened path


def test_odd_nodes_are_never_paired_with_themselves() -> None:
    a, b, c = (leaf_hash(x) for x in (b"a", b"b", b"c"))
    assert merkle_tree_hash([b"a", b"b", b"c"]) == node_hash(node_hash(a, b), c)
    assert merkle_tree_hash([b"a", b"b", b"c"]) != node_hash(node_hash(a, b), node_hash(c, c))


def test_a_rendered_path_is_recognised_and_any_other_text_is_not() -> None:
    from ledger_verify.merkle import tree_levels
    from ledger_verify.rows import PathRenderer

    for size in range(1, 40):
        levels = tree_levels([bytes([i % 256, i // 256]) for i in range(size)])
        paths = PathRenderer([[h.hex() for h in level] for level in levels[:-1]], ";")
        expected = tree_root_and_paths([bytes([i % 256, i // 256]) for i in range(size)])[1]
        for i in range(size):
            text = ";".join(p.hex() for p in expected[i])
            assert paths.renders(i, text) and paths.path(i) == text
            others = [text + ";", text[:-1], "0" + text[1:] if text[:1] != "0" else "1" + text[1:]]
            if text:
                others += [text[:64] + "," + text[65:] if len(text) > 64 else text[:-1] + "x", ""]
            for other in others:
                if other != text:
                    assert not paths.renders(i, other)
