"""Storage: the repository interface and its engines (``sqlite/``, ``mongo/``), the only code
that imports sqlite3 or pymongo and knows a stored document's shape. It imports the query
model (``fhir_server.search``) and ``core``, nothing above."""
