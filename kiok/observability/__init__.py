"""Traces (OpenTelemetry, optional); the metrics live with the master (``kiok.master.metrics``)."""
