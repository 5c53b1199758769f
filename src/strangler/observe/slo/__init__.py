"""Service level objectives: error budgets and burn-rate alerts the gateway evaluates itself."""
