"""Customer segments computed on a schedule: RFM tiers, lifecycle stages, activity tags."""
