"""AI jobs on the Temporal side: the provider port, its two implementations, the activities."""
