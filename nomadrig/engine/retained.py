"""This machine's record of the data volumes a `down` kept: ``<NOMADRIG_HOME>/work/<team>/retained.json``.

The backend's stack tags are the shared record (`names.DATA_VOLUME_STACK_TAG`);
this file is what an older nomadrig's `down` left, and what `down --purge-data`
finds when the stack has gone. It is written whole and renamed into place:
it may be the only record of a volume that is still billed.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from nomadrig.volumes import RetainedVolume


class RetainedRecord:
    def __init__(self, path: Path) -> None:
        self.path = path

    def _load(self) -> dict[str, list[dict[str, str]]]:
        try:
            return json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}

    def _save(self, data: dict[str, list[dict[str, str]]]) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2) + "\n")
        tmp.replace(self.path)

    def add(self, stack: str, volumes: Iterable[RetainedVolume]) -> None:
        """Record volumes a destroy of `stack` kept (each id once)."""
        data = self._load()
        known = {v["id"] for v in data.get(stack, [])}
        data.setdefault(stack, []).extend(v.as_dict() for v in volumes if v.id not in known)
        self._save(data)

    def of(self, stack: str) -> list[RetainedVolume]:
        """The volumes earlier `down`s of `stack` kept, oldest first."""
        return [RetainedVolume(**v) for v in self._load().get(stack, [])]

    def forget(self, ids: set[str]) -> None:
        """Drop deleted volumes from every stack's entry (and entries left empty)."""
        data = self._load()
        for key in list(data):
            data[key] = [v for v in data[key] if v["id"] not in ids]
            if not data[key]:
                del data[key]
        self._save(data)
