"""Everything relctl prints: library data in, strings out, one module per format.

The library returns data (a ``LoadResult`` or ``CheckResult`` of located problems, a
``PassResult``, each release's ``ReleaseResult``, a pull request's ``Preview``, the status
files, the simulator's snapshots); this package turns it into strings. It prints nothing,
reads no file and picks no exit code: the CLI parses options, calls the library, calls a
function here, echoes the string and exits.

=================== ===========================================================================
module              what it writes
=================== ===========================================================================
``report``          a command's whole standard output for its ``--format`` (picks the module)
``text``            lines for people: problems, summaries, passes, plans, the simulator's pages
``table``           aligned columns: ``relctl status``, ``relctl platform apps|releases``
``jsondata``        the documents of ``--format json`` (keys in ``docs/output.md``)
``markdown``        pull-request comments: ``relctl plan --format markdown`` (and ``--base``)
``github``          GitHub Actions workflow annotations of located problems
=================== ===========================================================================

Called by ``controller.cli`` (every command), ``controller.cli_platform`` (the simulator's
tables and pages) and ``controller.demo`` (the status table). This file imports nothing, so
the simulator's commands load only the modules they use.
"""
