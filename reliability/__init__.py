"""Reliability and security scenarios: the service's promises tried under load and attack, with figures.

`make reliability` runs each scenario's long version and writes reliability/results/latest.{json,md};
tests/reliability runs the short versions in the test suite. What there is to build one with:
service.py (the service as a process, or the run's shared one), balancer.py (processes behind one
address, by readiness), load.py (paced load and its tally), raw.py (HTTP by hand), postgres.py,
redis.py (servers of the scenario's own to stop), witness.py (the secrets sent, the error bodies seen).

A new scenario, say `slow`:
1. reliability/scenarios/slow.py: a frozen Params dataclass; `async def run(context, params) -> Findings`
   (sent, failed, lost_writes, figures such as p99_ms, and a problem for every broken promise);
   `SCENARIO = Scenario(key="slow", tried="...", run=run, quick=Params(...), long=Params(...))`.
2. One line in SCENARIOS (reliability/scenarios/__init__.py), before `secret`.
3. A test in tests/reliability/test_scenarios.py: `entry = await held(context, "slow")`, then its figures.
A key of the issue with no scenario registered is reported "not run", never as passed.
"""
