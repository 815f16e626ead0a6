"""Handler implementations: simple, console, debug, file, buffer, callback."""
