"""The YAML model: schema, loading, validation; pure, no I/O beyond reading the file."""
