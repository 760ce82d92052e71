"""User-facing errors: one clear message that names the problem and the fix."""
import contextlib
import sys


class CanuError(RuntimeError):
    """An error caused by the user's input (data, config, checkpoint), not by a bug.

    Its message says what is wrong and how to fix it; tools print it without a traceback.
    """


def unreadable_image(path, exc):
    """The CanuError for an image file that cannot be read (missing or corrupt)."""
    return CanuError(f"cannot read image {path!r} ({type(exc).__name__}: {exc}). The file is missing or corrupt: "
                     "restore it from the original archive, or delete it and restart.")


def find_canu_error(exc):
    """Return the CanuError behind ``exc`` (itself, a cause, or one re-raised by a DataLoader
    worker, which re-creates exceptions from their formatted traceback), or None."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, CanuError):
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


def message(err):
    """The user-facing text of a CanuError; strips the worker traceback a DataLoader adds."""
    text = str(err)
    if "Original Traceback" in text:
        last = [ln for ln in text.splitlines() if ln.strip()][-1]
        text = last.split("CanuError: ", 1)[-1]
    return text


@contextlib.contextmanager
def user_errors(exit_code=2):
    """Turn a CanuError (anywhere in the exception chain) into one line on stderr and an exit.

    Used by the command-line tools; library code just raises.
    """
    try:
        yield
    except Exception as e:  # noqa: BLE001 - we re-raise everything that is not ours
        err = find_canu_error(e)
        if err is None:
            raise
        print(f"error: {message(err)}", file=sys.stderr)
        sys.exit(exit_code)
