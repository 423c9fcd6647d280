"""Operating the server: metrics, traces, logs, rate limits, graceful shutdown."""
