"""Pure logic: states and transitions, graph readiness, retry and timeout decisions, cron
firing. Nothing here awaits, sleeps, reads the clock or touches a file: callers pass ``now``."""
