"""A drainer in its own process, for the race and crash tests.

python -m tests.helpers.drainer URL BATCH           drain until empty, print the count
python -m tests.helpers.drainer URL BATCH --hang F  chain and COPY one batch, touch F, then hang before commit
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from compliance.settings import Settings
from tasks import drain
from tasks.db import connect


def main() -> None:
    url, batch = sys.argv[1], int(sys.argv[2])
    settings = Settings(database_url=url)
    if len(sys.argv) > 3 and sys.argv[3] == "--hang":
        marker = Path(sys.argv[4])
        original = drain._chain_and_copy

        def chain_then_hang(*args, **kwargs):  # type: ignore[no-untyped-def]
            result = original(*args, **kwargs)
            marker.write_text("copied, not committed")
            time.sleep(3600)
            return result

        drain._chain_and_copy = chain_then_hang  # type: ignore[assignment]
    conn = connect(settings, "compliance_drainer")
    total = 0
    while True:
        result = drain.drain_batch(conn, batch)
        if result.batches == 0:
            break
        total += result.drained
    print(total)


if __name__ == "__main__":
    main()
