"""Running the server: processes, start-up, warm-up."""
