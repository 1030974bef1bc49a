"""Detection providers: one `Provider` protocol, one small class per kind."""
