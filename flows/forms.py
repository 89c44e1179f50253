"""The fields the console forms share (`export-runner`, `events-query`): plain inputs with defaults, dropdowns
for the closed sets, RFC 3339 text for the window (empty: the default), and the operator's address and one-time code.

Every operator form checks the code when the run starts, before anything is read (docs/operator-runbook.md, Operators).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from compliance.events import Registry
from compliance.timefmt import parse_utc_text, utc_text

__all__ = [
    "ActorType",
    "form_field",
    "EventType",
    "actor_types_field",
    "code_field",
    "event_types_field",
    "operator_field",
    "prefect_user",
    "window_field",
    "window_text",
]

ActorType = Literal["user", "service", "agent", "system", "operator"]
# The registry is data: the dropdown lists the types registered when the flow is deployed.
EventType = Literal[tuple(sorted(Registry.default().names()))]  # type: ignore[valid-type]


def form_field(default: Any, title: str, description: str, **schema: Any) -> Any:
    """A form field with a label and a description. Prefect titles every parameter with its name, so the label
    goes in as a schema override, which is applied last."""
    return Field(default=default, description=description, json_schema_extra={"title": title, **schema})


def operator_field() -> Any:
    return form_field(
        "",
        "Operator e-mail",
        "Your operator address, as enrolled with `compliance operators add` (case and spaces ignored).",
    )


def code_field() -> Any:
    return form_field(
        "",
        "One-time code",
        "The 6-digit code your authenticator app shows now for that address (the app you scanned the enrolment "
        "QR code into). Each code works once; a new one comes every 30 seconds.",
    )


def window_field(title: str, description: str) -> Any:
    # Plain text, not the console's date-time picker: the picker's form refuses to submit while it is empty,
    # and empty is how an operator asks for the default window.
    return form_field("", title, f"{description} RFC 3339, e.g. 2026-11-01T00:00:00Z.", examples=["2026-11-01T00:00:00Z"])


def event_types_field() -> Any:
    return form_field([], "Event types", "Only these event types; none chosen means all.")


def actor_types_field() -> Any:
    return form_field([], "Actor types", "Only these actor types; none chosen means all.")


def window_text(value: Any, name: str) -> str | None:
    """A picker's value (text or datetime) as docs/format.md §1 text, or None when empty; a clear error when unreadable."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        return utc_text(value)
    try:
        return utc_text(parse_utc_text(value.strip()))
    except ValueError:
        raise ValueError(f"{name}: {value!r} is not a date-time; pick one, or type e.g. 2026-11-01T00:00:00Z") from None


def prefect_user() -> str | None:
    """The Prefect user who started this run, where Prefect authenticated one (Prefect Cloud's ``created_by``)."""
    from prefect.context import FlowRunContext

    ctx = FlowRunContext.get()
    created_by = getattr(getattr(ctx, "flow_run", None), "created_by", None)
    if created_by is None or str(getattr(created_by, "type", "")).upper() != "USER":
        return None
    return str(created_by.display_value or created_by.id)
