"""The seed's three simulated routing experiments, reproduced with seeded numpy Generators.

    simulation   the fleet of five simulated agents, their dynamics, tasks, screening and the reward
    seed_linucb  the seed's one shared LinUCB model (the baseline, kept apart from router.linucb)
    policies     always_A, static_rule, random, random_topL, seed_linucb and ours (linucb)
    episode      one policy over one seed's task stream, step by step
    metrics      Gini, rolling success, recovery time, summaries over seeds
    exp1/2/3     efficiency and cost, robustness to shocks, system optimisation
    output       CSV writing and the plain-text tables the CLI prints
    plotting     matplotlib figures (Agg backend)

Every random draw comes from `numpy.random.default_rng([seed, stream, ...])`, so a seed gives the same numbers
on every machine and run; Python's salted `hash()` is never used to derive a stream.
"""
