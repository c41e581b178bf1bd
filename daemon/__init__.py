"""player-session-service runtime: configuration, clock, actors and the command line."""
