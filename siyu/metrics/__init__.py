"""What journeys achieved: funnels from the ledger, experiment statistics, tracked links."""
