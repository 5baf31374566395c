"""The client protocols at the edge, one module each: how a client authenticates, what its
body must be, and how answers, streams and errors go back to it. Between the edges the
pipeline reads one form (OpenAI chat) whatever the client spoke."""
