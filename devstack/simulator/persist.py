"""The simulator's leads kept across restarts, in `<state dir>/simulator-leads.json`.

`make run` keeps Azurite's data in `.devstack/azurite`, so the app's sync records (`synced`, with
a Dataverse lead id) outlive a restart; the leads they point at must outlive it too, or `make
demo` and the demo page would report leads the simulated Dataverse no longer holds. Only the
simulator process that `make run` starts (`python -m devstack.simulator`) keeps its leads: tests
and benchmarks use in-process simulators that start empty.

The file is written whole to a temporary name and renamed (atomic on POSIX), after a change within
`interval` seconds and once more on stop; faults, limits, counters and rotated secrets are not
kept (they are a test's business, not data). A file that does not parse is set aside as
`simulator-leads.json.unreadable` and the simulator starts empty, saying so on stderr.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from typing import Any

from devstack.simulator.state import SimulatorState as Simulator

FILE_NAME = "simulator-leads.json"


class LeadKeeper:
    """Loads `sim`'s leads from its state directory and saves them when they change."""

    def __init__(self, sim: Simulator, interval: float = 0.5) -> None:
        self.sim = sim
        self.path = sim.state_dir / FILE_NAME
        self.interval = interval
        self._stop = threading.Event()
        self._marker: tuple[int, int] | None = None
        self._thread: threading.Thread | None = None

    def load(self) -> int:
        """Put the saved leads back into the simulator; returns how many."""
        try:
            saved: Any = json.loads(self.path.read_text(encoding="utf-8"))
            records = [dict(record) for record in saved["leads"]]
        except FileNotFoundError:
            return 0
        except (ValueError, KeyError, TypeError) as exc:
            aside = self.path.with_name(FILE_NAME + ".unreadable")
            self.path.replace(aside)
            print(f"simulator: {self.path} is unreadable ({type(exc).__name__}); set aside as {aside}", file=sys.stderr)
            return 0
        self.sim.restore_leads(records)
        self._marker = self.sim.lead_snapshot()[0]
        return len(records)

    def save(self) -> bool:
        """Write the leads when they changed since the last save; True when written."""
        marker, records = self.sim.lead_snapshot()
        if marker == self._marker:
            return False
        temporary = self.path.with_name(FILE_NAME + ".tmp")
        temporary.write_text(json.dumps({"leads": records}, ensure_ascii=False), encoding="utf-8")
        os.replace(temporary, self.path)
        self._marker = marker
        return True

    def start(self) -> LeadKeeper:
        """Save in the background every `interval` seconds while the leads change."""
        self._thread = threading.Thread(target=self._loop, name="simulator-leads", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the background saver and save a last time."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.save()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.save()
