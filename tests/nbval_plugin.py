"""pytest plugin for `make nbval` (loaded with `-p tests.nbval_plugin`).

nbval waits a hard-coded 5 s for each kernel output message once a cell has replied
(`NotebookItem.output_timeout`; not configurable, see computationalmodelling/nbval#136 and #231). After a
cell that ran for many minutes on a busy 2-core machine, the kernel's buffered messages can take longer
than that to arrive, and nbval then fails the cell with "Timeout of 5 seconds exceeded waiting for
output" although the cell succeeded. This raises that wait; a cell's own run time is still bounded by
--nbval-cell-timeout.
"""
from __future__ import annotations

OUTPUT_TIMEOUT_S = 300


def pytest_collection_modifyitems(session, config, items):
    for item in items:
        if hasattr(item, "output_timeout"):
            item.output_timeout = OUTPUT_TIMEOUT_S
