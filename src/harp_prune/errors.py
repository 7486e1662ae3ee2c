"""The one exception type the library raises for user-facing problems.

The CLI prints ``str(error)`` as a single line and exits with status 2, so every message must name
the problem *and* the fix in one sentence.
"""


class HarpError(Exception):
    """A problem with the user's input (data, config, checkpoint) that they can fix."""
