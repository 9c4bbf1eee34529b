"""Every key `murmur top` answers to, in one table: the help screen shows it and the
docs page is checked against it, so neither can drift from the bindings."""

from __future__ import annotations

from typing import NamedTuple


class KeyHelp(NamedTuple):
    keys: str
    where: str
    what: str


KEYMAP: tuple[KeyHelp, ...] = (
    KeyHelp(
        ":",
        "anywhere",
        "jump to a view: cluster, node NAME, jobs, job ID, datasets, services, help",
    ),
    KeyHelp("/", "tables", "filter rows: words, or field:value (user:, state:, queue:, node:)"),
    KeyHelp("Esc", "anywhere", "close the prompt, clear the filter, or go back"),
    KeyHelp("?", "anywhere", "this help"),
    KeyHelp("q", "anywhere", "quit"),
    KeyHelp("↑ ↓ PgUp PgDn Home End", "tables", "move the cursor (also j k g G)"),
    KeyHelp("Enter", "tables", "open the node, job or service's replicas under the cursor"),
    KeyHelp("s / S", "tables", "sort by the next column / reverse the order (or click a header)"),
    KeyHelp("d", "cluster, node", "drain the node (admin; asks first)"),
    KeyHelp("n", "jobs", "submit a job from a form"),
    KeyHelp("ctrl+k", "jobs, job", "cancel the job (asks first)"),
    KeyHelp("l", "job", "show or hide the live log"),
    KeyHelp("f", "job", "follow the log (keep scrolling to the newest line)"),
    KeyHelp("w", "job", "wrap long log lines"),
    KeyHelp("t", "job", "show log timestamps"),
    KeyHelp("ctrl+r", "datasets, services", "reload the dataset catalog or the services"),
)
