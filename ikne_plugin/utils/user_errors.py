"""User errors (a bad file, argument or config) end a command-line tool with one message.

A user who passed an empty PLY or a truncated checkpoint needs to know which file and what is
wrong with it, not a traceback from deep inside numpy or torch.
"""
import re

from .unknown_type import explain_unknown_type

# torch's DataLoader re-raises a worker's exception with the worker's traceback in its message;
# its last line is "<module>.<ErrorClass>: <original message>".
_WORKER_TRACEBACK_LAST_LINE = re.compile(r'^[\w.]+: (.*)$')


class UserInputError(ValueError):
    """A file or argument that cannot be used; the message names it and the problem."""


def user_error_message(error):
    """The one-line message of a user error (unwrapping a DataLoader worker's traceback)."""
    message = str(error)
    if 'Original Traceback' in message:
        last = [line for line in message.splitlines() if line.strip()][-1]
        match = _WORKER_TRACEBACK_LAST_LINE.match(last)
        message = match.group(1) if match else last
    return message


def run_tool(main):
    """Run a command-line tool's ``main``; a user error (``UserInputError``, a missing file, an
    unknown component type in the config) ends it with exit status 1 and one clear message
    on stderr instead of a traceback."""
    try:
        main()
    except (UserInputError, FileNotFoundError) as error:
        raise SystemExit(f'error: {user_error_message(error)}') from None
    except KeyError as error:
        clearer = explain_unknown_type(error)
        if clearer is None:
            raise
        raise SystemExit(f'KeyError: {clearer.args[0]}') from None
