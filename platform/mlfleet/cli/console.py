"""Shared rich consoles: results on stdout, messages and progress on stderr."""

from __future__ import annotations

from rich.console import Console

# Piped output (CI logs, `| less`) gets room for the registry table instead of rich's
# 80-column default for non-terminals.
_PIPE_WIDTH = 160

console = Console(highlight=False, soft_wrap=True)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)
for _c in (console, err_console):
    if not _c.is_terminal:
        _c.width = _PIPE_WIDTH
