"""Keys and teams as data: records in the ledger's database, managed over the admin API,
held in memory on every replica (`Keyring`) so that authentication stays a dict lookup."""
