"""The export row format (SPEC §4): the columns, the CSV cell rule, audit paths as text, seq runs.

>>> neutralise('=HYPERLINK("http://x")')
'\\'=HYPERLINK("http://x")'
>>> restore(neutralise("+14155550123"))
'+14155550123'
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

__all__ = ["EXPORT_COLUMNS", "FORMULA_LEADS", "PathRenderer", "compress_seqs", "expand_seqs", "neutralise", "restore"]

EXPORT_COLUMNS = (
    "tenant_id",
    "seq",
    "event_id",
    "occurred_at",
    "recorded_at",
    "actor_type",
    "actor_id",
    "source",
    "event_type",
    "payload",
    "redacted_fields",
    "prev_hash",
    "event_hash",
    "cadence_id",
    "event_index",
    "event_path",
)

# A CSV text cell beginning with one of these gets one more leading "'" (a spreadsheet then shows it as
# text, never as a formula); "'" is among them so that removing one leading "'" always restores the value.
FORMULA_LEADS = ("=", "+", "-", "@", "\t", "\r", "'")


def neutralise(cell: str) -> str:
    """The CSV form of a text value: one more leading ``'`` when it begins with a formula lead."""
    return "'" + cell if cell.startswith(FORMULA_LEADS) else cell


def restore(cell: str) -> str:
    """The value of a CSV text cell: without its leading ``'``, which only :func:`neutralise` writes."""
    return cell[1:] if cell.startswith("'") else cell


class PathRenderer:
    """The rendered audit paths of one anchored range: leaf ``i``'s path is the hex of its siblings from the
    leaves up, joined by ``sep``. ``hex_levels`` holds the tree's levels as hex, leaves first, root excluded.
    The rendered suffix of each upper node is kept once used, so a path costs one concatenation."""

    def __init__(self, hex_levels: list[list[str]], sep: str) -> None:
        self.levels = hex_levels
        self.sep = sep
        # suffix[level][pos]: the kept text of node pos's path from that level up (None until first used)
        self.suffix: list[list[str | None]] = [[None] * len(level) for level in hex_levels]

    def path(self, index: int) -> str:
        return self._from(0, index)

    def paths(self, count: int) -> list[str]:
        """The paths of leaves 0 to ``count - 1``, in order."""
        return [self._from(0, i) for i in range(count)]

    def renders(self, index: int, text: str) -> bool:
        """Whether ``text`` is leaf ``index``'s path, compared without building it: the leaf's sibling, then
        the kept suffix of the node above."""
        if not self.levels:
            return text == ""
        nodes = self.levels[0]
        rest = self._from(1, index >> 1)
        sibling = index ^ 1
        if sibling >= len(nodes):
            return text == rest
        node = nodes[sibling]
        if not rest:
            return text == node
        return (
            len(text) == len(node) + len(self.sep) + len(rest)
            and text.startswith(node)
            and text.startswith(self.sep, len(node))
            and text.endswith(rest)
        )

    def _from(self, level: int, pos: int) -> str:
        if level == len(self.levels):
            return ""
        cache = self.suffix[level]
        got = cache[pos]
        if got is not None:
            return got
        nodes = self.levels[level]
        rest = self._from(level + 1, pos >> 1)
        sibling = pos ^ 1
        if sibling < len(nodes):
            got = nodes[sibling] + self.sep + rest if rest else nodes[sibling]
        else:
            got = rest  # an unpaired last node moves up without a sibling at this level
        if level:  # leaves are used once; only shared upper nodes are worth keeping
            cache[pos] = got
        return got


def compress_seqs(seqs: Iterable[int]) -> list[list[int]]:
    """Ascending seqs as [first, last] runs, for the manifest's list of exported rows."""
    runs: list[list[int]] = []
    for s in seqs:
        if runs and s == runs[-1][1] + 1:
            runs[-1][1] = s
        else:
            runs.append([s, s])
    return runs


def expand_seqs(runs: Iterable[Sequence[int]]) -> Iterator[int]:
    for a, b in runs:
        yield from range(a, b + 1)
