"""Process setup for the `morl` command: CPU cores as JAX devices, the compilation cache, stack dumps on SIGUSR1,
``--import`` modules, Ctrl-C (one line, exit 130) and one-line error messages (``morl: error: ...``)."""

from __future__ import annotations

import errno
import faulthandler
import os
import signal
import sqlite3
import sys
import threading
from pathlib import Path

from rich.markup import escape

from morl.cli import common
from morl.cli.common import EXIT_INTERRUPTED, CLIError
from morl.compile_cache import enable_compilation_cache
from morl.store import StoreError, _translate


def setup(argv: list[str]) -> list[str]:
    """Prepare the process before any command runs; returns ``argv`` without its ``--import`` options."""
    use_all_cpu_cores()
    enable_compilation_cache()
    _stack_dumps_on_sigusr1()
    return _imports(argv)


def use_all_cpu_cores() -> None:
    """Expose every CPU core as a JAX device (before JAX starts) so the engine shards envs across them.

    XLA runs one jitted scan on one thread; with N CPU devices the env axis is partitioned N ways. Has no
    effect on accelerators (their devices come first) and respects a user-set XLA_FLAGS.
    """
    # XLA reads the flag when the CPU backend starts (first use), so importing jax before this is fine
    import morl

    if morl.USER_XLA_FLAGS is None:  # morl's own defaults (morl.DEFAULT_XLA_FLAGS) may be there already
        flags = os.environ.get("XLA_FLAGS", "")
        os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={os.cpu_count() or 1} {flags}".strip()


def _imports(argv: list[str]) -> list[str]:
    """Take every ``--import MODULE`` (anywhere on the line: before or after the subcommand) and ``$MORL_IMPORT``,
    import them (the current folder is importable), and note them so new runs record them; returns the rest."""
    from morl import runs as R

    modules = [m.strip() for m in os.environ.get("MORL_IMPORT", "").split(",") if m.strip()]
    rest: list[str] = []
    i = 0
    while i < len(argv):
        tok = argv[i]
        if tok == "--":
            rest.extend(argv[i:])
            break
        if tok == "--import":
            if i + 1 >= len(argv) or argv[i + 1].startswith("-"):
                raise CLIError("--import needs a module name, e.g. `morl --import my_package.envs train ...`")
            modules.append(argv[i + 1])
            i += 2
            continue
        if tok.startswith("--import="):
            modules.append(tok.split("=", 1)[1])
            i += 1
            continue
        rest.append(tok)
        i += 1
    modules = list(dict.fromkeys(m.strip() for m in modules if m.strip()))
    R.IMPORTS[:] = modules
    R.import_modules(modules)
    return rest


def _stack_dumps_on_sigusr1() -> None:
    """`kill -USR1 PID` prints every thread's Python stack to stderr: what a long run is doing, or where it hangs."""
    if hasattr(signal, "SIGUSR1") and sys.stderr is not None:
        try:
            faulthandler.register(signal.SIGUSR1, all_threads=True)
        except (ValueError, OSError, RuntimeError, AttributeError):  # not the main thread, or no real stderr
            pass


def os_error_message(exc: OSError, command: str | None) -> str:
    """One line for a file-system error: what could not be done, where, and what to do."""
    where = exc.filename or "a file"
    what = exc.strerror or str(exc)
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        fix = {
            "plot": "make the run folder writable, or write the picture elsewhere with --out FILE.png",
            "leaderboard": "make the folder writable, or write elsewhere with --out FILE",
            "eval": "make the run folder writable, or evaluate without recording (--no-record)",
        }.get(command or "", "make the folder writable, or choose another one with --runs-dir DIR")
        return f"cannot write {where}: {what} (read-only folder?); {fix}"
    if exc.errno == errno.ENOSPC:
        return f"cannot write {where}: no space left on the device; free some space and run the command again"
    if exc.errno == errno.ENOENT:
        return f"{where} does not exist: {what}; check the path (or --runs-dir)"
    return f"cannot access {where}: {what}; check the path, its permissions and free space"


#: what the Ctrl-C line adds (set once runs exist: how to resume them)
INTERRUPT_HINT = {"text": ""}


def _on_sigint(signum, frame) -> None:
    """Ctrl-C in the CLI. Inside a training loop: KeyboardInterrupt (the loop checkpoints its last finished chunk
    and stops). Anywhere else (imports, compiling, a final evaluation): one line and exit 130 at once; run folders
    are safe to leave at any instant (atomic files, WAL store, checkpoint saves hold Ctrl-C back until committed)."""
    from morl import runs as R

    if R.INTERRUPT["depth"] > 0:
        R.INTERRUPT["requested"] = True
        raise KeyboardInterrupt
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Python handlers nest: a second Ctrl-C must not add a line
    try:
        sys.stdout.flush()
    except Exception:
        pass
    try:
        sys.stderr.write("morl: error: interrupted (Ctrl-C)" + INTERRUPT_HINT["text"] + "\n")
    finally:
        exit_now(EXIT_INTERRUPTED)


def _exit_quietly(signum, frame) -> None:
    """Ctrl-C once the command's error line is out: it only hurries the exit (no second line)."""
    os._exit(EXIT_INTERRUPTED)


def exit_now(code: int) -> None:
    """Flush stdout and stderr and end the process with ``code`` at once (no interpreter shutdown)."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
    os._exit(code)


def install_sigint() -> None:
    """The command line's own Ctrl-C handling (`_on_sigint`); in-process callers keep Python's."""
    if threading.current_thread() is threading.main_thread():
        try:
            signal.signal(signal.SIGINT, _on_sigint)
        except (ValueError, OSError):
            pass


def fail(message: str, code: int) -> int:
    """Print ``morl: error: MESSAGE`` (one line) to stderr; returns the exit status ``code``."""
    # the command line holds Ctrl-C back while the line is written; after it, a Ctrl-C only hurries the exit
    held = threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGINT) is _on_sigint
    if held:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        common.err_console.print(f"[red]morl: error:[/red] {escape(message)}", highlight=False, soft_wrap=True)
    finally:
        if held:
            signal.signal(signal.SIGINT, _exit_quietly)
    return code


def report(exc: Exception, command: str | None) -> int | None:
    """One line for an error the user can act on (a CLIError, a run-folder, results-store or file-system problem),
    printed by `fail`; returns the exit status, or None for anything else (a bug: its traceback is kept)."""
    from morl.runs import RunError

    if isinstance(exc, (CLIError, RunError, StoreError)):
        return fail(str(exc), getattr(exc, "code", 2))
    if isinstance(exc, sqlite3.Error):
        return fail(str(_translate(Path(getattr(exc, "filename", None) or "results.sqlite"), exc)), 2)
    if isinstance(exc, OSError):
        return fail(os_error_message(exc, command), 2)
    return None
