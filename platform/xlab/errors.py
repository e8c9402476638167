"""User-facing errors.

An :class:`XlabError` is a problem with the user's input or environment (unknown job, bad config
value, unreachable cluster...). The CLI prints it as one line and exits non-zero without a
traceback; everything else is a bug and keeps its traceback.
"""


class XlabError(Exception):
    """A problem the user can fix; the message says what was wrong and how to fix it."""
