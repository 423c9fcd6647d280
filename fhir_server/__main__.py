"""``python -m fhir_server``: the command line (see fhir_server.cli)."""

import sys

from fhir_server.cli import main

sys.exit(main())
