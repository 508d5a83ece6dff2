"""How the figures were obtained and what they do not show: written into every report."""

from __future__ import annotations

from bench.config import DISTURBED_PCT, Config


def notes(config: Config) -> list[str]:
    mix = ", ".join(f"{weight:g}% {kind}" for kind, weight in config.mix.items())
    share = f"{config.fixed_rate_share:.0%}"
    return [
        "Each server is one process pinned to one CPU (`taskset -c`); wrk runs pinned to another, with one thread. "
        "The embedded PostgreSQL (the default) is pinned to wrk's CPU, standing in for a database on another "
        "machine: database-bound figures (user_miss, create, login, mixed) then share that CPU between the "
        "database and wrk, never the server's. A server named by AUTH_BENCH_DATABASE_URL or "
        "AUTH_TEST_DATABASE_URL is not pinned (see the database line of the settings).",
        "service: `auth-service serve` with its production defaults (metrics on, tracing off), AUTH_ENVIRONMENT="
        "production, a generated AUTH_TOKEN_KEYS and AUTH_BATCH_TOKEN, AUTH_HASH_WORKERS=1, AUTH_LOG_LEVEL=WARNING and "
        "AUTH_DRAIN_DELAY_SECONDS=0 (shutdown only: the harness stops it between blocks). baseline: "
        "`python -m bench.baseline`, same AUTH_* settings. ceiling: `python -m bench.ceiling` answering the exact "
        "bytes the service gave for one verify and one user read.",
        f"Data: a fresh database per run, {config.users:,} users imported through POST /v1/users:batch with one "
        "argon2id hash (computed once with the service's parameters) for all; tokens from real logins "
        f"({config.logins}, renewed at every service start); user_hit reads a hot set of {config.hot_set:,} ids "
        "that fits the cache; user_miss reads all ids with the service started with AUTH_CACHE_MAX_ENTRIES=1, "
        "so nearly every read goes to PostgreSQL (the baseline has no cache at all).",
        f"The verify load cycles through {config.logins} tokens: a service that remembers verified tokens serves "
        "them from that memory after the first round, as it would a client reusing its token.",
        f"mixed: {mix}. not_found reads random UUIDs (a database query, 404: counted apart, not as errors); "
        "update is a PATCH of the name with the user's own token; creates and logins cost an argon2id hash "
        "(~20 ms of the one core each), so they are kept to 0.4% and 0.1%. Override with AUTH_BENCH_MIX="
        '"verify=70,user_hit=20,...". mixed_no_hashing: the same mix less its creates and logins, on the same '
        "service process; from the two, what each hashing request costs and how much of the mix's CPU they take.",
        "Saturation: wrk with a fixed number of connections sending as fast as answers come. rps is the median of "
        "the repetitions, with min and max; p50/p99/p99.9 are wrk's (per run, exact to the microsecond), the median "
        "across repetitions. errors: connect, read, write, timeout (2 s) and 4xx/5xx answers, except in the mix: "
        "its 404s, and 503s with Retry-After, which are counted apart (shed: requests the service refused at "
        "once because its bounded password-hashing pool was full; a closed-loop run at saturation overloads it "
        "by design, a paced run should not).",
        f"Fixed rate: one run paced at {share} of the median saturation rate by the wrk script's delay(): each "
        "request takes the next slot of a fixed schedule, whichever connection is free. Limits: wrk's timers have "
        "1 ms resolution (requests leave up to 1 ms early, in small bursts); latency is measured from when the "
        "request is written, not from its slot. 'achieved' shows whether the schedule was kept.",
        "Latency percentiles, both kinds of run, are wrk 4's after its correction for coordinated omission "
        "(`stats_correct`, applied before the script sees them): each response slower than twice the mean "
        "interval between requests on one connection (connections / rps: 1.4 ms at 45k rps on 64) also counts "
        "as the responses that connection would have been waiting for, one per interval. It makes p99 "
        "pessimistic, the more so the slower the tail: on the hot paths few responses are past twice the "
        "interval and the figures move little; in the mix, each argon2 request queued for about a second "
        "counts some 80 times (an 11 ms interval at 5.5k rps), so its p99 is theirs, not the reads' (2026-11-29, "
        "99.5% verify and 0.5% logins on 64 connections at saturation: wrk gave p99 1.25 s and a mean of 183 ms; "
        "an asyncio client timing each request gave p99 9.1 ms overall, 8.9 ms for the verifies). "
        "Our pacer shares one schedule among the connections, so a slow response delays no other "
        "request's slot: the correction adds samples for requests that were in fact sent on time.",
        "CPU us/req: utime+stime of the server process (all its threads) from /proc/PID/stat over the measured runs, "
        "divided by the requests answered (10 ms ticks). rps/core = 1e6 / CPU us/req: the rate one whole core "
        "would sustain at that cost. It does not move when other processes take the CPU, so on a shared machine "
        "it is the steadier throughput figure; the targets show it beside rps. CPU %: the server's CPU time "
        "over the run (100: it had its core and used all of it).",
        "stolen %: how long other processes held the server's CPU while its event loop was ready to run "
        "(the main thread's run-queue wait from /proc/PID/schedstat, less what the process's own other threads "
        f"ran). A run with more than {DISTURBED_PCT:g}% stolen is run again, up to {config.retries} times, and the "
        "least disturbed attempt is kept (retried_runs in the JSON); what remains understates the server's rps.",
        "wrk CPU %: wrk's own CPU time over the run; near 100, the load generator rather than the server set the "
        "pace, and the rps is a lower bound. RSS: VmRSS after the saturation runs.",
        "GC pauses: the service's own python_gc_pause_seconds histogram (admin /metrics), scraped before and after "
        "each measured run.",
        "Tokens, signing keys and the database are made for the run and dropped at its end.",
    ]
