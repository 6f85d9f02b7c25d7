"""``litelvlm sweep``: every (method, budget) of one benchmark with one model load, and a leaderboard of them.

Modules: ``plan`` (the benchmark, the runs and every check before the model loads), ``synthetic`` (the offline
benchmarks' data), ``runner`` (each run through ``eval.refseg.run_refseg`` / ``eval.rvos.run_rvos`` with one shared
model; their records make every run resumable), ``leaderboard`` (rows from the runs' stats and records:
``leaderboard.md`` / ``leaderboard.json``), ``pareto`` (``pareto.png``), ``cli`` (the sub-command's options).
"""
