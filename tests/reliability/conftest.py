"""The reliability table: printed at the end of every session that ran a fault scenario, and
written to ``bench/results/reliability.md``."""

from __future__ import annotations

import pytest
from reliability_support import RESULTS, SCALE, SEED, render_table, write_results


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, exitstatus: int,
                            config: pytest.Config) -> None:
    if not RESULTS:
        return
    terminalreporter.write_sep("=", f"alertpipe reliability (scale {SCALE}, seed {SEED})")
    for line in render_table(RESULTS).splitlines():
        terminalreporter.write_line(line)
    path = write_results(RESULTS)
    terminalreporter.write_line(f"(written to {path})")
