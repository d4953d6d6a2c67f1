"""Jobs: each a config dataclass, a result dataclass and a run function of named stages."""
