"""The active-learning loop and its measures: the pool, the learner, evaluation, stopping,
simulation, triage."""
