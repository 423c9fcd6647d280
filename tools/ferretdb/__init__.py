"""FerretDB on SQLite: the MongoDB stand-in the tests run (built with ``make ferretdb``)."""
