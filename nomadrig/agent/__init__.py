"""nomadrig idle agent: decides from local signals whether a box is idle and acts on it.

This package is copied verbatim onto cloud boxes and towers (as ``nomadrig_agent``)
and runs with the system ``python3`` (3.9 or newer), so it imports only the
standard library and its own modules, always relatively.
"""

SAMPLE_VERSION = 1

__all__ = ["SAMPLE_VERSION"]  # the agent is run, not imported: `python3 -m nomadrig_agent` (__main__.py)
