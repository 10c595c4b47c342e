"""Reacting to what the numbers say: channel circuit breakers and metric alert rules."""
