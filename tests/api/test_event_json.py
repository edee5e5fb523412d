"""Every engine event's ``--json`` form: ``event`` first, then each field in declaration
order, with its value (the field names are remembered per class, not looked up per call)."""

from __future__ import annotations

import dataclasses

import pytest

from torrentkit import events


def _event_classes() -> list[type[events.Event]]:
    found: list[type[events.Event]] = []
    todo: list[type[events.Event]] = [events.Event]
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo.extend(cls.__subclasses__())
    return list(dict.fromkeys(found))


@pytest.mark.parametrize("cls", _event_classes(), ids=lambda c: c.__name__)
def test_to_json_names_every_field_in_order(cls: type[events.Event]) -> None:
    fields = dataclasses.fields(cls)
    values: dict[str, object] = {f.name: f"v{n}" for n, f in enumerate(fields)}
    if "peers" in values:  # (HashFailed: a tuple, printed as a list)
        values["peers"] = ("a", "b")
    event = cls(**values)  # type: ignore[arg-type]
    expected = {"event": cls.kind, **values}
    if "peers" in values:
        expected["peers"] = ["a", "b"]
    for _ in range(2):  # the first call remembers the names, the second uses them
        out = event.to_json()
        assert list(out) == ["event", *values]
        assert out == expected
