"""`phoenix`: the operator's command line for the Phoenix control plane and config generator."""
