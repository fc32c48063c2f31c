"""A vLLM API simulator for fault-injection tests and load benchmarks (never instead of real vLLM tests)."""
