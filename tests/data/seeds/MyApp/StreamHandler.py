"""The callback the seed names (``module: MyApp.StreamHandler``, ``function: process_message``)."""

seen: list[object] = []


def process_message(event: object) -> None:
    """Keep each event."""
    seen.append(event)
