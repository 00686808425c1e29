"""The scenarios of pyworkflow's examples: what each starts, measures and checks."""
