"""``python -m fhir_server``: the command line (see fhir_server.cli).

Serving (no command, or ``serve`` alone) takes a short way that imports only what binds the
port, so that ``/health`` answers in the process's first second (``booting.py``)."""

import sys

if sys.argv[1:] in ([], ["serve"]):
    from fhir_server.runtime.serving import serve_main

    sys.exit(serve_main())

from fhir_server.cli.main import main

sys.exit(main())
