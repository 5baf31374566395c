"""What a request cost and where its row goes: prices, the ledger, reports, capacity plans."""
