"""PostgreSQL snapshots as the drain's outbox cursor (``pg_snapshot`` text ``xmin:xmax:xip,...``).

    >>> s = Snapshot.parse("100:105:101,103")
    >>> [x for x in range(99, 107) if s.sees_finished(x)]
    [99, 100, 102, 104]
    >>> s.text()
    '100:105:101,103'

A snapshot sees a transaction as finished when its id is below ``xmin``, or below ``xmax`` and not in
progress (``xip``). A transaction can only finish after the snapshots that saw it running, never before,
so the rows of the transactions that snapshot ``hi`` sees finished and snapshot ``lo`` does not are
exactly the rows that committed between the two: reading the outbox delta by delta reads every
committed row once, whatever order the writers committed in.
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["NOTHING_FINISHED", "Snapshot"]


class Snapshot(NamedTuple):
    xmin: int
    xmax: int
    xip: tuple[int, ...]

    @classmethod
    def parse(cls, text: str) -> Snapshot:
        """The ``pg_snapshot`` text form; raises ValueError for anything else."""
        parts = text.split(":")
        if len(parts) != 3:
            raise ValueError(f"{text!r} is not a pg_snapshot (xmin:xmax:xip,...)")
        xmin, xmax = int(parts[0]), int(parts[1])
        xip = tuple(int(x) for x in parts[2].split(",")) if parts[2] else ()
        if not 1 <= xmin <= xmax or any(not xmin <= x < xmax for x in xip):
            raise ValueError(f"{text!r} is not a pg_snapshot: need 1 <= xmin <= xip < xmax")
        return cls(xmin, xmax, xip)

    def sees_finished(self, xid: int) -> bool:
        """``pg_visible_in_snapshot(xid, self)``."""
        return xid < self.xmin or (xid < self.xmax and xid not in self.xip)

    def text(self) -> str:
        return f"{self.xmin}:{self.xmax}:{','.join(str(x) for x in self.xip)}"


# The cursor of a shard never drained: no transaction is finished, every row is pending.
NOTHING_FINISHED = Snapshot(1, 1, ())
