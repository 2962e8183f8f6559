"""The embedded toy world: arithmetic-chain problems a tiny model can learn on CPU, judged by the checker critic."""
