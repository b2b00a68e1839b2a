"""Print the recorder's resident memory after each of its imports in turn.

Usage, from the repository root:

    .venv/bin/python -m scripts.bench.import_memory

The groups are imported one after another in one interpreter, and the
resident set size is read from /proc/self/statm after each one.
"""

from __future__ import annotations

import importlib
import os

# The recorder's heaviest imports, in the order it first meets them, then the
# recorder itself for the project's own modules.
GROUPS = (
    ("asyncio, with the ssl module and OpenSSL's libraries", ("asyncio",)),
    ("msgspec and the settings", ("app.settings",)),
    ("psycopg, with its bundled libpq", ("psycopg",)),
    ("the project's own modules", ("app.proxy.recorder",)),
)


def resident_mb() -> float:
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def main() -> None:
    before = resident_mb()
    print("| import | added MB | total MB |")
    print("| --- | --- | --- |")
    print(f"| the interpreter | | {before:.1f} |")
    for label, modules in GROUPS:
        for module in modules:
            importlib.import_module(module)
        now = resident_mb()
        print(f"| {label} | {now - before:.1f} | {now:.1f} |")
        before = now


if __name__ == "__main__":
    main()
