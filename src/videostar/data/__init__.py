"""Record schema and supervision adapters that turn labeled video datasets into records."""
