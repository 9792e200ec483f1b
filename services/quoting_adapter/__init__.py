"""The quoting adapter: approved signals in Redis, quote params over gRPC for the market-making engine."""
