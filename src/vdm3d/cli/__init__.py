"""The ``vdm3d`` command: one subcommand per job, plus trajectory, data, train, eval, models, view."""
